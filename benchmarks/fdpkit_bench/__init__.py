"""`fdpkit bench`: speed and memory of the train step, inference, preprocessing and LOSO.

    fdpkit bench [--only NAME[,NAME]] [--preset NAME[,NAME]] [--batch-size B] [--json FILE] [--quick]

Benchmarks (`BENCHMARKS`): train_step, forward, preprocess, loso, flow; the matmul peak (fp32 and bf16)
is always measured first, in the same run, to turn achieved GFLOP/s into a fraction of peak.
Each case runs in a fresh process (per-case peak RSS; nothing leaks between cases). The records
(`fdpkit_bench.harness.RECORD_FIELDS`) go to ``--json`` as a list, and a markdown table with the
command that reproduces it is printed (`markdown_table`).

Python API: `run_benchmarks(only, presets, batch_sizes, quick) -> records`, `markdown_table(records)`,
`fdpkit_bench.harness` (timing, memory, statistics), `fdpkit_bench.cases` (the cases and the plan).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Any, Callable

from fdpkit_bench.cases import BENCHMARKS, DEFAULT_PRESETS, plan
from fdpkit.procs import MALLOC_ENV
from fdpkit_bench.harness import RECORD_FIELDS, run_case, validate_record

__all__ = ["BENCHMARKS", "DEFAULT_PRESETS", "REGISTRY", "RECORD_FIELDS", "add_peaks", "command_line",
           "markdown_table", "run_benchmarks", "run_cli"]

# benchmark name -> (case function, one-line description): the registry the CLI validates against
REGISTRY: dict[str, tuple[str, str]] = {
    "matmul": ("fdpkit_bench.cases:matmul_case", "dense matmul peak GFLOP/s, fp32 and bf16"),
    "train_step": ("fdpkit_bench.cases:train_step_case",
                   "one optimiser step vs the per-frame fp32 reference, fp32 and bf16"),
    "forward": ("fdpkit_bench.cases:forward_case", "eval inference latency (B=1) and throughput"),
    "preprocess": ("fdpkit_bench.cases:preprocess_case", "clips/s, --align once vs per-frame"),
    "loso": ("fdpkit_bench.cases:loso_case", "wall time of a tiny-preset SynthME LOSO run"),
    "flow": ("fdpkit_bench.flow_case:flow_case",
             "clips/s of onset->apex optical flow per method (tvl1, farneback, dis)"),
}

THREADS_ENV = "FDPKIT_BENCH_THREADS"   # torch threads per case (default: all cores)
CLOCK_ENV = "FDPKIT_BENCH_CLOCK"       # wall (default) | cpu (development on a busy machine)
BF16_ENV = "FDPKIT_BENCH_BF16"         # 1: bf16 cases even on a CPU without native bf16


def add_peaks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill gflops (GFLOP per call / median s) and frac_of_peak (vs the matmul record of the same
    precision, measured in the same run) in place; returns `records`."""
    peaks = {r["precision"]: r.get("peak_gflops") for r in records
             if r["benchmark"] == "matmul" and r.get("peak_gflops")}
    for rec in records:
        if rec["benchmark"] == "matmul":
            continue
        gflop, median = rec.get("gflop"), rec.get("median_s")
        if gflop and median:
            rec["gflops"] = round(gflop / median, 2)
            peak = peaks.get(rec["precision"])
            if peak:
                rec["peak_gflops"] = peak
                rec["frac_of_peak"] = round(rec["gflops"] / peak, 4)
    return records


def run_benchmarks(only=None, presets=None, batch_sizes=None, quick: bool = False,
                   on_record: Callable[[list[dict[str, Any]]], None] | None = None,
                   command: str | None = None, timeout: float | None = None,
                   verbose: bool = True) -> list[dict[str, Any]]:
    """Run the plan, one fresh process per job; `on_record(all_records_so_far)` after each job."""
    bf16_skipped = bf16_skip_reason()
    if bf16_skipped and verbose:
        print(f"bench: bf16 cases skipped, bf16 matmul capped: {bf16_skipped}", file=sys.stderr, flush=True)
    jobs = plan(only, presets, batch_sizes, quick, bf16_skipped=bf16_skipped)
    threads = int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None
    clock = os.environ.get(CLOCK_ENV, "wall")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        if verbose:
            print(f"[{i}/{len(jobs)}] {job['label']} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        params = dict(job["params"], clock=clock, verbose=verbose)
        new = run_case(job["fn"], params, timeout=timeout or job["timeout_s"], threads=threads,
                       stream=verbose)
        for rec in new:
            rec["job_s"] = round(time.perf_counter() - t0, 2)
            if command:
                rec["command"] = command
        records.extend(new)
        add_peaks(records)
        if verbose:
            for rec in new:
                print("    " + _one_line(rec), file=sys.stderr, flush=True)
        if on_record is not None:
            on_record(records)
    if verbose:
        print(f"bench: {len(jobs)} jobs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return records


def bf16_skip_reason() -> str | None:
    """Why this run leaves bf16 out (a CPU without native bf16, `fdpkit.train.precision.cpu_bf16_probe`), or
    None: native bf16, or FDPKIT_BENCH_BF16=1."""
    if os.environ.get(BF16_ENV) == "1":
        return None
    from fdpkit.train import precision as train

    probe = train.cpu_bf16_probe()
    if probe["native"]:
        return None
    return (f"no native bf16 on this CPU ({probe['reason']}; 1-thread bf16 matmul "
            f"{probe['bf16_gflops']:.1f} vs fp32 {probe['fp32_gflops']:.1f} GFLOP/s, "
            f"{train.slowdown_text(probe['slowdown'])}); {BF16_ENV}=1 measures them anyway")


def _one_line(rec: dict[str, Any]) -> str:
    if rec.get("error"):
        return f"ERROR {rec.get('case')}: {rec['error'][-300:]}"
    parts = [rec["benchmark"], str(rec.get("preset") or ""), f"B={rec.get('batch_size')}",
             rec["precision"], rec["mode"], f"median {_fmt(rec.get('median_s'))} s"]
    if rec.get("speedup"):
        parts.append(f"x{rec['speedup']:.2f}")
    if rec.get("gflops"):
        parts.append(f"{rec['gflops']:.0f} GFLOP/s")
    if rec.get("peak_rss_mb"):
        parts.append(f"{rec['peak_rss_mb']:.0f} MB")
    return "  ".join(parts)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.{max(digits - 1, 1)}f}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:.{digits}g}"
    return str(value)


