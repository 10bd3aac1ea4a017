"""`fdpkit preprocess`: manifest rows -> aligned grey clips and dynamic images, one npz per clip.

Cache folder layout (docs/architecture.md, "Cache"):

- ``<hash>.npz``, one per clip that was made (read with ``np.load(path, allow_pickle=False)``):
  ``frames`` uint8 (T, H, W), ``dynamic_image`` uint8 (H, W) (``dynamic_image_uint8(frames)``),
  ``frame_numbers`` int64 (T,), plus ``transforms`` float64 (T, 2, 3) (the affine matrix that mapped
  each frame's pixels to the aligned face) and ``notes`` (a 0-d unicode array). The name hashes the
  row's clip_uid, root, frame_dir, frame range, onset/apex/offset, the preprocessing parameters,
  ``CACHE_FORMAT_VERSION`` and the name, size and modification time (ns) of every frame file the
  clip is made from: changing any of them (a frame edited or replaced on disk included) makes a new
  file, never a stale hit. Copying the corpus without keeping modification times (``cp`` without
  ``-p``) therefore re-makes every clip once.
- ``index.csv``: clip_uid, status, file (empty unless ok), row_key (hash of the row's fields, so a
  reader can tell that a manifest row changed after preprocessing).
- ``preprocess_report.csv``: one row per manifest row, in manifest order: clip_uid, status, reason,
  notes, file, cached (True when an existing npz was reused).
- ``preprocess.json``: the parameters, the manifest hash, the counts and the time taken.

``index.csv``, the report and ``preprocess.json`` describe the *last* run into the folder; npz files
of other parameter sets stay on disk (different names) and are reused when those parameters come
back.

Status of a row:

- ``ok``: the npz exists and loads (made now or reused). Notes record caveats, e.g.
  "repeated frames: 5 distinct frame(s) for 8 samples" or "fallback transform on frame 46".
- ``skipped``: the data is fine but the sampling rule leaves the clip out (``official`` sampling of
  a clip with fewer than T frames, as the released code drops it).
- ``failed``: the clip could not be made: frame folder missing, no frames between onset and offset,
  an unreadable/corrupt frame (named), mixed frame sizes under a single transform, no face in the
  onset frame (``align="once"``) or in the first sampled frame (``align="per-frame"``), or an
  unexpected error (its message).

ok + skipped + failed always equals the number of manifest rows. Every clip is attempted whatever
happens to the others; re-running only does the clips without a valid npz.

A cache file that is truncated or corrupt is never trusted: ``preprocess`` re-makes it, and
``check_cache_files`` (called by ``fdpkit loso`` before it writes anything) refuses a run over it
with one ``CacheFileError`` naming the clip and the file.

Strictness: with ``lenient=False`` (the default) ``preprocess`` raises ``PreprocessIncomplete``
(carrying the report, after writing every file) when any row is skipped or failed, and the CLI exits
with ``EXIT_INCOMPLETE`` (4). With ``lenient=True`` the same rows are recorded and the call returns
normally / the CLI exits 0. A bad manifest or bad parameters: ``ManifestError`` / ``ValueError``,
CLI exit 2. Filter rows for training with ``fdpkit.data.dataset.ok_rows``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fdpkit import __version__
from fdpkit.errors import BadInput
from fdpkit.data.preprocess.faces import BORDER_VALUE, BOX_ENLARGE
from fdpkit.data.manifest import (Manifest, ManifestError, frame_folder, manifest_hash, read_manifest,
                                  validate)
from fdpkit.data.preprocess.sampling import METHODS
from fdpkit.io import CorruptFileError, check_writable_folder, load_npz, stable_hash, write_csv, write_json

CACHE_FORMAT_VERSION = 2   # 2: the file name also hashes the frame files' names, sizes and mtimes
INDEX_FILE = "index.csv"
REPORT_FILE = "preprocess_report.csv"
META_FILE = "preprocess.json"
STATUSES = ("ok", "skipped", "failed")
ALIGN_MODES = ("once", "per-frame")
ROW_KEY_FIELDS = ("clip_uid", "root", "frame_dir", "first_frame", "last_frame", "n_frames",
                  "onset", "apex", "offset")
REPORT_COLUMNS = ("clip_uid", "status", "reason", "notes", "file", "cached")
INDEX_COLUMNS = ("clip_uid", "status", "file", "row_key")
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 4


class PreprocessIncomplete(RuntimeError):
    """Some rows were skipped or failed (strict mode); ``.report`` holds the full report."""

    def __init__(self, message: str, report: pd.DataFrame):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class PreprocessParams:
    frames: int = 8
    size: int = 64
    align: str = "once"
    sampling: str = "onset-offset"
    box_enlarge: float = BOX_ENLARGE
    border: int = BORDER_VALUE

    def check(self) -> "PreprocessParams":
        if int(self.frames) < 2:
            raise ValueError(f"frames must be >= 2 (a dynamic image needs two), got {self.frames}")
        if int(self.size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if self.align not in ALIGN_MODES:
            raise ValueError(f"unknown align {self.align!r}; choose one of {', '.join(ALIGN_MODES)}")
        if self.sampling not in METHODS:
            raise ValueError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(METHODS)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def _row_fields(row) -> dict:
    fields = {}
    for name in ROW_KEY_FIELDS:
        value = row[name]
        fields[name] = int(value) if name in ("first_frame", "last_frame", "n_frames", "onset",
                                                "apex", "offset") else str(value)
    return fields


def row_key(row) -> str:
    """Hash of the manifest fields that decide a clip's pixels (not the label)."""
    return stable_hash(_row_fields(row))


