"""One list of the metrics an objective may name (``columns.OBJECTIVE_METRICS``), checked alike by the
sweep spec (before any compute) and by the tables (after it all).

What this guards: an objective the spec accepts (e.g. ``train_loss``) must not be refused when the
tables are written, or a sweep would spend all its compute and then exit 2.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import parse_sweep, to_document
from ast_tune.export import main
from ast_tune.results.tables import write_tables

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
#: Every number a run reports or a trial row holds: what a user might write as an objective.
CANDIDATE_METRICS = sorted({*columns.EPOCH_METRICS, *columns.TRIAL_COLUMNS} - {"trial_id", "status", "phase"})


def _epochs() -> pd.DataFrame:
    """Three one-epoch trials, every metric a distinct finite number; trial c errored."""
    rows = []
    for i, (trial, status) in enumerate((("a", "TERMINATED"), ("b", "STOPPED"), ("c", "ERROR"))):
        row = {name: float(10 * (i + 1) + k) for k, name in enumerate(columns.EPOCH_METRICS)}
        row.update(trial_id=trial, status=status, epoch=1, phase="ast", reason=None, **{"param.kp": 0.1 * (i + 1)})
        rows.append(row)
    return pd.DataFrame(rows)[[*columns.EPOCH_TABLE_KEYS, *columns.EPOCH_METRICS, "param.kp", "reason"]]


@pytest.mark.parametrize("metric", CANDIDATE_METRICS)
@pytest.mark.parametrize("mode", ["min", "max"])
def test_an_objective_the_sweep_spec_accepts_gets_its_tables_written(metric, mode, tmp_path):
    document = {**yaml.safe_load(QUICKSTART.read_text()), "objectives": [{"metric": metric, "mode": mode}]}
    try:
        spec = parse_sweep(document)
    except SpecError as err:  # refused before any compute: fine
        assert err.key == "objectives[0].metric", err
        return
    front = write_tables(tmp_path, _epochs(), [(o.metric, o.mode) for o in spec.objectives])  # as the sweep does
    assert front["trial_id"].tolist() == (["a"] if mode == "min" else ["b"])  # c errored: never on the front
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(to_document(spec), sort_keys=False))
    (tmp_path / "pareto.md").unlink()
    assert main([str(tmp_path), "--out", str(tmp_path / "front.md")]) == 0  # as export does, from spec.yaml
    assert (tmp_path / "pareto.md").read_text() == (tmp_path / "front.md").read_text()


def test_objective_metrics_are_reported_every_epoch_and_kept_per_trial():
    assert set(columns.OBJECTIVE_METRICS) <= set(columns.EPOCH_METRICS) & set(columns.TRIAL_COLUMNS)


def test_the_scheduler_names_the_same_metrics():
    document = {**yaml.safe_load(QUICKSTART.read_text()), "scheduler": {"kind": "asha", "metric": "train_loss",
                                                                          "mode": "min"}}
    with pytest.raises(SpecError, match=r"^scheduler\.metric: must be one of val_top1, "):
        parse_sweep(document)
