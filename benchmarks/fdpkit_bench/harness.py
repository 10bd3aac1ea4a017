"""Benchmark harness: timing with warm-up and repeats, per-mode peak RSS, one fresh process per case.

Pieces (all usable on their own):

* `time_stats(times)` -> median / min / max / mean of a list of seconds.
* `PeakRSS`: peak resident memory of *this* process over a window. On Linux it resets the kernel's
  high-water mark (``echo 5 > /proc/self/clear_refs``) and reads ``VmHWM`` -- exact, no sampling;
  elsewhere it falls back to a psutil sampling thread (every 2 ms). Before each window, freed heap
  memory is handed back to the OS (glibc ``malloc_trim``) so that one mode's leftovers do not count
  as the next mode's peak.
* `time_interleaved(fns, warmup, repeats)`: several callables measured in the same process,
  interleaved round by round (A B C, then C B A, ...) so that drift (thermal, other processes) hits
  each equally; per callable: the times, their summary and the peak RSS over its own windows.
* `matmul_peak(dtype)`: the machine's measured dense matmul rate (GFLOP/s, best of the repeats).
* `run_case(fn_path, params)`: runs ``fn(params) -> list[dict]`` in a **fresh Python process**
  (``sys.executable``, nothing inherited but the environment), so that peak RSS is per case and no
  memory or allocator state leaks from one case into the next; the child adds its whole-process
  peak RSS (``ru_maxrss``) to each record as ``process_peak_rss_mb``.
* `make_record(...)` / `validate_record(...)`: the record schema (`RECORD_FIELDS`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fdpkit.procs import MALLOC_ENV, TUNED_MALLOC
from fdpkit.io import read_json, write_json

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent  # benchmarks/, holding this package

# --------------------------------------------------------------------------------- records
# Every record has at least these keys (None where a value does not apply).
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "benchmark": (str,),           # matmul | train_step | forward | preprocess | loso
    "preset": (str, type(None)),   # official | paper | tiny (None for matmul / preprocess)
    "batch_size": (int, type(None)),
    "precision": (str,),           # fp32 | bf16
    "mode": (str,),                # reference | batched | batched+channels_last | ... | once | per-frame
    "median_s": (float, type(None)),
    "min_s": (float, type(None)),
    "max_s": (float, type(None)),
    "peak_rss_mb": (float, type(None)),
    "gflops": (float, type(None)),      # achieved GFLOP/s (FLOPs per call / median_s)
    "frac_of_peak": (float, type(None)),  # gflops / measured matmul peak of the same precision
}
# Optional keys that most records carry.
OPTIONAL_FIELDS = (
    "gflop",              # GFLOP per call (FlopCounterMode: conv / matmul / attention only)
    "speedup",            # reference median / this median, both measured in the same process
    "reference_mode",     # which record `speedup` compares against
    "items_per_s",        # clips per second (forward, preprocess, loso)
    "per_item_s",         # seconds per clip (forward)
    "repeats", "warmup", "times_s", "threads", "process_peak_rss_mb", "case", "notes", "error",
    "torch_version", "peak_gflops",
)


def make_record(benchmark: str, mode: str, precision: str = "fp32", preset: str | None = None,
                batch_size: int | None = None, times: list[float] | None = None,
                peak_rss_mb: float | None = None, **extra: Any) -> dict[str, Any]:
    """A record with the required keys; `times` (seconds) fills median/min/max/repeats/times_s."""
    rec: dict[str, Any] = {
        "benchmark": benchmark, "preset": preset,
        "batch_size": None if batch_size is None else int(batch_size),
        "precision": precision, "mode": mode, "median_s": None, "min_s": None, "max_s": None,
        "peak_rss_mb": None if peak_rss_mb is None else round(float(peak_rss_mb), 1),
        "gflops": None, "frac_of_peak": None,
    }
    if times:
        stats = time_stats(times)
        rec.update(median_s=stats["median_s"], min_s=stats["min_s"], max_s=stats["max_s"],
                   repeats=len(times), times_s=[round(t, 6) for t in times])
    rec.update(extra)
    return rec


def validate_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError if a required key is missing or has the wrong type; returns `rec`."""
    for key, types in RECORD_FIELDS.items():
        if key not in rec:
            raise ValueError(f"record lacks {key!r}: {rec}")
        value = rec[key]
        if isinstance(value, bool) or not isinstance(value, types):
            if not (float in types and isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"record field {key!r} has type {type(value).__name__}: {rec}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"record field {key!r} is not finite: {rec}")
    if rec["median_s"] is not None:
        if not (rec["min_s"] <= rec["median_s"] <= rec["max_s"]):
            raise ValueError(f"record has min <= median <= max violated: {rec}")
    json.dumps(rec)  # must be JSON-able
    return rec


# ------------------------------------------------------------------------------ statistics
def time_stats(times: list[float]) -> dict[str, float]:
    """median / min / max / mean (seconds) of a non-empty list of durations."""
    if not times:
        raise ValueError("time_stats needs at least one time")
    values = [float(t) for t in times]
    return {"median_s": float(statistics.median(values)), "min_s": min(values), "max_s": max(values),
            "mean_s": float(statistics.fmean(values)), "n": len(values)}


def speedup(reference_s: float | None, candidate_s: float | None) -> float | None:
    if not reference_s or not candidate_s:
        return None
    return round(reference_s / candidate_s, 3)


def interleave_order(names: list[str], round_index: int) -> list[str]:
    """Round r runs the callables forward when r is even, backward when odd (A B C, C B A, ...)."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


# ---------------------------------------------------------------------------------- memory


def _read_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    kb = _read_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def process_peak_rss_mb() -> float:
    """Peak RSS of this whole process so far (ru_maxrss; KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class PeakRSS:
    """Peak RSS (MiB) of this process between `start()` and `stop()`.

    Exact on Linux >= 4.0 (resets VmHWM through /proc/self/clear_refs), else psutil sampling.
    """

    def __init__(self, sample_interval: float = 0.002):
        self.interval = sample_interval
        self.method = "vmhwm" if self._can_reset_hwm() else "sampling"
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _can_reset_hwm() -> bool:
        if _read_status_kb("VmHWM") is None:
            return False
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def start(self) -> "PeakRSS":
        release_free_memory()
        if self.method == "vmhwm":
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
        else:
            self._peak = current_rss_mb()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self._peak = max(self._peak, proc.memory_info().rss / 2**20)
            time.sleep(self.interval)

    def stop(self) -> float:
        if self.method == "vmhwm":
            return _read_status_kb("VmHWM") / 1024
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, current_rss_mb())


# ---------------------------------------------------------------------------------- timing
def time_interleaved(fns: dict[str, Callable[[], Any]], warmup: int = 1, repeats: int = 3,
                     measure_memory: bool = True, on_warmup: Callable[[str, int], Any] | None = None,
                     log: Callable[[str], None] | None = None,
                     clock: str = "wall") -> dict[str, dict[str, Any]]:
    """Time every callable `repeats` times after `warmup` untimed calls, interleaved.

    Warm-up rounds run every callable once per round (in order); timed rounds alternate the order.
    `on_warmup(name, i)` may return a context manager wrapped around warm-up call i of `name` (used
    to count FLOPs during a warm-up call, which costs no extra step). Returns per name:
    ``{"times": [...], "peak_rss_mb": float | None, **time_stats(times)}``; peak RSS is the largest
    window peak over that callable's warm-up and timed calls. `clock`: "wall" (perf_counter, the
    default and what the benchmarks report) or "cpu" (process_time: CPU seconds of all threads; with
    one thread a contention-robust proxy for development on a busy machine).
    """
    timer = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
    names = list(fns)
    tracker = PeakRSS() if measure_memory else None
    out: dict[str, dict[str, Any]] = {n: {"times": [], "peak_rss_mb": None} for n in names}

    def call(name: str, timed: bool, ctx=None) -> None:
        if tracker is not None:
            tracker.start()
        t0 = timer()
        if ctx is not None:
            with ctx:
                fns[name]()
        else:
            fns[name]()
        elapsed = timer() - t0
        if tracker is not None:
            peak = tracker.stop()
            prev = out[name]["peak_rss_mb"]
            out[name]["peak_rss_mb"] = peak if prev is None else max(prev, peak)
        if timed:
            out[name]["times"].append(elapsed)
        if log is not None:
            log(f"  {name}: {'timed' if timed else 'warm-up'} {elapsed:.3f} s")

    for i in range(warmup):
        for name in names:
            call(name, False, on_warmup(name, i) if on_warmup is not None else None)
    for r in range(repeats):
        for name in interleave_order(names, r):
            call(name, True)
    for name in names:
        if out[name]["times"]:
            out[name].update(time_stats(out[name]["times"]))
    return out


def matmul_peak(dtype: str = "fp32", n: int = 2048, repeats: int = 5,
                min_seconds: float = 0.0) -> dict[str, Any]:
    """Measured dense square-matmul rate of this machine with the current torch thread count.

    GFLOP/s of the fastest of `repeats` calls of torch.mm(n x n, n x n) (2 n^3 FLOPs), after one
    warm-up; `min_seconds` keeps repeating until that much time was spent timing.
    """
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch_dtype)
    b = torch.randn(n, n, generator=gen).to(torch_dtype)
    out = torch.empty(n, n, dtype=torch_dtype)
    torch.mm(a, b, out=out)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats or spent < min_seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    flop = 2.0 * n**3
    return {"dtype": dtype, "n": n, "gflops": flop / min(times) / 1e9,
            "median_gflops": flop / statistics.median(times) / 1e9, "times": times}


