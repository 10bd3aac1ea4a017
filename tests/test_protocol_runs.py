"""The protocols the field reports, end to end through the same runner (issue #15 item 4).

SynthME split by subject into two pseudo corpora (``synthme_a``: the first half of the subjects,
``synthme_b``: the rest) stands in for a composite of real corpora:

* composite LOSO: one fold per subject across both corpora; summary.json has per-dataset UF1/UAR
  (with intervals) next to the overall, and the CLI prints them;
* cross-dataset (MEGC 2019's holdout-database evaluation): one fold per corpus, trained only on the
  other corpus's clips, every clip predicted exactly once.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fdpkit.cli import main
from fdpkit.data.manifest import Manifest, read_manifest, write_manifest
from fdpkit.data.protocols import load_protocol
from fdpkit.loso import run as run_module
from fdpkit.loso.folds import dataset_folds, make_folds

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
STEPS = ["--set", "steps=3", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def pseudo_composite(tmp_path_factory):
    """(manifest, cache) of SynthME (4 subjects x 5 clips) under MEGC 2019's composite 3-class map
    (SynthME writes CASME II's emotion strings, so CASME II's map applies; "others" is left out),
    relabelled as two corpora, preprocessed."""
    base = tmp_path_factory.mktemp("pseudo")
    assert main(["synth", "--out", str(base / "synthme"), "--subjects", "4", "--clips-per-subject", "5"]) == 0
    assert main(["manifest", "--dataset", "synthme", "--root", str(base / "synthme"),
                 "--out", str(base / "synthme.csv")]) == 0
    m = read_manifest(base / "synthme.csv")
    megc = load_protocol("composite_3class")
    rows = m.rows.copy()
    rows["label"] = [megc.label("casme2", e)[1] if megc.label("casme2", e)[0] == "label" else None
                     for e in rows["emotion"]]
    rows = rows[rows["label"].notna()].reset_index(drop=True)
    subjects = sorted(rows["subject"].unique())
    half = set(subjects[: len(subjects) // 2])
    rows["dataset"] = ["synthme_a" if s in half else "synthme_b" for s in rows["subject"]]
    rows["subject_uid"] = rows["dataset"] + "/" + rows["subject"]
    rows["clip_uid"] = rows["subject_uid"] + "/" + rows["clip"]
    manifest = write_manifest(Manifest(rows, megc.name, list(megc.classes)), base / "composite.csv")
    assert main(["preprocess", "--manifest", str(manifest), "--cache", str(base / "cache"),
                 "--workers", "1"]) == 0
    return manifest, base / "cache"


def test_dataset_folds_hold_out_whole_corpora():
    rows = pd.DataFrame({"dataset": ["a", "a", "b", "b", "b"], "subject_uid": ["a/1", "a/2", "b/1", "b/1", "b/2"]})
    folds = dataset_folds(rows, 0)
    assert [f.subject_uid for f in folds] == ["a", "b"]
    assert folds[0].test_index == (0, 1) and folds[0].train_index == (2, 3, 4)
    assert folds[1].test_index == (2, 3, 4) and folds[1].train_index == (0, 1)
    assert [f.subject_uid for f in make_folds(rows, "dataset", 0, "b")] == ["b"]
    with pytest.raises(ValueError, match="at least 2 datasets"):
        dataset_folds(rows[rows["dataset"] == "a"], 0)
    with pytest.raises(ValueError, match="no clips for dataset"):
        dataset_folds(rows, 0, "c")
    with pytest.raises(ValueError, match="holdout must be one of"):
        make_folds(rows, "clip")


def test_composite_loso_reports_each_corpus_next_to_the_overall(pseudo_composite, tmp_path, capsys):
    manifest, cache = pseudo_composite
    out = tmp_path / "loso"
    assert main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out),
                 "--jobs", "1", *STEPS]) == 0
    summary = json.loads((out / "summary.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv", dtype=str)
    assert summary["holdout"] == "subject" and summary["classes"] == ["negative", "positive", "surprise"]
    assert set(summary["per_dataset"]) == {"synthme_a", "synthme_b"}
    for name, block in summary["per_dataset"].items():
        part = predictions[predictions["dataset"] == name]
        assert block["n"] == len(part) and block["n_subjects"] == part["subject"].nunique()
        assert len(block["ci"]["uf1"]) == 2
    assert sum(b["n"] for b in summary["per_dataset"].values()) == summary["n"]
    assert sorted(predictions["fold"].unique()) == sorted(predictions["subject_uid"].unique())   # LOSO
    assert summary["train"]["steps"] == 3   # --set steps=3 is honoured (it was overwritten by the preset's)
    assert all(json.loads(p.read_text())["steps"] == 3 for p in out.glob("folds/*/metrics.json"))
    printed = capsys.readouterr().out
    assert "synthme_a: UF1" in printed and "synthme_b: UF1" in printed


def test_cross_dataset_trains_on_the_other_corpus_only(pseudo_composite, tmp_path, monkeypatch):
    manifest, cache = pseudo_composite
    seen = {}
    real = run_module.train_fold

    def spy(model, train_data, config, **kw):   # which corpora each fold's training set holds
        uids = [train_data[i][3] for i in range(len(train_data))]
        seen[kw["fold"]] = {uid.split("/")[0] for uid in uids}
        return real(model, train_data, config, **kw)

    monkeypatch.setattr(run_module, "train_fold", spy)
    out = tmp_path / "cross"
    assert main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out),
                 "--jobs", "1", "--holdout", "dataset", *STEPS]) == 0
    assert seen == {"synthme_a": {"synthme_b"}, "synthme_b": {"synthme_a"}}
    predictions = pd.read_csv(out / "predictions.csv", dtype=str)
    rows = read_manifest(manifest).rows
    assert sorted(predictions["clip_uid"]) == sorted(rows["clip_uid"])   # every clip exactly once
    assert (predictions["fold"] == predictions["dataset"]).all()
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["holdout"] == "dataset" and config["fingerprint"]["holdout"] == "dataset"
    assert set(summary["seeds"]["folds"]) == {"synthme_a", "synthme_b"}
    results = pd.read_csv(out / "results.csv", dtype={"subject": str})
    assert results["selected_step"].notna().all() and len(results) == rows["subject_uid"].nunique()
    # a LOSO run cannot resume into the cross-dataset folder: another config
    assert main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out),
                 "--jobs", "1", *STEPS]) == 5


def test_steps_given_twice_with_different_values_is_refused(pseudo_composite, tmp_path):
    manifest, cache = pseudo_composite
    with pytest.raises(ValueError, match="steps is given twice"):
        run_module.run_loso(manifest, cache, tmp_path / "r", steps=3, overrides={"steps": 4}, verbose=False)
    assert not (tmp_path / "r").exists()   # refused before anything is written