def clip_file_name(row, params: PreprocessParams, frames: list | None = None) -> str:
    """``<hash>.npz`` of (row fields, parameters, CACHE_FORMAT_VERSION, the frame files read:
    ``preprocess_worker.frame_inputs``)."""
    key = {"format": CACHE_FORMAT_VERSION, "row": _row_fields(row), "params": params.as_dict(),
           "frames": frames}
    return stable_hash(key) + ".npz"


class CacheFileError(BadInput):
    """A cache file a run would read is missing, truncated, corrupt or of the wrong shape (exit 2)."""


def cache_folder(cache_dir) -> Path:
    """`cache_dir` as a Path; BadInput when it exists but is not a folder (e.g. ``--cache`` naming
    a file)."""
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise BadInput(f"cache folder {cache_dir} is a file, not a folder: --cache names the folder "
                       "`fdpkit preprocess` writes into; give a folder path")
    return cache_dir


def load_clip(path) -> dict[str, np.ndarray]:
    """The arrays of one cache file (allow_pickle=False)."""
    return load_npz(path)


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


def _as_rows(manifest) -> pd.DataFrame:
    if isinstance(manifest, Manifest):
        return validate(manifest.rows)
    if isinstance(manifest, pd.DataFrame):
        return validate(manifest)
    return read_manifest(manifest).rows


