"""LOSO runner: run folder, skip/resume (also after SIGKILL), config refusal, test-subject isolation,
test_best stamping, fold-order independence, executors local / --jobs 2 / Ray, controls, grids.

A 3-subject corpus of 8-frame 32x32 clips is written straight into a cache (toycache.py: the real
npz format, index.csv with row keys) in a temp folder; the real `tiny` FDP model trains 12 steps per
fold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fdpkit.loso.run as runner
from fdpkit.loso.config import RunConfigMismatch, parse_sets, split_overrides
from fdpkit.loso.grid import run_grid
from fdpkit.loso.outputs import read_predictions
from fdpkit.cli import main as cli_main
from fdpkit.io import read_json
from fdpkit.train.config import OPTIMISTIC_WARNING
from fdpkit.train.log import TrainingDiverged

sys.path.insert(0, str(Path(__file__).parent))
from toycache import TOY_CLASSES as CLASSES  # noqa: E402
from toycache import make_toy_cache  # noqa: E402

SUBJECTS = ["s01", "s02", "s03"]
RUN = dict(preset="tiny", steps=12, batch_size=4, progress=False, verbose=False,
           overrides={"checkpoint_every": 3})
CLI_RUN = ["--preset", "tiny", "--steps", "12", "--batch-size", "4", "--set", "checkpoint_every=3",
           "--jobs", "1"]  # one fold after another: the kill test needs fold order


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_toy_cache(tmp_path_factory.mktemp("loso"), SUBJECTS, clips_per_subject=6)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """One clean local run over all three folds, shared by the comparisons below."""
    manifest, cache = corpus
    out = tmp_path_factory.mktemp("ref") / "run"
    summary = runner.run_loso(manifest, cache, out, **RUN)
    return out, summary


def files_equal(a: Path, b: Path, names=("predictions.csv", "results.csv", "summary.json")) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_run_folder_layout(reference, corpus):
    out, summary = reference
    config = read_json(out / "config.json")
    assert config["manifest"]["sha256"] and config["fdpkit_version"] and config["selection"] == "fixed_steps"
    assert config["train"]["steps"] == 12 and config["train"]["lr"] == 1e-3  # tiny preset defaults
    assert set(config["fold_seeds"]) == {f"synthme/{s}" for s in SUBJECTS}
    for subject in SUBJECTS:
        fold = out / "folds" / f"synthme_{subject}"
        for name in ("metrics.json", "predictions.csv", "checkpoint.pt", "train_log.csv"):
            assert (fold / name).exists(), (subject, name)
        metrics = read_json(fold / "metrics.json")
        assert metrics["selection"] == "fixed_steps" and "warning" not in metrics
        assert metrics["n_test"] == 6 and metrics["n_train"] == 12 and metrics["selected_step"] == 12
        assert len(pd.read_csv(fold / "train_log.csv")) == 12
    pred = read_predictions(out / "predictions.csv")
    for column in ("dataset", "subject", "clip", "clip_uid", "label", "pred", "p_happiness", "p_others"):
        assert column in pred
    assert len(pred) == 18 and pred["subject"].iloc[0] == "s01"
    assert np.allclose(pred[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1)
    assert (pred["selection"] == "fixed_steps").all()
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 3 and {"uf1", "uar", "accuracy", "fold_seed", "selection"} <= set(results)
    saved = read_json(out / "summary.json")
    assert saved == json.loads(json.dumps(summary))
    for key in ("pooled", "ci", "per_class", "per_fold", "seeds", "preset", "protocol", "manifest_sha256"):
        assert key in summary
    assert summary["selection"] == "fixed_steps" and "warning" not in summary
    assert set(summary["pooled"]) >= {"accuracy", "uf1", "uar", "weighted_f1"}


def test_rerun_skips_finished_folds(reference, corpus, monkeypatch, tmp_path):
    out, summary = reference
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "config.json"}

    def no_training(task):
        raise AssertionError(f"fold {task.fold.subject_uid} was run again")

    monkeypatch.setattr(runner, "run_fold", no_training)
    assert runner.run_loso(corpus[0], corpus[1], out, **RUN) == summary
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "config.json"}
    assert before == after


def test_other_config_is_refused_unless_forced(reference, corpus, tmp_path, capsys):
    out, _ = reference
    other = tmp_path / "run"
    runner.run_loso(*corpus, other, **{**RUN, "steps": 3}, folds="s01")
    with pytest.raises(RunConfigMismatch, match="steps"):
        runner.run_loso(*corpus, other, **RUN, folds="s01")
    args = ["loso", "--manifest", str(corpus[0]), "--cache", str(corpus[1]), "--out", str(other),
            "--folds", "s01", *CLI_RUN]
    assert cli_main(args) == 5 and "--force" in capsys.readouterr().err
    assert cli_main(args + ["--force"]) == 0
    assert read_json(other / "folds" / "synthme_s01" / "metrics.json")["steps"] == 12
    # the fold trained alone gives the same result as inside the full run: seeds ignore fold order
    files_equal(other / "folds" / "synthme_s01", out / "folds" / "synthme_s01", ["predictions.csv"])


def test_cli_default_jobs_is_one_fold_process_per_core(monkeypatch):
    from fdpkit.cli import build_parser
    from fdpkit.loso.executors import auto_jobs

    args = build_parser().parse_args(["loso", "--manifest", "m.csv", "--cache", "c", "--out", "o"])
    assert args.jobs == 0
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert auto_jobs(0) == 2 and auto_jobs(3) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert auto_jobs(0) == 4
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert auto_jobs(0) == 1  # local folds would share one GPU


class Spy:
    """Records every item access with the phase it happened in (training or evaluation)."""

    phase = ["outside"]

    def __init__(self, base, accesses):
        self.base, self.accesses = base, accesses

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        self.accesses.append((self.phase[0], item[3]))
        return item


@pytest.fixture
def spy(monkeypatch):
    accesses: list[tuple[str, str]] = []
    real_dataset, real_train = runner.make_dataset, runner.train_fold

    def make_dataset(cache_dir, rows, classes, inputs="frames"):
        return Spy(real_dataset(cache_dir, rows, classes, inputs), accesses)

    def train_fold(*args, **kwargs):
        Spy.phase[0] = "train"
        try:
            return real_train(*args, **kwargs)
        finally:
            Spy.phase[0] = "outside"

    monkeypatch.setattr(runner, "make_dataset", make_dataset)
    monkeypatch.setattr(runner, "train_fold", train_fold)
    return accesses


@pytest.mark.parametrize("selection", ["fixed_steps", "inner_val"])
def test_test_subject_is_unreachable_during_training(corpus, tmp_path, spy, selection):
    runner.run_loso(*corpus, tmp_path / "run", **RUN, selection=selection, folds="s02")
    during = {uid for phase, uid in spy if phase == "train"}
    after = {uid for phase, uid in spy if phase == "outside"}
    assert during and not any(uid.startswith("synthme/s02/") for uid in during)
    assert {uid for uid in after if uid.startswith("synthme/s02/")} == {f"synthme/s02/c{k}" for k in range(6)}
    if selection == "inner_val":  # only training subjects, one of them held out for validation
        metrics = read_json(tmp_path / "run" / "folds" / "synthme_s02" / "metrics.json")
        assert metrics["n_inner_val"] == 6 and metrics["n_train"] == 6 and metrics["history"]


def test_test_best_is_stamped_optimistic_everywhere(corpus, tmp_path, spy):
    out = tmp_path / "run"
    summary = runner.run_loso(*corpus, out, **RUN, selection="test_best", folds="s01")
    # the spy sees the test subject during training: this mode is the released code's selection
    assert any(phase == "train" and uid.startswith("synthme/s01/") for phase, uid in spy)
    assert summary["selection"] == "test_best" and summary["warning"] == OPTIMISTIC_WARNING
    for path in (out / "config.json", out / "summary.json", out / "folds" / "synthme_s01" / "metrics.json"):
        data = read_json(path)
        assert data["selection"] == "test_best" and "optimistic" in data["warning"], path
    results = pd.read_csv(out / "results.csv")
    assert (results["selection"] == "test_best").all() and results["warning"].str.contains("optimistic").all()
    pred = read_predictions(out / "predictions.csv")
    assert (pred["selection"] == "test_best").all() and pred["optimistic"].all()


def test_shuffled_label_control(corpus, tmp_path, monkeypatch):
    seen = []
    real = runner.train_fold

    def train_fold(model, data, config, **kw):
        seen.append([data[i][2] for i in range(len(data))])
        return real(model, data, config, **kw)

    monkeypatch.setattr(runner, "train_fold", train_fold)
    summary = runner.run_loso(*corpus, tmp_path / "run", **RUN, shuffle_labels=True, folds="s03")
    true = [k % 3 for k in range(6)] * 2  # subjects s01, s02 in manifest order
    assert sorted(seen[0]) == sorted(true) and seen[0] != true
    pred = read_predictions(tmp_path / "run" / "predictions.csv")
    assert list(pred["label"]) == [CLASSES[k % 3] for k in range(6)]  # test labels stay true
    assert summary["shuffle_labels"] and "chance" in summary["control"] and "chance" in summary


def test_nan_loss_stops_the_run_naming_fold_and_step(corpus, tmp_path, monkeypatch):
    real = runner.make_dataset

    class Poisoned:
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            frames, image, label, uid = self.base[i]
            return torch.full_like(frames, float("nan")), image, label, uid

    monkeypatch.setattr(runner, "make_dataset", lambda c, r, k, i="frames": Poisoned(real(c, r, k, i)))
    with pytest.raises(TrainingDiverged, match=r"fold synthme/s01: loss is nan at step 1\b"):
        runner.run_loso(*corpus, tmp_path / "run", **RUN, folds="s01")
    assert not (tmp_path / "run" / "folds" / "synthme_s01" / "metrics.json").exists()


def test_jobs_2_gives_the_same_results_as_local(reference, corpus, tmp_path):
    out, _ = reference
    runner.run_loso(*corpus, tmp_path / "jobs", **RUN, jobs=2)
    files_equal(out, tmp_path / "jobs")


def test_ray_gives_the_same_results_as_local(reference, corpus, tmp_path):
    """The executor starts the local Ray node itself (once for the run, with the longer start-up
    allowance and retries of `fdpkit.loso.executors.start_ray`) and shuts it down afterwards."""
    out, _ = reference
    ray = pytest.importorskip("ray")
    runner.run_loso(*corpus, tmp_path / "ray", **RUN, executor="ray")
    assert not ray.is_initialized()
    files_equal(out, tmp_path / "ray")


def test_killed_run_resumes_to_identical_results(reference, corpus, tmp_path):
    out, _ = reference
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "fdpkit", "loso", "--manifest", str(corpus[0]), "--cache", str(corpus[1]),
           "--out", str(run), *CLI_RUN]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = run / "folds" / "synthme_s02" / "checkpoint.pt"  # mid-way through the second fold
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "folds" / "synthme_s01" / "metrics.json").exists()
    assert not (run / "folds" / "synthme_s02" / "metrics.json").exists()
    assert not (run / "summary.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 of 3 folds already finished" in done.stdout and "pooled UF1" in done.stdout
    files_equal(out, run)
    for subject in SUBJECTS:
        a = pd.read_csv(out / "folds" / f"synthme_{subject}" / "train_log.csv").drop(columns="seconds")
        b = pd.read_csv(run / "folds" / f"synthme_{subject}" / "train_log.csv").drop(columns="seconds")
        assert a.equals(b), subject


def test_grid_runs_each_entry_and_tabulates_pooled_metrics(corpus, tmp_path):
    grid = [("fdp", {}), ("apex", {"model": "apex-frame"}), ("diff_lr", {"model": "difference", "lr": 3e-3})]
    table = run_grid(*corpus, tmp_path, grid, **{**RUN, "steps": 4}, folds="s01")
    assert list(table["name"]) == ["fdp", "apex", "diff_lr"]
    assert list(table["model"]) == ["fdp", "apex-frame", "difference"]
    assert {"uf1", "uf1_low", "uf1_high", "uar", "accuracy"} <= set(table)
    assert read_json(tmp_path / "diff_lr" / "config.json")["train"]["lr"] == 3e-3
    assert (tmp_path / "grid.csv").exists()


def test_parse_sets_and_overrides():
    sets = parse_sets(["lr=3e-4", "encoder=cnn", "depths=[1,1,1,1]", "model.frames=8", "train.steps=5"])
    run, train, model = split_overrides(sets)
    assert run == {} and train == {"lr": 3e-4, "steps": 5}
    assert model == {"encoder": "cnn", "depths": [1, 1, 1, 1], "frames": 8}
    with pytest.raises(ValueError):
        parse_sets(["nokey"])


def test_a_run_resumed_for_more_folds_lists_them_all_in_its_config(corpus, tmp_path):
    """02's one-fold run resumed by 03 for every fold: config.json names every fold and its seed."""
    out = tmp_path / "run"
    runner.run_loso(*corpus, out, **RUN, folds="s01")
    assert read_json(out / "config.json")["folds"] == ["synthme/s01"]
    runner.run_loso(*corpus, out, **RUN, folds="s01,s02")
    config = read_json(out / "config.json")
    assert config["folds"] == ["synthme/s01", "synthme/s02"]
    assert set(config["fold_seeds"]) == {"synthme/s01", "synthme/s02"}