# ------------------------------------------------------------------------ fresh process per case
CHILD_ENV = "FDPKIT_BENCH_CHILD"


def case_malloc_env() -> dict[str, str]:
    """The allocator variables of a case's process: glibc's default heap unless FDPKIT_MALLOC=tuned
    (then the tuned heap of fdpkit's fold workers, `fdpkit.procs.TUNED_MALLOC`, which glibc reads at
    start); loso fold workers inside the case inherit the choice through FDPKIT_MALLOC."""
    choice = os.environ.get(MALLOC_ENV, "default")
    return {MALLOC_ENV: choice, **(TUNED_MALLOC if choice != "default" else {})}


def heap_tuned() -> bool:
    """Did this process start with the tuned glibc heap (`case_malloc_env`)?"""
    return all(os.environ.get(key) == value for key, value in TUNED_MALLOC.items())


def release_free_memory() -> None:
    """gc, then glibc malloc_trim(0): hand freed heap pages back to the OS so that one mode's
    leftovers do not count as the next mode's peak (gc.collect alone left 280 MB of freed 1-2 MB
    tensors resident here, malloc_trim returned them). Skipped on the tuned heap, whose point is to
    keep them; a no-op without glibc."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        libc = None
    if not heap_tuned() and libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def run_case(fn_path: str, params: dict[str, Any], timeout: float | None = None,
             threads: int | None = None, stream: bool = True) -> list[dict[str, Any]]:
    """Run ``module:function(params) -> list of records`` in a fresh Python process.

    The child sets torch's thread count (`threads`, default: all cores), runs the function, and adds
    ``process_peak_rss_mb`` (its ru_maxrss) and ``threads`` to every record. Child output goes to
    this process's stderr when `stream`. A crash or timeout yields one record with ``error``.
    """
    with tempfile.TemporaryDirectory(prefix="fdpkit-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "records.json"
        write_json(spec_path, {"fn": fn_path, "params": params, "threads": threads, "out": str(out_path)})
        # the child imports this package from benchmarks/ (outside the installed fdpkit)
        path = os.pathsep.join(filter(None, [str(BENCHMARKS_DIR), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, **{CHILD_ENV: "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path})
        env.update(case_malloc_env())
        cmd = [sys.executable, "-c", "from fdpkit_bench.harness import child_main; child_main()",
               str(spec_path)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        timer = None
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        tail: list[str] = []
        try:
            for line in proc.stdout:  # forward the child's output as it comes; keep the tail
                if stream:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                tail = (tail + [line])[-40:]
            proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        code, err = proc.returncode, "".join(tail)[-2000:]
        if timeout and time.perf_counter() - started >= timeout and code != 0:
            code, err = None, f"timed out after {timeout} s. {err}"
        if code == 0 and out_path.exists():
            return read_json(out_path)
        reason = err if code is None else f"child exited with {code}. {err}".strip()
        return [make_record("error", "error", case=params.get("case", fn_path), error=reason,
                            seconds=round(time.perf_counter() - started, 3))]


def child_main(argv: list[str] | None = None) -> None:
    """Entry point of a case's process (see `run_case`)."""
    argv = sys.argv[1:] if argv is None else argv
    spec = read_json(argv[0])
    threads = spec.get("threads")
    tuned = heap_tuned()
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    module_name, fn_name = spec["fn"].split(":")
    fn = getattr(importlib.import_module(module_name), fn_name)
    records = fn(spec["params"])
    peak = round(process_peak_rss_mb(), 1)
    for rec in records:
        rec.setdefault("process_peak_rss_mb", peak)
        rec.setdefault("threads", torch.get_num_threads())
        rec.setdefault("torch_version", torch.__version__)
        rec.setdefault("allocator", "tuned" if tuned else "default")
    write_json(spec["out"], records)
