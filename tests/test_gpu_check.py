"""benchmarks/gpu_check.py, the prepared GPU check, run on the CPU with its tiny `--smoke` setting.

A stand-in for the released fdp.py (same imports: timm's DropPath / trunc_normal_ /
register_model and `cgi`, same call: (B, 1, T, 1, 64, 64) -> (logits, sigmoid dynamic image))
exercises the released-code case without the real file, which is never committed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"

FAKE_RELEASED = '''
from cgi import print_arguments
import torch
import torch.nn as nn
from timm.models.layers import DropPath, trunc_normal_
from timm.models.registry import register_model


class FDP(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = DropPath(0.1)
        self.fc = nn.Linear(4, 5)
        self.dec = nn.Conv2d(4, 1, 3, padding=1)
        trunc_normal_(self.fc.weight, std=.02)

    def __call__(self, x):
        x = x[:, 0]
        b, t = x.shape[:2]
        f = self.drop(self.conv(x.reshape(b * t, *x.shape[2:]))).reshape(b, t, 4, 64, 64).mean(1)
        return self.fc(f.mean((2, 3))), torch.sigmoid(self.dec(f))[:, 0]
'''


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_every_case_and_writes_json(tmp_path):
    released = tmp_path / "fdp.py"
    released.write_text(FAKE_RELEASED)
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--released",
                           str(released)], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    records = {r["label"]: r for r in report["records"]}
    for r in records.values():
        assert not r.get("error") and not r.get("skipped"), r
    steps = [r for r in records.values() if r["kind"] == "step"]
    assert {bool(r["compile"]) for r in steps} == {False, True}
    for r in steps:
        assert r["median_s"] > 0 and r["gflop_per_step"] > 0 and r["peak_rss_mb"] > 0
        assert r["tflops"] == pytest.approx(r["gflop_per_step"] / 1e3 / r["median_s"], rel=0.01)
        assert r["env"]["cpu_capability"]
    rel = next(r for r in records.values() if r["kind"] == "released")
    assert rel["median_s"] > 0 and rel["gflop_per_step"] > 0
    assert report["released_ratios"]  # released time / fdpkit time, per fdpkit case
    fold = next(r for r in records.values() if r["kind"] == "fold")
    assert fold["steps"] == fold["full_steps"] == 3 and not fold["extrapolated"]
    # both are rounded to 0.01 s from the same unrounded fold time: 3 x 0.005 + 0.005 apart at most
    assert fold["n_train"] + fold["n_test"] == 6 and fold["loso_sequential_s"] == pytest.approx(
        fold["fold_s"] * 3, abs=0.021)
    shared = next(r for r in records.values() if r["kind"] == "shared")
    assert shared["jobs"] == 2 and len(shared["train_s_each"]) == 2 and shared["aggregate_steps_per_s"] > 0
    assert "ms/step" in done.stdout and "speed-up over the released step" in done.stdout


def test_cases_are_skipped_with_a_reason_when_the_budget_is_spent(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--budget-s", "3"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads(out.read_text())["records"]
    assert records and all("budget" in r["skipped"] for r in records)


def test_a_case_over_its_time_limit_is_killed_and_recorded(tmp_path):
    check = load_script()
    spec = dict(check.plan(check.settings(smoke=True))[0])
    t0 = time.perf_counter()
    record = check.run_case(spec, limit=0.5)  # cannot even import torch in time
    assert "time limit" in record["skipped"] and time.perf_counter() - t0 < 30


def test_released_case_without_a_file_is_skipped_not_failed():
    check = load_script()
    assert "no released fdp.py" in check.case_released({"released": None}, deadline=0)["skipped"]
    assert "not found" in check.case_released({"released": "/nonexistent/fdp.py"}, deadline=0)["skipped"]


def test_missing_einops_without_a_wheel_stops_with_a_clear_message(tmp_path, monkeypatch):
    check = load_script()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "einops" else real(name, *a))
    with pytest.raises(SystemExit, match="einops is missing and .* holds no einops wheel"):
        check.ensure_dependencies(tmp_path / "wheels")


def test_fold_cases_without_pandas_are_skipped_with_the_reason(monkeypatch):
    check = load_script()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pandas" else real(name, *a))
    assert "needs pandas" in check.case_fold({"steps": 3}, deadline=0)["skipped"]
    assert "needs pandas" in check.case_shared({"jobs": 2}, deadline=0)["skipped"]
