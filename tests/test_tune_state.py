"""Tune's saved state after a kill mid-copy (``tuning.tune_state``), on hand-made state files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from ast_tune.tuning.trust import missing_modules
from ast_tune.tuning.tune_state import usable_snapshot, whole

OLD, NEW = "2026-12-02_00-59-09", "2026-12-02_01-00-24"


def _snapshot(tune_dir: Path, stamp: str, *, searcher: bytes | None = None) -> None:
    """The three files of one Tune snapshot; ``searcher`` replaces the searcher state's bytes."""
    (tune_dir / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": []}))
    (tune_dir / f"search_gen_state-{stamp}.json").write_bytes(pickle.dumps({"counter": 3}))
    (tune_dir / f"searcher-state-{stamp}.pkl").write_bytes(pickle.dumps([1, 2]) if searcher is None else searcher)


def test_a_file_is_whole_only_when_it_reads_to_its_end(tmp_path):
    cases = {"empty": b"", "json": b'{"a": 1}', "pickle": pickle.dumps({"a": 1}), "cut": pickle.dumps({"a": 1})[:-3]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {name: whole(tmp_path / name) for name in cases} == {"empty": False, "json": True, "pickle": True,
                                                                "cut": False}


def test_a_torn_newest_snapshot_is_set_aside_whole_and_the_older_one_is_kept(tmp_path):
    _snapshot(tmp_path, OLD)
    _snapshot(tmp_path, NEW, searcher=b"")  # emptied by a kill while Tune copied it
    lines: list[str] = []
    assert usable_snapshot(tmp_path, say=lines.append)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if NEW in n] == [f"experiment_state-{NEW}.json.torn", f"search_gen_state-{NEW}.json.torn",
                                              f"searcher-state-{NEW}.pkl.torn"]  # all three: one snapshot
    assert len([n for n in names if OLD in n and not n.endswith(".torn")]) == 3
    assert len(lines) == 3 and all("set aside" in line for line in lines)


def test_with_no_whole_snapshot_everything_is_set_aside_and_nothing_is_restored(tmp_path):
    _snapshot(tmp_path, OLD, searcher=pickle.dumps([1])[:2])
    (tmp_path / "journal.jsonl").write_text("")
    assert not usable_snapshot(tmp_path, say=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".torn")) == ["journal.jsonl"]
    assert not usable_snapshot(tmp_path / "absent", say=lambda line: None)  # never saved: nothing to restore


def test_a_cut_pickle_is_read_up_to_the_cut_for_the_modules_it_names(tmp_path):
    data = pickle.dumps(missing_modules)  # names ast_tune.tuning.trust
    (tmp_path / "cut.pkl").write_bytes(data[:-2])
    (tmp_path / "old.pkl").write_bytes(data.replace(b".trust", b".trusx"))  # a module this version lacks
    assert missing_modules(tmp_path) == ["ast_tune.tuning.trusx"]
