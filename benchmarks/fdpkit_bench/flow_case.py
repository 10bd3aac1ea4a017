"""`flow_case`: clips/s of one optical-flow method on SynthME's aligned onset/apex faces (issue #15).

Two stages, per method (one job, so one fresh process, per method: `fdpkit_bench.cases.plan`):

* ``inputs``: `fdpkit.data.preprocess.flow.flow_inputs` (flow, optical strain, resize to 28x28) on
  the aligned 64 px (onset, annotated apex) faces of every clip, as `fdpkit preprocess --flow`
  feeds it (align=once: the clip's transform);
* ``preprocess``: `preprocess(..., flow=method)` into a fresh copy of a frames-only cache, so only
  the flow files are made (read and align two frames, flow, strain, write): what ``--flow`` adds.

The SynthME corpus and the frames cache are made untimed. OpenCV uses its default thread count
(recorded as ``cv2_threads``).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from fdpkit.data.frames import index_frames
from fdpkit.data.preprocess.cache import preprocess
from fdpkit.data.preprocess.faces import warp_face
from fdpkit.data.preprocess.flow import flow_inputs
from fdpkit.data.preprocess.lookup import load_clip, lookup
from fdpkit.data.preprocess.worker import read_frame
from fdpkit_bench.cases import _log, _synthme
from fdpkit_bench.harness import make_record, time_interleaved


def _aligned_pairs(manifest, cache: Path) -> list[tuple]:
    """(aligned onset, aligned annotated apex) uint8 faces of every cached clip, as
    `fdpkit.data.preprocess.flow_clip` makes them (align=once: the clip's transform)."""

    pairs = []
    for (_, row), path in zip(manifest.rows.iterrows(), lookup(cache, manifest.rows)["path"]):
        if not path:
            continue
        clip = load_clip(path)
        files = index_frames(Path(row["root"]) / row["frame_dir"])
        size = clip["frames"].shape[-1]
        apex = warp_face(read_frame(files[int(row["apex"])]), clip["transforms"][0], size)
        pairs.append((clip["frames"][0], apex))
    return pairs


def flow_case(params: dict[str, Any]) -> list[dict[str, Any]]:
    """clips/s of one flow method (params["method"]) on a small SynthME's aligned faces (64 px, as
    `fdpkit preprocess` makes them), to STSTNet's 28x28 inputs: ``inputs`` times `flow_inputs` on
    the aligned (onset, apex) pairs; ``preprocess`` times `preprocess(..., flow=method)` into a copy
    of a frames-only cache (fresh copy per call, untimed copy), so only the flow files are made."""

    method = params["method"]
    subjects, clips = int(params.get("subjects", 2)), int(params.get("clips_per_subject", 3))
    warmup, repeats = int(params.get("warmup", 1)), int(params.get("repeats", 3))
    tmp = Path(tempfile.mkdtemp(prefix="fdpkit-bench-flow-"))
    try:
        manifest = _synthme(tmp / "synthme", subjects, clips)
        preprocess(manifest, tmp / "frames", frames=8, size=64, align="once", lenient=True, progress=False)
        pairs = _aligned_pairs(manifest, tmp / "frames")
        counter = {"i": 0}
        statuses: set = set()

        def inputs():
            for onset, apex in pairs:
                flow_inputs(onset, apex, 28, method)

        def cached():
            counter["i"] += 1
            cache = tmp / f"cache{counter['i']}"
            shutil.copytree(tmp / "frames", cache)
            start = time.perf_counter()
            report = preprocess(manifest, cache, frames=8, size=64, align="once", lenient=True,
                                progress=False, flow=method)
            seconds = time.perf_counter() - start
            statuses.update(report["status"])
            shutil.rmtree(cache, ignore_errors=True)
            return seconds

        results = time_interleaved({"inputs": inputs}, warmup, repeats, log=_log(params))
        records = []
        res = results["inputs"]
        records.append(_flow_record(method, "inputs", res["times"], res["peak_rss_mb"], len(pairs), warmup,
                                    params, cv2.getNumThreads(), subjects, clips))
        cached()                                             # warm-up (imports, dlib not needed)
        times = [cached() for _ in range(repeats)]
        records.append(_flow_record(method, "preprocess", times, None, len(pairs), 1, params,
                                    cv2.getNumThreads(), subjects, clips, statuses=sorted(statuses)))
        return records
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _flow_record(method, stage, times, peak_rss_mb, n, warmup, params, threads, subjects, clips, **extra):
    median = statistics.median(times)
    return make_record("flow", f"{method} {stage}", "fp32", None, None, times=times, peak_rss_mb=peak_rss_mb,
                       warmup=warmup, case=params.get("case"), items_per_s=n / median, per_item_s=median / n,
                       n_items=n, cv2_threads=threads, **extra,
                       notes=f"SynthME {subjects} subjects x {clips} clips, aligned 64 px faces -> 28x28 "
                             f"(u, v, strain); {stage}: " + ("flow_inputs only" if stage == "inputs" else
                                                            "preprocess --flow over a frames cache"))