def preprocess(manifest: Manifest | str | os.PathLike | pd.DataFrame, cache_dir, frames: int = 8,
               size: int = 64, align: str = "once", sampling: str = "onset-offset", workers: int = 1,
               lenient: bool = False, progress: bool = True) -> pd.DataFrame:
    """Align, sample and cache every manifest row; returns the report (also written to the cache).

    ``manifest``: a Manifest, a manifest CSV path, or manifest rows. ``align``: ``once`` (landmarks
    of the onset frame, one similarity transform for the whole clip) or ``per-frame`` (the released
    code). ``sampling``: ``onset-offset`` or ``official`` (see ``fdpkit.data.preprocess.sampling``).
    ``workers`` > 1 runs clips in spawned processes (each loads the dlib models, about 3 s; a
    script calling this needs the usual ``if __name__ == "__main__":`` guard); the files are
    byte-identical for any value.
    Existing valid npz files are reused. Strict unless ``lenient``: raises PreprocessIncomplete
    after writing everything when a row is skipped or failed (module docstring).
    ``report.attrs``: counts, ``computed`` (clips made in this call) and ``seconds``.
    """
    from fdpkit.data.preprocess.worker import frame_inputs

    params = PreprocessParams(int(frames), int(size), align, sampling).check()
    rows = _as_rows(manifest)
    cache_dir = check_writable_folder(cache_folder(cache_dir))   # before any work
    start = time.perf_counter()

    from tqdm.auto import tqdm

    results: dict[str, dict] = {}
    tasks = []
    files = {}
    for _, row in rows.iterrows():
        uid = row["clip_uid"]
        try:
            folder = frame_folder(row)   # refuses a frame_dir resolving out of root (e.g. a symlink)
        except ManifestError as error:
            results[uid] = {"clip_uid": uid, "status": "failed", "reason": str(error), "notes": "",
                            "cached": False}
            files[uid] = clip_file_name(row, params)
            continue
        inputs, chosen = frame_inputs(folder, int(row["onset"]), int(row["offset"]), params.as_dict())
        files[uid] = clip_file_name(row, params, inputs)
        notes = _valid_cached(cache_dir / files[uid], params) if inputs is not None else None
        if notes is not None:
            results[uid] = {"clip_uid": uid, "status": "ok", "reason": "", "notes": notes, "cached": True}
            continue
        tasks.append({
            "clip_uid": uid,
            "folder": str(folder),
            "root": str(row["root"]),
            "onset": int(row["onset"]),
            "offset": int(row["offset"]),
            "path": str(cache_dir / files[uid]),
            "params": params.as_dict(),
            "chosen": chosen,
        })

    with tqdm(total=len(rows), desc="preprocess", unit="clip", disable=not progress) as bar:
        bar.update(len(results))
        for result in _run_tasks(tasks, max(1, int(workers))):
            results[result["clip_uid"]] = {**result, "cached": False}
            bar.update(1)

    records = []
    for uid in rows["clip_uid"]:
        result = results[uid]
        records.append({**{k: result[k] for k in ("clip_uid", "status", "reason", "notes", "cached")},
                        "file": files[uid] if result["status"] == "ok" else ""})
    report = pd.DataFrame(records, columns=list(REPORT_COLUMNS))
    index = pd.DataFrame({
        "clip_uid": report["clip_uid"], "status": report["status"], "file": report["file"],
        "row_key": [row_key(row) for _, row in rows.iterrows()],
    })
    seconds = time.perf_counter() - start
    counts = {s: int((report["status"] == s).sum()) for s in STATUSES}
    computed = len(tasks)
    write_csv(cache_dir / INDEX_FILE, index)
    write_csv(cache_dir / REPORT_FILE, report)
    write_json(cache_dir / META_FILE, {
        "cache_format_version": CACHE_FORMAT_VERSION, "params": params.as_dict(),
        "manifest_sha256": manifest_hash(rows), "clips": int(len(rows)), "counts": counts,
        "computed": computed, "reused": int(report["cached"].sum()), "workers": int(workers),
        "seconds": round(seconds, 3), "fdpkit_version": __version__,
    })
    report.attrs.update({**counts, "total": int(len(rows)), "computed": computed, "seconds": seconds,
                         "cache_dir": str(cache_dir)})
    if not lenient and counts["ok"] < len(rows):
        raise PreprocessIncomplete(
            f"{summary_line(report)}; see {cache_dir / REPORT_FILE} (lenient=True / --lenient accepts this)",
            report,
        )
    return report


def _run_tasks(tasks: list[dict], workers: int):
    """Yield the result of every task (in completion order); never raises for a task's failure."""
    from fdpkit.data.preprocess.worker import process_clip

    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield process_clip(task)
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from fdpkit.data.preprocess.worker import init_worker

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


def summary_line(report: pd.DataFrame) -> str:
    counts = {s: int((report["status"] == s).sum()) for s in STATUSES}
    reused = int(report["cached"].astype(bool).sum()) if "cached" in report else 0
    return (f"{len(report)} clips: {counts['ok']} ok ({reused} from cache), "
            f"{counts['skipped']} skipped, {counts['failed']} failed")


def read_index(cache_dir) -> pd.DataFrame:
    path = cache_folder(cache_dir) / INDEX_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no cache index; run `fdpkit preprocess` first")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_report(cache_dir) -> pd.DataFrame:
    path = cache_folder(cache_dir) / REPORT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no preprocessing report; run `fdpkit preprocess` first")
    report = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "cached" in report:
        report["cached"] = report["cached"].str.lower() == "true"
    return report


