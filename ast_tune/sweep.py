"""Run a sweep: ``python -m ast_tune.sweep SPEC.yaml [--set key.path=value ...] [--name NAME] [--resume] [--dry-run]``.

Times (or reuses) the dense baseline, runs a Tune run of :mod:`ast_tune.tuning.search.tuner` (what a
trial runs; the searcher over the Optuna study, the scheduler), writes the tables, then promotes and
reports. The sweep's record is the Optuna study (``optuna.db``) and the journal (``journal.jsonl``);
``--resume`` starts a new Tune run from them: the study's trials that ended are kept, the unfinished
ones continue from their checkpoints under their own numbers, and new ones are asked until
``search.num_trials``. Nothing of Tune's saved state is read, and nothing is unpickled. Running a
name again without ``--resume`` runs nothing: a finished sweep of the same spec prints its front and
exits 0; an unfinished one exits 2 naming ``--resume`` and ``--name``; results made by an older
version of ast_tune are refused (exit 2; ``export`` and ``report`` still read them).

Files under ``results/<name>/``: ``spec.yaml``, ``run.json``, ``baseline.json``, ``optuna.db``,
``journal.jsonl`` (every trial start, epoch and end), ``trials/<number>/`` (each trial's checkpoints,
``FAILED`` reason and engine ``summary.json``), ``tune/`` (Tune's scratch: TensorBoard event files
stepped by epoch, for ``tensorboard --logdir results/<name>``; never read back), ``train/`` (Ray Train's
runs: the baseline's, with its checkpoints, and multi-worker trials'), and the tables of
:func:`ast_tune.results.tables.write_tables`; then ``promoted/`` (``promote.enabled``: see
:mod:`ast_tune.promote`) and ``report/`` (unless ``--no-report``). On a multi-node cluster (``RAY_ADDRESS`` set)
``storage.root`` must be a filesystem every node mounts: every rank reads its run's checkpoints there.
One driver runs a sweep at a time (``driver.lock``, :mod:`ast_tune.results.lock`). A resumed sweep keeps
the baseline it started with (``--new-baseline`` times another, and every speedup in the tables then
uses it). Exit codes: 0 done, 1 runtime failure, 2 bad input (one line naming the key path or file;
nothing written) or another driver holds the sweep, 130 interrupted by Ctrl-C and 143 stopped by SIGTERM
(both print the ``--resume`` command that continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
import yaml

from ast_tune import atomic
from ast_tune.config.cli import EXIT_INTERRUPTED, CliParser, continue_command, run_main
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, load_sweep, to_document
from ast_tune.cost.epoch_cost import PROBE_STEPS
from ast_tune.cost.reestimate import attempts_of
from ast_tune.cost.run_cost import HALF, START, cost_line, half_estimate, print_estimate, record_actuals, sweep_estimate
from ast_tune.cost.status import SweepStatus, status_of
from ast_tune.data.inventory import subset_classes
from ast_tune.data.prepared import copy_record, size_warning
from ast_tune.data.sources import check_root
from ast_tune.promote import promote
from ast_tune.promotion.choice import NoCandidateError
from ast_tune.results import lock, verdict
from ast_tune.results import tables as export
from ast_tune.results.baseline_file import BASELINE_FILE, read_baseline
from ast_tune.results.journal import JOURNAL, Journal, epochs_frame
from ast_tune.results.page import write_report
from ast_tune.results.sweep_dir import SPEC_FILE, check_results
from ast_tune.tracking.trackers import Trackers, check_trackers
from ast_tune.tuning.runtime.baseline import ensure_baseline
from ast_tune.tuning.runtime.resources import concurrency, resources_line
from ast_tune.tuning.runtime.session import fit, in_threads, ray_session
from ast_tune.tuning.runtime.storage import not_shared_line, write_marker
from ast_tune.tuning.runtime.worker import failure_reason
from ast_tune.tuning.search.study import check_search, open_study, reconcile
from ast_tune.tuning.search.tuner import make_tuner
from ast_tune.tuning.search.watch import StatusCallback

# --- results ---------------------------------------------------------------------------------


def _write_tables(spec: SweepSpec, results: Path, journal: Journal,
                  baseline_seconds: float | None) -> pd.DataFrame | None:
    """Hand the epochs table to :func:`ast_tune.results.tables.write_tables`; the front, or None if no trial ran.

    Every ``speedup`` is this attempt's baseline over the epoch's train seconds: one table, one baseline.
    """
    epochs = epochs_frame(journal.read())
    if epochs.empty:
        return None
    if baseline_seconds:
        epochs = epochs.assign(speedup=baseline_seconds / epochs["train_seconds"])
    return export.write_tables(results, epochs, [(o.metric, o.mode) for o in spec.objectives],
                               baseline=read_baseline(results / BASELINE_FILE), criteria=spec.criteria)


def _verdict_line(spec: SweepSpec, results: Path, journal: Journal) -> str:
    """The sweep's answer to the plan: the best trial at the highest level reached, or the closest miss."""
    epochs, baseline = epochs_frame(journal.read()), read_baseline(results / BASELINE_FILE)
    trials = export.trials_table(epochs, [(o.metric, o.mode) for o in spec.objectives], baseline=baseline,
                                 criteria=spec.criteria)
    judged = trials[export.eligible(trials) & trials["feasible"]]
    return verdict.conclusion(judged, verdict.epoch_rows(epochs), baseline, spec.criteria)


