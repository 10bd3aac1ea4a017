"""Faults of training runs (fdpkit.train.loop, fdpkit.loso.run): SIGKILL during a fold and during a checkpoint
write, a full disk on a checkpoint write, NaN/inf loss, and a RUN_DIR made with another config.

The toy corpus (2 subjects x 4 random clips in the real cache format) trains the real `tiny` FDP
model 6 steps per fold with a checkpoint every 2 steps; `toy_reference` is the uninterrupted run.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil

import pandas as pd
import pytest

import fdpkit.train.loop as train
from fdpkit import io
from fdpkit.cli import main as cli_main
from fdpkit.loso.run import run_loso
from fdpkit.train.log import TrainingDiverged

from faultkit import CLI_RUN, RUN, run_python, temp_files

RESULT_FILES = ("predictions.csv", "results.csv", "summary.json")


def same_results(reference, run) -> None:
    for name in RESULT_FILES:
        assert (reference / name).read_bytes() == (run / name).read_bytes(), name
    for fold in ("synthme_s01", "synthme_s02"):
        a = pd.read_csv(reference / "folds" / fold / "train_log.csv").drop(columns="seconds")
        b = pd.read_csv(run / "folds" / fold / "train_log.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)
        for name in ("predictions.csv",):
            assert (reference / "folds" / fold / name).read_bytes() == (run / "folds" / fold / name).read_bytes()


def killed_run(toy, out, kill: str, at: int):
    """Run LOSO in a child process that SIGKILLs itself: kill="step" before its `at`-th optimiser
    step (counted over all folds), kill="write" half-way through its `at`-th checkpoint write."""
    manifest, cache = toy
    done = run_python(f"""
        import os, signal
        from fdpkit import io
        import fdpkit.train.loop as train
        count = [0]
        if {kill!r} == "step":
            real_lr = train.lr_at
            def lr_at(config, step):
                count[0] += 1
                if count[0] == {at}:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_lr(config, step)
            train.lr_at = lr_at
        else:
            real = io._write_all
            def write_all(fd, data):
                if ".checkpoint.pt.tmp-" in os.readlink(f"/proc/self/fd/{{fd}}"):
                    count[0] += 1
                    if count[0] == {at}:
                        real(fd, memoryview(data)[:len(data) // 2])
                        os.kill(os.getpid(), signal.SIGKILL)
                real(fd, data)
            io._write_all = write_all
        from fdpkit.loso.run import run_loso
        run_loso({str(manifest)!r}, {str(cache)!r}, {str(out)!r}, **{RUN!r})
    """)
    assert done.returncode == -9, done.stdout + done.stderr


def test_sigkill_during_a_fold_then_rerun_gives_identical_results(toy, toy_reference, tmp_path):
    out = tmp_path / "run"
    killed_run(toy, out, "step", at=6 + 4)                     # fold 2, before its 4th step
    assert (out / "folds" / "synthme_s01" / "metrics.json").exists()
    assert not (out / "folds" / "synthme_s02" / "metrics.json").exists()
    assert io.load_torch(out / "folds" / "synthme_s02" / "checkpoint.pt")["step"] == 2
    assert not (out / "summary.json").exists()
    run_loso(*toy, out, **RUN)
    same_results(toy_reference, out)
    assert not temp_files(out)


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_and_resumes_identically(toy, toy_reference,
                                                                                         tmp_path):
    out = tmp_path / "run"
    killed_run(toy, out, "write", at=2)                        # fold 1's step-4 checkpoint, half written
    fold = out / "folds" / "synthme_s01"
    assert io.load_torch(fold / "checkpoint.pt")["step"] == 2  # the step-2 checkpoint is intact
    assert [p.name.startswith(".checkpoint.pt.tmp-") for p in temp_files(out)] == [True]
    run_loso(*toy, out, **RUN)
    same_results(toy_reference, out)
    assert not temp_files(out)                                 # the dead writer's temp file is swept


def _disk_full_on_checkpoint(monkeypatch, at: int):
    real, count = io._write_all, [0]

    def write_all(fd, data):
        if ".checkpoint.pt.tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
            count[0] += 1
            if count[0] == at:
                real(fd, memoryview(data)[:1000])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(io, "_write_all", write_all)


def test_disk_full_on_a_checkpoint_write_is_a_clear_error_and_keeps_the_last_checkpoint(toy, toy_reference,
                                                                                       tmp_path, monkeypatch):
    out = tmp_path / "run"
    _disk_full_on_checkpoint(monkeypatch, at=2)
    with pytest.raises(OSError, match=r"No space left on device \(disk full\?\): writing .*checkpoint\.pt failed"):
        run_loso(*toy, out, **RUN)
    fold = out / "folds" / "synthme_s01"
    assert io.load_torch(fold / "checkpoint.pt")["step"] == 2
    assert not temp_files(out) and not (fold / "metrics.json").exists()
    monkeypatch.undo()
    run_loso(*toy, out, **RUN)                                 # space freed: the same command resumes
    same_results(toy_reference, out)


def cli_loso_stderr(toy, out, capsys, fault: type[Exception]) -> tuple[int, str]:
    """`fdpkit loso` in this process: (exit code, stderr); the fault must not escape as a traceback."""
    manifest, cache = toy
    try:
        code = cli_main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out), *CLI_RUN])
    except fault as error:
        pytest.fail(f"fdpkit loso let {type(error).__name__} escape as a traceback: {error}")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_disk_full_in_the_cli_is_one_clear_line_and_a_nonzero_exit(toy, tmp_path, monkeypatch, capsys):
    _disk_full_on_checkpoint(monkeypatch, at=1)
    code, err = cli_loso_stderr(toy, tmp_path / "run", capsys, OSError)
    assert code == 7 and re.search(r"fdpkit loso: .*No space left on device.*checkpoint\.pt", err), err


def poison_loss(monkeypatch, at_call: int, value: float):
    real = train.fdp_loss
    calls = [0]

    def loss(output, *args, **kwargs):
        calls[0] += 1
        total, parts = real(output, *args, **kwargs)
        if calls[0] == at_call:
            total = total * value
        return total, parts

    monkeypatch.setattr(train, "fdp_loss", loss)  # what the trainer's loop calls


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_loss_stops_naming_fold_and_step_and_keeps_the_last_good_checkpoint(toy, tmp_path,
                                                                                      monkeypatch, value):
    out = tmp_path / "run"
    poison_loss(monkeypatch, at_call=5, value=value)
    with pytest.raises(TrainingDiverged) as info:
        run_loso(*toy, out, **RUN)
    message = str(info.value)
    shown = "nan" if math.isnan(value) else "inf"
    assert re.search(rf"fold synthme/s01: loss is {shown} at step 5\b", message), message
    assert re.search(r"last good checkpoint .*checkpoint\.pt \(step 4\) is kept", message), message
    assert (info.value.fold, info.value.step) == ("synthme/s01", 5)
    fold = out / "folds" / "synthme_s01"
    assert io.load_torch(fold / "checkpoint.pt")["step"] == 4
    assert len(pd.read_csv(fold / "train_log.csv")) == 4
    assert not (fold / "metrics.json").exists() and not (out / "summary.json").exists()


def test_nan_loss_in_the_cli_is_one_clear_line_and_a_nonzero_exit(toy, tmp_path, monkeypatch, capsys):
    poison_loss(monkeypatch, at_call=3, value=math.nan)
    code, err = cli_loso_stderr(toy, tmp_path / "run", capsys, TrainingDiverged)
    assert code == 6 and re.search(r"fdpkit loso: .*fold synthme/s01: loss is nan at step 3", err), err


def test_corrupt_checkpoint_of_a_half_done_fold_is_named_not_trained_over(toy, tmp_path, monkeypatch, capsys):
    """Atomic writes make this a disk fault, not a crash artefact: refuse loudly, never start over silently."""
    out = tmp_path / "run"
    poison_loss(monkeypatch, at_call=5, value=math.nan)          # leaves fold 1 at its step-4 checkpoint
    with pytest.raises(TrainingDiverged):
        run_loso(*toy, out, **RUN)
    monkeypatch.undo()
    checkpoint = out / "folds" / "synthme_s01" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    manifest, cache = toy
    code = cli_main(["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out), *CLI_RUN])
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"fdpkit loso: .*checkpoint\.pt: not a loadable weights-only torch file", err), err
    assert checkpoint.stat().st_size == 5000                     # left for the user to inspect


def test_run_dir_with_another_config_is_refused_unless_forced(toy, toy_reference, tmp_path, capsys):
    manifest, cache = toy
    out = tmp_path / "run"
    base = ["loso", "--manifest", str(manifest), "--cache", str(cache), "--out", str(out), *CLI_RUN]
    assert cli_main(base) == 0
    capsys.readouterr()
    assert cli_main(base + ["--steps", "4"]) == 5
    err = capsys.readouterr().err
    assert "holds a run made with another config" in err and "train.steps (6 -> 4)" in err and "--force" in err
    assert io.read_json(out / "config.json")["train"]["steps"] == 6      # untouched
    same_results(toy_reference, out)
    assert cli_main(base + ["--steps", "4", "--force"]) == 0
    assert io.read_json(out / "config.json")["train"]["steps"] == 4
    assert io.read_json(out / "folds" / "synthme_s01" / "metrics.json")["steps"] == 4


def test_corrupt_cache_file_stops_loso_before_it_writes_anything(toy, tmp_path, capsys):
    manifest, cache = toy
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    bad = copy / "s02_c1.npz"
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    out = tmp_path / "run"
    assert cli_main(["loso", "--manifest", str(manifest), "--cache", str(copy), "--out", str(out), *CLI_RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"fdpkit loso: 1 of 8 clip(s) cannot be read from the cache {copy}: "
                          f"synthme/s02/c1: {bad}: not a readable npz file"), err
    assert err.endswith("Re-run `fdpkit preprocess` with the same manifest and --cache (it re-makes bad files)")
    assert not out.exists()