TABLE_COLUMNS = ("benchmark", "preset", "B", "precision", "mode", "median s", "min-max s",
                 "clips/s", "GFLOP/step", "GFLOP/s", "% of peak", "speedup", "peak RSS MB")


def markdown_table(records: list[dict[str, Any]], command: str | None = None) -> str:
    """A markdown table of the records (one row each), preceded by the command that made them."""
    lines = []
    command = command or next((r.get("command") for r in records if r.get("command")), None)
    if command:
        lines += [f"`{command}`", ""]
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in TABLE_COLUMNS) + "|")
    for r in records:
        if r.get("error"):
            lines.append(f"| {r['benchmark']} | {r.get('case', '')} | | | error | "
                         + " | ".join("" for _ in TABLE_COLUMNS[5:]) + " |")
            continue
        minmax = (f"{_fmt(r['min_s'])}-{_fmt(r['max_s'])}" if r.get("min_s") is not None else "-")
        frac = r.get("frac_of_peak")
        mode = r["mode"] + (" (alone)" if r.get("isolated") else "")
        cells = [r["benchmark"], r.get("preset") or "", _fmt(r.get("batch_size")), r["precision"],
                 mode, _fmt(r.get("median_s")), minmax,
                 _fmt(r.get("items_per_s")) if r["benchmark"] != "matmul" else "",
                 _fmt(r.get("gflop")), _fmt(r.get("gflops")),
                 "" if frac is None else f"{100 * frac:.0f}%",
                 "" if r.get("speedup") is None else f"{r['speedup']:.2f}x",
                 _fmt(r.get("peak_rss_mb"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line(args) -> str:
    """The `fdpkit bench ...` command that reproduces a run made with these arguments."""
    parts = ["fdpkit", "bench"]
    if getattr(args, "only", None):
        parts += ["--only", args.only]
    if getattr(args, "preset", None):
        parts += ["--preset", args.preset]
    if getattr(args, "batch_size", None):
        parts += ["--batch-size", str(args.batch_size)]
    if getattr(args, "json", None):
        parts += ["--json", args.json]
    if getattr(args, "quick", False):
        parts.append("--quick")
    env = [f"{k}={os.environ[k]}" for k in (THREADS_ENV, CLOCK_ENV, BF16_ENV, MALLOC_ENV)
           if os.environ.get(k)]
    return " ".join(env + [shlex.quote(p) for p in parts])


def _split(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def run_cli(args) -> int:
    """`fdpkit bench`: 0 when every case ran, 1 when a case failed, 2 on bad arguments."""
    from fdpkit.io import write_json

    only = _split(getattr(args, "only", None))
    presets = _split(getattr(args, "preset", None))
    unknown = sorted(set(only or ()) - set(REGISTRY))
    if unknown:
        print(f"fdpkit bench: unknown benchmark(s) {', '.join(unknown)}; choose from "
              f"{', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    from fdpkit.model import PRESETS

    bad = sorted(set(presets or ()) - set(PRESETS))
    if bad:
        print(f"fdpkit bench: unknown preset(s) {', '.join(bad)}; choose from {', '.join(PRESETS)}",
              file=sys.stderr)
        return 2
    batch = getattr(args, "batch_size", None)
    if batch is not None and batch < 1:
        print("fdpkit bench: --batch-size must be >= 1", file=sys.stderr)
        return 2
    command = command_line(args)
    json_path = getattr(args, "json", None)

    def save(records):
        if json_path:
            write_json(json_path, [validate_record(r) for r in records])

    records = run_benchmarks(only, presets, [batch] if batch else None,
                             quick=bool(getattr(args, "quick", False)), on_record=save,
                             command=command)
    for rec in records:
        validate_record(rec)
    print(markdown_table(records, command))
    if json_path:
        print(f"\nrecords: {json_path}", file=sys.stderr)
    return 1 if any(r.get("error") for r in records) else 0