def _versions() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "pandas": pd.__version__}


def _write_run(results: Path, attempt: dict[str, Any]) -> None:
    """``run.json``: this attempt (one driver's run of the sweep) on top, the earlier attempts of a resumed
    sweep under ``attempts``, oldest first; a ``run.json`` that keeps them under ``previous`` is read too."""
    path = results / "run.json"
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is not None:
        earlier = stored.pop("attempts", None) or stored.pop("previous", [])
        attempt = {**attempt, "attempts": earlier if stored.get("start") == attempt["start"] else [*earlier, stored]}
    atomic.write_text(path, json.dumps(attempt, indent=2) + "\n")


# --- the CLI -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments; a bad one raises :class:`SpecError` (one line, exit 2 in :func:`main`)."""
    parser = CliParser(prog="python -m ast_tune.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="sweep spec YAML, e.g. search_spaces/quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec field, e.g. --set search.num_trials=8 (repeatable)")
    parser.add_argument("--name", help="the sweep's name (results/<name>); default: the spec's name")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep of this name")
    parser.add_argument("--new-baseline", action="store_true",
                        help="time the dense baseline again (a resumed sweep keeps the one it started with)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved spec, trial resources, the workloads and the cost estimate")
    parser.add_argument("--probe", nargs="?", const=PROBE_STEPS, type=int, metavar="STEPS",
                        help=f"time STEPS (default {PROBE_STEPS}) training steps of one worker here for the "
                             "cost estimate, instead of the spec's cost figures")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report (report/index.html)")
    parser.add_argument("--status-every", type=_seconds, default=60.0, metavar="SECONDS",
                        help="print the status line at least this often while trials run, and at each trial's end "
                             "(default 60; 0: only at trial ends)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the status lines and the end, not a line per trial epoch")
    parser.add_argument("--verbose", action="store_true", help="show Ray's own logs")
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    """``--status-every``'s value: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more; got {text!r}")
    return value


def _show_finished(spec: SweepSpec, results: Path) -> int:
    """A finished sweep run again without ``--resume``: its front (``pareto.md``) and how to run more; 0."""
    front = results / "pareto.md"
    if front.is_file():
        print(front.read_text(), end="")
    print(f"sweep {spec.name!r} already finished: results in {results} (nothing was run). To run it again, "
          "start a new one with --name NEW; --resume rewrites its tables and report.")
    return 0


def _absolute(spec: SweepSpec) -> SweepSpec:
    """Paths made absolute against the current directory: Ray workers run elsewhere."""
    data = dataclasses.replace(spec.workload.data, root=_resolved(spec.workload.data.root))
    promote = spec.promote
    if promote.workload is not None:
        promote = dataclasses.replace(promote, workload=dataclasses.replace(
            promote.workload, root=_resolved(promote.workload.root)))
    root = str(Path(spec.storage.root).resolve())  # a path: StorageSpec refuses URIs
    return dataclasses.replace(spec, workload=dataclasses.replace(spec.workload, data=data), promote=promote,
                               storage=dataclasses.replace(spec.storage, root=root))


def _resolved(root: str | None) -> str | None:
    """A data root made absolute; None and URIs as they are."""
    return root if not root or root.startswith(("/", "s3://", "gs://")) else str(Path(root).resolve())


def _check_data(spec: SweepSpec) -> None:
    """The sweep's data tree, and the promoted run's when it names its own root (SpecError naming the key)."""
    try:
        check_root(spec.workload.data)
    except SpecError as err:
        raise err.within("workload") from None
    if spec.promote.enabled and spec.promote.workload is not None and spec.promote.workload.root:
        try:
            check_root(spec.workload.promoted(spec.promote.workload).data)
        except SpecError as err:
            raise SpecError("promote.workload.root", err.message) from None


def sweep(spec: SweepSpec, results: Path, args: argparse.Namespace, *, cluster: dict[str, float],
          argv: Sequence[str], estimate: dict[str, Any], data_copy: dict[str, Any] | None) -> int:
    """Baseline, Tune, tables, then (when every trial ended and one finished) promotion and report; the
    cost's three estimates and the trackers along the way.

    A resumed sweep keeps the baseline it started with unless ``args.new_baseline``. An estimate the spec
    could not make (no ``cost:`` figures, no ``--probe``) is made from the dense baseline once it is timed.
    ``data_copy`` is ``run.json``'s record of the prepared copy the workload reads (None: not a copy).

    Returns:
        The exit code: 0 done, 1 no trial finished, 130 interrupted (143 when by SIGTERM: :func:`run_main`).
    """
    trials_at_once = concurrency(spec, cluster, autoscaling=bool(os.environ.get("RAY_ADDRESS")))
    try:
        classes = subset_classes(spec.workload.data)  # a subset larger than the data fails here
    except SpecError as err:
        raise err.within("workload") from None
    results.mkdir(parents=True, exist_ok=True)  # only now: bad input has been ruled out
    atomic.write_text(results / SPEC_FILE, yaml.safe_dump(to_document(spec), sort_keys=False))
    attempt = {"command": [sys.executable, "-m", "ast_tune.sweep", *argv], "cwd": os.getcwd(),
               "start": datetime.now(UTC).isoformat(timespec="seconds"), "end": None, "status": "running",
               "versions": _versions(), "hardware": {"host": platform.node(), "cpus": cluster["CPU"],
                                                       "gpus": cluster["GPU"]},
               "trials_at_once": trials_at_once, START: estimate, "subset_classes": classes,
               "data_copy": data_copy}
    _write_run(results, attempt)
    journal = Journal(results / JOURNAL)
    status, baseline = "interrupted", None
    stored = "retime" if args.new_baseline else "keep" if args.resume else "match"
    trackers = Trackers.open(spec, results)
    try:
        if spec.storage.baseline == "auto":
            baseline = _baseline(spec, results, trials_at_once, attempt, stored=stored)
            if "unavailable" in attempt[START]:
                attempt[START] = sweep_estimate(spec, baseline=baseline)
                _write_run(results, attempt)
        if args.resume:
            trackers.sync(journal.read())
        _search(spec, results, journal, baseline, trials_at_once,
                watching=_Watching(results, attempt, baseline, trackers, args))
        ended = {e["trial_id"] for e in journal.read() if e["event"] == "end"}
        status = "done" if len(ended) >= spec.search.num_trials else "interrupted"
    finally:
        front = _write_tables(spec, results, journal, baseline and baseline["epoch_seconds"])
        _write_run(results, {**attempt, "end": datetime.now(UTC).isoformat(timespec="seconds"), "status": status})
        trackers.close()
    code = _conclude(spec, results, journal, front, interrupted=status == "interrupted", argv=argv)
    if front is not None:
        trackers.finish(pd.read_parquet(results / "trials.parquet"), _verdict_line(spec, results, journal))
        trackers.close()
    if code == 0:
        _after_trials(spec, results, report=not args.no_report)
    record_actuals(results, attempt, journal, spec.workload, trials_at_once,
                   usd_per_gpu_hour=spec.cost.usd_per_gpu_hour)
    print(cost_line(json.loads((results / "run.json").read_text())), flush=True)
    return code


@dataclasses.dataclass
class _Watching:
    """What follows a running sweep: the status line (and ``run.json``'s half-way estimate from it), the
    trackers, and how much is printed."""

    results: Path
    attempt: dict[str, Any]  # run.json's top record, which the half-way estimate joins
    baseline: dict[str, Any] | None
    trackers: Trackers
    args: argparse.Namespace

    def status(self, spec: SweepSpec, journal: Journal) -> SweepStatus:
        """The sweep's status now, from its journal and ``run.json``."""
        run = json.loads((self.results / "run.json").read_text())
        return status_of(spec, journal.read(), attempts=attempts_of(run), now=time.time(), live=True,
                         baseline=self.baseline, estimate=self.attempt[START])

    def noted(self, status: SweepStatus) -> None:
        """Record ``run.json``'s half-way estimate the first time it is due."""
        if self.attempt.get(HALF) is None and (half := half_estimate(self.attempt, status.projection)):
            self.attempt[HALF] = half
            _write_run(self.results, self.attempt)

    def callbacks(self, spec: SweepSpec, journal: Journal) -> list[StatusCallback]:
        return [StatusCallback(functools.partial(self.status, spec, journal), every=self.args.status_every,
                               on_status=self.noted)]


def _after_trials(spec: SweepSpec, results: Path, *, report: bool) -> None:
    """Promote a trial (``promote.enabled``; a rule that finds none is not a failure), then the report."""
    if spec.promote.enabled:
        try:
            promote(results)
        except NoCandidateError as err:
            print(f"promote: {err}", file=sys.stderr)
    if report:
        print(f"report: {write_report(results)}", flush=True)


def _search(spec: SweepSpec, results: Path, journal: Journal, baseline: dict[str, Any] | None,
            trials_at_once: int, *, watching: _Watching) -> None:
    """A new Tune run of the sweep: what a killed driver left open in the study closed, its unfinished
    trials resumed, new ones asked until ``search.num_trials``."""
    study = open_study(spec, results)
    resume = reconcile(study, journal.read(), spec=spec, baseline=baseline)
    if resume:
        print(f"resume: trial(s) {', '.join(str(t.number) for t in resume)} continue after their newest "
              "checkpoint", flush=True)
    fit(make_tuner(spec, results, study=study, resume=resume, journal=journal, concurrency=trials_at_once,
                   baseline=baseline, marker=write_marker(results), watch=watching.callbacks(spec, journal),
                   on_entry=watching.trackers.record, quiet=watching.args.quiet))


def _baseline(spec: SweepSpec, results: Path, trials_at_once: int, attempt: dict[str, Any], *,
              stored: str) -> dict[str, Any]:
    """Time (or reuse: ``stored``, see :func:`ensure_baseline`) the dense baseline (``baseline.json``)."""
    print("baseline: timing the dense baseline (or reusing baseline.json)", flush=True)
    side_by_side = 1 if spec.workload.gpus_per_worker else trials_at_once  # CPU trials share the cores
    (baseline,) = in_threads([functools.partial(ensure_baseline, spec, results / BASELINE_FILE,
                                                storage_path=results / "train", runs_at_once=side_by_side,
                                                stored=stored)])
    device = baseline["fingerprint"]["device"]
    attempt["hardware"]["device"] = device
    print(f"baseline: {baseline['epoch_seconds']:.3f} s per epoch (median of {baseline['epochs_timed']}), "
          f"top1 {baseline['val_top1']:.2f}% on {device}", flush=True)
    return baseline


def _conclude(spec: SweepSpec, results: Path, journal: Journal, front: pd.DataFrame | None, *,
              interrupted: bool, argv: Sequence[str]) -> int:
    """Print the front and where the results are; the exit code."""
    if front is not None:
        target = verdict.target_top1(read_baseline(results / BASELINE_FILE), spec.criteria)
        print(export.front_markdown(front, [(o.metric, o.mode) for o in spec.objectives], target=target))
        print(_verdict_line(spec, results, journal), flush=True)
    print(f"results: {results}", flush=True)
    ends = {e["trial_id"]: e.get("reason") for e in journal.read() if e["event"] == "end"}
    if unshared := not_shared_line(ends, spec.storage.root):
        print(unshared, file=sys.stderr, flush=True)
    if interrupted:
        print(_interrupted_line(argv, results), file=sys.stderr)
        return EXIT_INTERRUPTED
    if not export.eligible(epochs_frame(journal.read())).any():
        print("sweep failed: no trial finished; see the reason column of trials.csv", file=sys.stderr)
        return 1
    return 0


def _interrupted_line(argv: Sequence[str], results: Path | None) -> str:
    """What an interrupted sweep prints: the command that continues it, with ``--resume`` once the sweep exists
    (its ``spec.yaml``; before, nothing was written and the same command starts it)."""
    exists = results is not None and (results / SPEC_FILE).is_file()
    again = continue_command("ast_tune.sweep", argv, flag="--resume" if exists else None)
    return f"interrupted; continue with: {again}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(functools.partial(_main, argv), interrupted=_interrupted_line(argv, None),
                    failures={Exception: lambda err: f"sweep failed: {failure_reason(err)}"},
                    log_format="%(message)s", trace_level=logging.INFO)  # the traceback, with --verbose


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    spec = _absolute(load_sweep(args.spec, args.set, name=args.name))
    results = Path(spec.storage.root) / spec.name
    check_search(spec)  # sampler, space and scheduler: before the baseline is timed and results/<name>/ exists
    if args.dry_run:
        print(yaml.safe_dump(to_document(spec), sort_keys=False), end="")
        print(resources_line(spec))
        print_estimate(spec, args.probe)
        return 0
    _check_data(spec)
    check_trackers(spec.tracking)
    try:
        copy = copy_record(spec.workload.data)
    except SpecError as err:
        raise err.within("workload") from None
    if warning := size_warning(spec.workload.data, copy):
        print(warning, file=sys.stderr, flush=True)
    estimate = sweep_estimate(spec, args.probe)
    try:
        with lock.hold(results, say=lambda line: print(line, flush=True)):  # one driver per sweep
            if check_results(spec, results, resume=args.resume) and not args.resume:
                return _show_finished(spec, results)
            if not args.verbose:  # our progress lines only
                logging.getLogger("ray").setLevel(logging.CRITICAL)
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy reporter: silent at verbose=0
            with ray_session(verbose=args.verbose) as cluster:
                return sweep(spec, results, args, cluster=cluster, argv=argv, estimate=estimate, data_copy=copy)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside the Tune run (which stops itself): what is written is whole
        print(_interrupted_line(argv, results), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
