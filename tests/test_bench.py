"""fdpkit_bench: statistics, record schema, harness plumbing, and a --quick CLI run of a tiny case.

No timing assertions: the machine may be busy. The CLI run uses one torch thread per case
(FDPKIT_BENCH_THREADS=1) and batch 2 so that it stays fast on a shared 2-core machine.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdpkit_bench import add_peaks, command_line, markdown_table
from fdpkit_bench.cases import plan
from fdpkit_bench.harness import (
    RECORD_FIELDS, PeakRSS, interleave_order, make_record, run_case, time_stats, time_interleaved,
    validate_record,
)
import fdpkit_bench
import fdpkit.train.precision
from fdpkit.cli import main


def test_summarize_odd_and_even():
    assert time_stats([3.0, 1.0, 2.0]) == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0,
                                          "mean_s": 2.0, "n": 3}
    s = time_stats([4.0, 1.0, 2.0, 3.0])
    assert s["median_s"] == 2.5 and s["min_s"] == 1.0 and s["max_s"] == 4.0
    with pytest.raises(ValueError):
        time_stats([])


def test_interleave_order_alternates():
    names = ["ref", "a", "b"]
    assert interleave_order(names, 0) == ["ref", "a", "b"]
    assert interleave_order(names, 1) == ["b", "a", "ref"]
    assert interleave_order(names, 2) == names


def test_make_record_has_schema_and_validates():
    rec = make_record("train_step", "batched", "bf16", "tiny", 8, times=[0.3, 0.1, 0.2],
                      peak_rss_mb=123.456, gflop=1.5)
    for key in RECORD_FIELDS:
        assert key in rec
    assert rec["median_s"] == 0.2 and rec["min_s"] == 0.1 and rec["max_s"] == 0.3
    assert rec["repeats"] == 3 and rec["peak_rss_mb"] == 123.5
    assert validate_record(rec) is rec
    json.dumps(rec)


@pytest.mark.parametrize("change", [
    {"median_s": "fast"}, {"batch_size": 8.5}, {"benchmark": None}, {"gflops": float("nan")},
    {"median_s": 5.0},  # above max_s
])
def test_validate_record_rejects_bad_values(change):
    rec = make_record("forward", "batched", times=[1.0, 2.0])
    rec.update(change)
    with pytest.raises(ValueError):
        validate_record(rec)


def test_validate_record_rejects_missing_key():
    rec = make_record("forward", "batched")
    del rec["peak_rss_mb"]
    with pytest.raises(ValueError):
        validate_record(rec)


def test_time_interleaved_counts_calls_and_order():
    calls = []
    fns = {"ref": lambda: calls.append("ref"), "cand": lambda: calls.append("cand")}
    res = time_interleaved(fns, warmup=2, repeats=3, measure_memory=False)
    assert calls[:4] == ["ref", "cand", "ref", "cand"]  # warm-up rounds
    assert calls[4:] == ["ref", "cand", "cand", "ref", "ref", "cand"]  # alternating timed rounds
    for name in fns:
        assert len(res[name]["times"]) == 3
        assert res[name]["min_s"] <= res[name]["median_s"] <= res[name]["max_s"]


def test_time_interleaved_wraps_first_warmup_in_context():
    entered = []

    class Ctx:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    time_interleaved({"a": lambda: None}, warmup=2, repeats=1, measure_memory=False,
                     on_warmup=lambda name, i: Ctx() if i == 0 else None)
    assert entered == [True]


def test_peak_rss_sees_an_allocation_inside_the_window():
    tracker = PeakRSS()
    tracker.start()
    baseline = tracker.stop()
    tracker.start()
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    block[::512] += 1
    del block
    peak = tracker.stop()
    assert peak > baseline + 150, (tracker.method, baseline, peak)


def test_add_peaks_and_markdown_table():
    records = [
        make_record("matmul", "mm64", "fp32", times=[1.0], peak_gflops=100.0),
        make_record("matmul", "mm64", "bf16", times=[1.0], peak_gflops=400.0),
        make_record("train_step", "reference", "fp32", "tiny", 8, times=[2.0], gflop=50.0,
                    peak_rss_mb=500, speedup=1.0),
        make_record("train_step", "batched", "bf16", "tiny", 8, times=[0.5], gflop=50.0,
                    peak_rss_mb=400, speedup=4.0, items_per_s=16.0),
    ]
    add_peaks(records)
    assert records[2]["gflops"] == 25.0 and records[2]["frac_of_peak"] == 0.25
    assert records[3]["gflops"] == 100.0 and records[3]["frac_of_peak"] == 0.25
    table = markdown_table(records, command="fdpkit bench --quick")
    lines = table.splitlines()
    assert lines[0] == "`fdpkit bench --quick`"
    assert lines[2].startswith("| benchmark |") and lines[3].startswith("|---")
    assert len(lines) == 4 + len(records)
    assert "| train_step | tiny | 8 | bf16 | batched |" in table and "4.00x" in table


def test_plan_quick_and_full():
    quick = plan(quick=True)
    assert quick[0]["fn"].endswith(":matmul_case")
    train = [j for j in quick if j["fn"].endswith(":train_step_case")]
    assert [(j["params"]["preset"], j["params"]["batch_size"]) for j in train] == [("tiny", 8)]
    assert all(j["params"]["repeats"] == 2 and j["params"]["warmup"] == 1 for j in train)
    full = plan()
    cases = {j["params"]["case"] for j in full}
    for preset in ("official", "paper", "tiny"):
        for b in (8, 36):
            assert f"train_step/{preset}/B{b}" in cases
        for b in (1, 32):
            assert f"forward/{preset}/B{b}" in cases
    assert {"preprocess", "loso", "matmul", "train_step/paper/B36/isolated"} <= cases
    modes = {j["params"]["case"]: j["params"]["modes"] for j in full if "modes" in j["params"]}
    assert modes["train_step/official/B8"][0] == "reference"
    assert "batched+plainconv" in modes["train_step/official/B8"]
    assert "bf16+checkpoint" in modes["train_step/paper/B36"]
    assert [j["params"]["batch_size"] for j in plan(["train_step"], ["paper"], [4])[1:]] == [4]
    with pytest.raises(ValueError):
        plan(["nope"])


def test_run_case_reports_a_failing_child():
    records = run_case("fdpkit_bench.harness:no_such_function", {"case": "broken"}, stream=False)
    assert len(records) == 1 and records[0]["error"] and records[0]["case"] == "broken"
    validate_record(records[0])


def test_cli_rejects_unknown_benchmark(capsys):
    assert main(["bench", "--only", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def probe(native: bool):
    return lambda: {"capability": "AVX2", "native": native, "reason": "test probe",
                    "fp32_gflops": 30.8, "bf16_gflops": 0.7, "slowdown": 44.0}


def test_cli_quick_tiny_train_step_writes_valid_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FDPKIT_BENCH_THREADS", "1")
    monkeypatch.setattr(fdpkit.train.precision, "cpu_bf16_probe", probe(native=True))  # any CPU: plan as native
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--only", "train_step", "--batch-size", "2", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    records = json.loads(out.read_text())
    assert isinstance(records, list)
    for rec in records:
        validate_record(rec)
        assert rec["threads"] == 1 and rec["process_peak_rss_mb"] > 0
    peaks = {r["precision"] for r in records if r["benchmark"] == "matmul"}
    assert peaks == {"fp32", "bf16"}
    steps = [r for r in records if r["benchmark"] == "train_step"]
    assert {(r["mode"], r["precision"]) for r in steps} == {
        ("reference", "fp32"), ("batched", "fp32"), ("batched", "bf16")}
    for rec in steps:
        assert rec["preset"] == "tiny" and rec["batch_size"] == 2 and rec["repeats"] == 2
        assert rec["gflop"] > 0 and rec["gflops"] > 0 and 0 < rec["frac_of_peak"]
        assert rec["peak_rss_mb"] > 0 and rec["speedup"] > 0
    # the markdown table and the reproducing command are printed
    assert "| train_step | tiny | 2 | fp32 | reference |" in captured.out
    assert "fdpkit bench --only train_step --batch-size 2" in captured.out
    assert "FDPKIT_BENCH_THREADS=1" in captured.out


def test_command_line_round_trip():
    class Args:
        only, preset, batch_size, json, quick = "forward", "tiny", 4, "out.json", True

    assert command_line(Args()).endswith("fdpkit bench --only forward --preset tiny --batch-size 4 "
                                         "--json out.json --quick")


def test_plan_without_native_bf16_leaves_bf16_out_and_caps_the_matmul():
    full, capped = plan(), plan(bf16_skipped="no native bf16")
    assert all(j["timeout_s"] > 0 for j in full + capped)  # every case has a time limit
    assert {j["timeout_s"] for j in plan(quick=True)} == {300}
    assert capped[0]["params"]["bf16_capped"] == "no native bf16"
    modes = [m for j in capped for m in j["params"].get("modes", [])]
    assert modes and not [m for m in modes if "bf16" in m]
    assert "train_step/paper/B36/isolated" not in {j["params"]["case"] for j in capped}
    assert {j["params"]["case"] for j in capped} == {j["params"]["case"] for j in full} - {
        "train_step/paper/B36/isolated"}


def test_run_benchmarks_skips_bf16_with_a_printed_reason_and_passes_time_limits(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(fdpkit.train.precision, "cpu_bf16_probe", probe(native=False))
    monkeypatch.delenv(fdpkit_bench.BF16_ENV, raising=False)
    monkeypatch.setattr(fdpkit_bench, "run_case", lambda fn, params, timeout=None, **kw: calls.append(
        (fn, params, timeout)) or [])
    fdpkit_bench.run_benchmarks(["train_step"], ["tiny"], [2], quick=True)
    err = capsys.readouterr().err
    assert "bf16 cases skipped" in err and "44.0x slower" in err and "FDPKIT_BENCH_BF16=1" in err
    assert calls[0][1]["bf16_capped"] and all(t == 300 for _, _, t in calls)
    assert calls[1][1]["modes"] == ["reference", "batched"]
    calls.clear()
    monkeypatch.setenv(fdpkit_bench.BF16_ENV, "1")  # on purpose: measured anyway
    fdpkit_bench.run_benchmarks(["train_step"], ["tiny"], [2], quick=True, verbose=False)
    assert "bf16" in calls[1][1]["modes"] and "bf16_capped" not in calls[0][1]


def test_capped_bf16_matmul_is_small_and_says_why():
    from fdpkit_bench.cases import matmul_case

    records = matmul_case({"n": 4096, "repeats": 5, "dtypes": ["bf16"], "bf16_capped": "no native bf16"})
    assert records[0]["mode"] == "mm512" and records[0]["repeats"] == 1
    assert "no native bf16" in records[0]["notes"]
