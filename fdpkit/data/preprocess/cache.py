"""`fdpkit preprocess`: manifest rows -> aligned grey clips and dynamic images, one npz per clip,
and with ``--flow METHOD`` the onset -> apex optical flow of each clip beside it.

Cache folder layout (docs/architecture.md, "Cache"):

- ``<hash>.npz``, one per clip that was made (read with ``np.load(path, allow_pickle=False)``):
  ``frames`` uint8 (T, H, W), ``dynamic_image`` uint8 (H, W) (``dynamic_image_uint8(frames)``),
  ``frame_numbers`` int64 (T,), plus ``transforms`` float64 (T, 2, 3) (the affine matrix that mapped
  each frame's pixels to the aligned face) and ``notes`` (a 0-d unicode array). The name
  (`fdpkit.data.preprocess.keys.clip_file_name`) hashes the row's clip_uid, root, frame_dir, frame
  range, onset/apex/offset, the preprocessing parameters, ``CACHE_FORMAT_VERSION`` and the name,
  size and modification time (ns) of every frame file the clip is made from: changing any of them
  (a frame edited or replaced on disk included) makes a new file, never a stale hit. Copying the
  corpus without keeping modification times (``cp`` without ``-p``) therefore re-makes every clip once.
- ``<hash>.flow.npz`` with ``--flow``, one per clip (`fdpkit.data.preprocess.flow_clip`: the arrays,
  which frames, which alignment): its name hashes the clip file's name, the method, the method's
  parameters and the flow size (`keys.flow_file_name`), so another method makes new flow files only.
- ``index.csv``, ``preprocess_report.csv``, ``preprocess.json``: `fdpkit.data.preprocess.report`.

Files of other parameter sets stay on disk (different names) and are reused when those parameters
come back; a cache made without ``--flow`` serves frame models, and gains flow files the first time
``--flow`` is given (its clip files are reused untouched).

Status of a row:

- ``ok``: the npz exists and loads (made now or reused), and so does its flow file with ``--flow``.
  Notes record caveats, e.g. "repeated frames: 5 distinct frame(s) for 8 samples", "fallback
  transform on frame 46" or "flow apex 23 is estimated (not annotated in the corpus)".
- ``skipped``: the data is fine but the sampling rule leaves the clip out (``official`` sampling of
  a clip with fewer than T frames, as the released code drops it).
- ``failed``: the clip could not be made: frame folder missing, no frames between onset and offset,
  an unreadable/corrupt frame (named), mixed frame sizes under a single transform, no face in the
  onset frame (``align="once"``) or in the first sampled frame (``align="per-frame"``), with
  ``--flow`` a flow that cannot be taken ("optical flow: ..." e.g. onset and apex the same frame),
  or an unexpected error (its message).

ok + skipped + failed always equals the number of manifest rows. Every clip is attempted whatever
happens to the others; re-running only does the clips (or flows) without a valid file.

A cache file that is truncated or corrupt is never trusted: ``preprocess`` re-makes it, and
`fdpkit.data.preprocess.lookup.check_cache_files` (called by ``fdpkit loso`` before it writes
anything) refuses a run over it with one ``CacheFileError`` naming the clip and the file.

Strictness: with ``lenient=False`` (the default) ``preprocess`` raises ``PreprocessIncomplete``
(carrying the report, after writing every file) when any row is skipped or failed, and the CLI exits
with ``EXIT_INCOMPLETE`` (4). With ``lenient=True`` the same rows are recorded and the call returns
normally / the CLI exits 0. A bad manifest or bad parameters: ``ManifestError`` / ``ValueError``,
CLI exit 2. Filter rows for training with ``fdpkit.data.dataset.ok_rows``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fdpkit.data.manifest import Manifest, ManifestError, frame_folder, read_manifest, validate
from fdpkit.data.preprocess.keys import FlowParams, PreprocessParams, clip_file_name, flow_file_name
from fdpkit.data.preprocess.lookup import REPORT_FILE, cache_folder, load_clip
from fdpkit.data.preprocess.report import build_report, summary_line, write_outputs
from fdpkit.data.preprocess.worker import frame_inputs, init_worker, process_clip
from fdpkit.io import check_writable_folder

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 4


class PreprocessIncomplete(RuntimeError):
    """Some rows were skipped or failed (strict mode); ``.report`` holds the full report."""

    def __init__(self, message: str, report: pd.DataFrame):
        super().__init__(message)
        self.report = report


def _valid_cached(path: Path, params: PreprocessParams) -> str | None:
    """The stored notes when ``path`` holds a loadable clip of the right shapes, else None."""
    if not path.is_file():
        return None
    try:
        data = load_clip(path)
        frames, image, numbers = data["frames"], data["dynamic_image"], data["frame_numbers"]
    except Exception:
        return None
    t, s = params.frames, params.size
    if (frames.dtype != np.uint8 or frames.shape != (t, s, s) or image.dtype != np.uint8
            or image.shape != (s, s) or numbers.shape != (t,)):
        return None
    return str(data["notes"]) if "notes" in data else ""


def _valid_flow(path: Path, flow: FlowParams) -> str | None:
    """The stored notes when ``path`` holds a finite (3, S, S) float32 flow, else None."""
    if not path.is_file():
        return None
    try:
        data = load_clip(path)
        inputs = data["flow"]
        notes = str(data["notes"])
    except Exception:
        return None
    size = int(flow.size)
    if inputs.dtype != np.float32 or inputs.shape != (3, size, size) or not np.isfinite(inputs).all():
        return None
    return notes


def _as_rows(manifest) -> pd.DataFrame:
    if isinstance(manifest, Manifest):
        return validate(manifest.rows)
    if isinstance(manifest, pd.DataFrame):
        return validate(manifest)
    return read_manifest(manifest).rows


def _joined(*notes: str | None) -> str:
    return "; ".join(n for n in notes if n)


def preprocess(manifest: Manifest | str | os.PathLike | pd.DataFrame, cache_dir, frames: int = 8,
               size: int = 64, align: str = "once", sampling: str = "onset-offset", workers: int = 1,
               lenient: bool = False, progress: bool = True, flow: str | None = None,
               flow_size: int = FlowParams.size) -> pd.DataFrame:
    """Align, sample and cache every manifest row; returns the report (also written to the cache).

    ``manifest``: a Manifest, a manifest CSV path, or manifest rows. ``align``: ``once`` (landmarks
    of the onset frame, one similarity transform for the whole clip) or ``per-frame`` (the released
    code). ``sampling``: ``onset-offset`` or ``official`` (see ``fdpkit.data.preprocess.sampling``).
    ``flow``: None, or ``tvl1`` / ``farneback`` / ``dis`` to also cache each clip's onset -> apex
    flow and optical strain at ``flow_size`` (`fdpkit.data.preprocess.flow_clip`).
    ``workers`` > 1 runs clips in spawned processes (each loads the dlib models, about 3 s; a
    script calling this needs the usual ``if __name__ == "__main__":`` guard); the files are
    byte-identical for any value.
    Existing valid files are reused. Strict unless ``lenient``: raises PreprocessIncomplete
    after writing everything when a row is skipped or failed (module docstring).
    ``report.attrs``: counts, ``computed`` (clips made in this call) and ``seconds``.
    """
    params = PreprocessParams(int(frames), int(size), align, sampling).check()
    flow_params = None if flow is None else FlowParams(flow, flow_size).check()
    rows = _as_rows(manifest)
    cache_dir = check_writable_folder(cache_folder(cache_dir))   # before any work
    start = time.perf_counter()

    results: dict[str, dict] = {}
    tasks, files, flow_files = [], {}, {}
    for _, row in rows.iterrows():
        uid = row["clip_uid"]
        try:
            folder = frame_folder(row)   # refuses a frame_dir resolving out of root (e.g. a symlink)
        except ManifestError as error:
            results[uid] = {"clip_uid": uid, "status": "failed", "reason": str(error), "notes": "",
                            "cached": False}
            files[uid] = clip_file_name(row, params)
            continue
        task = _plan_row(row, folder, cache_dir, params, flow_params, files, flow_files)
        if "status" in task:
            results[uid] = task
        else:
            tasks.append(task)

    with tqdm(total=len(rows), desc="preprocess", unit="clip", disable=not progress) as bar:
        bar.update(len(results))
        for result in _run_tasks(tasks, max(1, int(workers))):
            results[result["clip_uid"]] = {**result, "cached": False}
            bar.update(1)

    report = build_report(rows, results, files, flow_files)
    seconds = time.perf_counter() - start
    counts = write_outputs(cache_dir, rows, report, params, flow_params, len(tasks), workers, seconds)
    report.attrs.update({**counts, "total": int(len(rows)), "computed": len(tasks), "seconds": seconds,
                         "cache_dir": str(cache_dir)})
    if not lenient and counts["ok"] < len(rows):
        raise PreprocessIncomplete(
            f"{summary_line(report)}; see {cache_dir / REPORT_FILE} (lenient=True / --lenient accepts this)",
            report,
        )
    return report


def _plan_row(row, folder: Path, cache_dir: Path, params: PreprocessParams, flow: FlowParams | None,
              files: dict, flow_files: dict) -> dict:
    """A finished result (status set: everything reused, or a flow that cannot be taken from a
    reused clip) or the task that makes what is missing; fills ``files`` / ``flow_files``."""
    uid = row["clip_uid"]
    flow_at = None if flow is None else (int(row["apex"]), int(row["offset"]), bool(row["apex_estimated"]))
    inputs, chosen = frame_inputs(folder, int(row["onset"]), int(row["offset"]), params.as_dict(), flow_at)
    files[uid] = clip_file_name(row, params, inputs)
    notes = _valid_cached(cache_dir / files[uid], params) if inputs is not None else None
    task = {"clip_uid": uid, "folder": str(folder), "root": str(row["root"]), "onset": int(row["onset"]),
            "offset": int(row["offset"]), "path": str(cache_dir / files[uid]), "params": params.as_dict(),
            "chosen": chosen}
    if flow is None:
        if notes is not None:
            return {"clip_uid": uid, "status": "ok", "reason": "", "notes": notes, "cached": True}
        return task
    selection = chosen["flow"] if chosen else None
    task.update(apex=int(row["apex"]), apex_estimated=bool(row["apex_estimated"]))
    if selection is not None and "error" in selection and notes is not None:
        return {"clip_uid": uid, "status": "failed", "reason": f"optical flow: {selection['error']}",
                "notes": notes, "cached": True}
    flow_notes = None
    if selection is not None and "key" in selection:
        flow_files[uid] = flow_file_name(files[uid], flow, selection["key"])
        flow_notes = _valid_flow(cache_dir / flow_files[uid], flow) if notes is not None else None
    if notes is not None and flow_notes is not None:
        return {"clip_uid": uid, "status": "ok", "reason": "", "notes": _joined(notes, flow_notes), "cached": True}
    if uid not in flow_files:   # nothing sampled: the worker fails the clip with the reason
        flow_files[uid] = flow_file_name(files[uid], flow, None)
    task["flow"] = {"method": flow.method, "size": int(flow.size), "path": str(cache_dir / flow_files[uid])}
    if notes is not None:   # the clip file is valid: make the flow only
        task.update(frames_cached=True, cached_notes=notes)
    return task


def _run_tasks(tasks: list[dict], workers: int):
    """Yield the result of every task (in completion order); never raises for a task's failure."""
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield process_clip(task)
        return
    executor = ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_worker, initargs=(os.getpid(),))
    try:
        futures = {executor.submit(process_clip, task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:   # the worker process died (e.g. killed, out of memory)
                yield {"clip_uid": futures[future]["clip_uid"], "status": "failed",
                       "reason": f"worker process error: {type(error).__name__}: {error}", "notes": ""}
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def run_cli(args) -> int:
    """`fdpkit preprocess`: exit 0 when every row is ok (or --lenient), 4 when some row was skipped
    or failed, 2 on a bad manifest or bad arguments. Prints one summary line (and the first
    problems) whatever happens."""
    try:
        report = preprocess(args.manifest, args.cache, frames=args.frames, size=args.size,
                            align=args.align, sampling=args.sampling, workers=args.workers,
                            lenient=True, progress=True, flow=getattr(args, "flow", None))
    except (ManifestError, ValueError, FileNotFoundError) as error:
        print(f"fdpkit preprocess: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = report[report["status"] != "ok"]
    for _, row in problems.head(20).iterrows():
        print(f"  {row['status']}: {row['clip_uid']}: {row['reason']}", file=sys.stderr)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
    seconds = report.attrs.get("seconds", 0.0)
    print(f"preprocess: {summary_line(report)} in {seconds:.1f} s -> {Path(args.cache) / REPORT_FILE}")
    if len(problems) and not args.lenient:
        return EXIT_INCOMPLETE
    return EXIT_OK
