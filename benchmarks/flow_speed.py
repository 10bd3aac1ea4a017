"""Clips per second of onset->apex optical flow (fdpkit.data.preprocess.flow) per method and frame size.

    .venv/bin/python benchmarks/flow_speed.py [--sizes 64,128] [--pairs 16] [--repeats 7]
                                              [--threads N] [--json OUT]

A clip is one onset/apex pair of distinct synthetic textured frames (sum of gratings, shifted by a
random sub-pixel amount). Two stages are timed per method: ``flow`` (optical_flow alone) and
``inputs`` (flow_inputs: flow + optical strain + resize to 28x28, what a flow cache entry costs).
Each repeat times all pairs once (wall clock, time.perf_counter); the table shows the median over
repeats of pairs / seconds, and the slowest and fastest repeat. One untimed warm-up pass first.
TV-L1 is measured only when OpenCV's contrib module is installed (fdpkit.data.preprocess.flow.has_tvl1).
``--threads`` sets cv2.setNumThreads (default: OpenCV's own choice, printed). The CPU and its
capability (torch's probe: AVX2, AVX512, ...) are printed and recorded. This measures synthetic
textures; `fdpkit bench --only flow` (benchmarks/fdpkit_bench/flow_case.py) measures SynthME's aligned
faces and `preprocess --flow` end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def texture_pair(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    dx, dy = rng.uniform(-2, 2, size=2)
    waves = [(rng.uniform(6, 24), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(6, 14))
             for _ in range(12)]

    def render(xx, yy):
        image = np.full(xx.shape, 128.0)
        for period, angle, phase, amplitude in waves:
            image += amplitude * np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + phase)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)

    return render(x, y), render(x - dx, y - dy)


def time_stage(fn, pairs, repeats: int) -> tuple[list[float], list[float]]:
    """Per repeat: clips per wall-clock second, and CPU milliseconds (all threads) per clip."""
    for a, b in pairs:  # warm-up (allocations, OpenCV thread pool)
        fn(a, b)
    rates, cpu_ms = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for a, b in pairs:
            fn(a, b)
        rates.append(len(pairs) / (time.perf_counter() - start))
        cpu_ms.append(1000 * (time.process_time() - cpu_start) / len(pairs))
    return rates, cpu_ms


def main(argv=None) -> int:
    import cv2

    from fdpkit.data.preprocess.flow import METHODS, flow_inputs, has_tvl1, optical_flow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    methods = [m for m in METHODS if m != "tvl1" or has_tvl1()]
    import torch   # only for its CPU capability probe

    env = {"opencv": cv2.__version__, "cv2_threads": cv2.getNumThreads(), "cpu_count": os.cpu_count(),
           "cpu": platform.processor() or platform.machine(), "tvl1_available": has_tvl1(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    print(f"OpenCV {env['opencv']}, cv2 threads {env['cv2_threads']}, {env['cpu_count']} CPUs "
          f"({env['cpu']}, capability {env['cpu_capability']})"
          + ("" if env["tvl1_available"] else "; TV-L1 not measured (no cv2.optflow)"))
    records = []
    print(f"{'method':<10} {'size':>5} {'stage':<7} {'clips/s median':>15} {'min':>9} {'max':>9} {'cpu ms/clip':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(size)
        pairs = [texture_pair(size, rng) for _ in range(args.pairs)]
        for method in methods:
            stages = {"flow": lambda a, b, m=method: optical_flow(a, b, m),
                      "inputs": lambda a, b, m=method: flow_inputs(a, b, 28, m)}
            for stage, fn in stages.items():
                rates, cpu_ms = time_stage(fn, pairs, args.repeats)
                record = {"method": method, "size": size, "stage": stage, "pairs": args.pairs,
                          "repeats": args.repeats, "clips_per_s_median": statistics.median(rates),
                          "clips_per_s_min": min(rates), "clips_per_s_max": max(rates),
                          "cpu_ms_per_clip_median": statistics.median(cpu_ms), **env}
                records.append(record)
                print(f"{method:<10} {size:>5} {stage:<7} {record['clips_per_s_median']:>15.1f} "
                      f"{record['clips_per_s_min']:>9.1f} {record['clips_per_s_max']:>9.1f} "
                      f"{record['cpu_ms_per_clip_median']:>12.2f}")
    if args.json:
        from fdpkit.io import write_json

        write_json(args.json, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