def lookup(cache_dir, rows: pd.DataFrame) -> pd.DataFrame:
    """Per manifest row (in order): clip_uid, status, reason, path (absolute, '' unless usable).

    status: the report's ok / skipped / failed, or ``missing`` (not in the index, or its file is
    gone) or ``stale`` (the manifest row changed since it was preprocessed).
    """
    cache_dir = Path(cache_dir)
    index = read_index(cache_dir).set_index("clip_uid")
    reasons = {}
    report_path = cache_dir / REPORT_FILE
    if report_path.exists():
        report = read_report(cache_dir)
        reasons = dict(zip(report["clip_uid"], report["reason"]))
    out = []
    for _, row in rows.iterrows():
        uid = str(row["clip_uid"])
        entry = index.loc[uid] if uid in index.index else None
        status, reason, path = "missing", "not in the cache index (preprocess this manifest)", ""
        if entry is not None:
            status, reason = entry["status"], reasons.get(uid, "")
            if status == "ok":
                candidate = cache_dir / entry["file"]
                if entry.get("row_key", "") and entry["row_key"] != row_key(row):
                    status, reason = "stale", "manifest row changed since preprocessing (re-run preprocess)"
                elif not candidate.is_file():
                    status, reason = "missing", f"cache file {candidate} is missing"
                else:
                    path = str(candidate)
        out.append({"clip_uid": uid, "status": status, "reason": reason, "path": path})
    return pd.DataFrame(out, columns=["clip_uid", "status", "reason", "path"])


CLIP_ARRAYS = ("frames", "dynamic_image", "frame_numbers")   # what a run reads from a clip file


def clip_file_shape(path) -> tuple[int, int, int]:
    """(T, H, W) of a cache file holding the arrays a run reads, uint8 frames (T, H, W), a uint8
    dynamic image (H, W) and T frame numbers; CorruptFileError naming the file otherwise. The whole
    file is read, so every zip member's CRC is checked (a flipped byte is found, not trained on)."""
    data = load_clip(path)
    missing = [name for name in CLIP_ARRAYS if name not in data]
    if missing:
        raise CorruptFileError(f"{path}: no {', '.join(missing)} array")
    frames, image, numbers = (data[name] for name in CLIP_ARRAYS)
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise CorruptFileError(f"{path}: frames are {frames.dtype} {frames.shape}, not uint8 (T, H, W)")
    if image.dtype != np.uint8 or image.shape != frames.shape[1:]:
        raise CorruptFileError(f"{path}: dynamic_image is {image.dtype} {image.shape}, "
                               f"not uint8 {frames.shape[1:]}")
    if numbers.shape != frames.shape[:1]:
        raise CorruptFileError(f"{path}: {numbers.shape} frame_numbers for {frames.shape[0]} frames")
    return tuple(int(n) for n in frames.shape)


def check_cache_files(cache_dir, rows: pd.DataFrame) -> pd.DataFrame:
    """Open every cache file of `rows` before a run writes anything; ``lookup``'s frame when all
    are usable, else one CacheFileError naming each bad clip and file (the first 5, then a count)
    and saying to re-run ``fdpkit preprocess``, which re-makes bad files."""
    found = lookup(cache_dir, rows)
    problems = []
    for uid, status, reason, path in found.itertuples(index=False):
        if status != "ok":
            problems.append(f"{uid}: {status}: {reason}")
            continue
        try:
            clip_file_shape(path)
        except (OSError, ValueError) as error:
            problems.append(f"{uid}: {error}")
    if problems:
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise CacheFileError(
            f"{len(problems)} of {len(found)} clip(s) cannot be read from the cache {cache_dir}: "
            + "; ".join(problems[:5]) + more
            + ". Re-run `fdpkit preprocess` with the same manifest and --cache (it re-makes bad files)"
        )
    return found


def run_cli(args) -> int:
    """`fdpkit preprocess`: exit 0 when every row is ok (or --lenient), 4 when some row was skipped
    or failed, 2 on a bad manifest or bad arguments. Prints one summary line (and the first
    problems) whatever happens."""
    try:
        report = preprocess(args.manifest, args.cache, frames=args.frames, size=args.size,
                            align=args.align, sampling=args.sampling, workers=args.workers,
                            lenient=True, progress=True)
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
