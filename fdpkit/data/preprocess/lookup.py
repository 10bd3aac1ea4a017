"""Reading a preprocessing cache: its index, report and files, as a run or a dataset sees them.

Layout (docs/architecture.md, "Cache"; `fdpkit.data.preprocess.cache` writes it): ``index.csv``
(clip_uid, status, file, row_key, flow_file), ``preprocess_report.csv``, ``preprocess.json`` and
the ``<hash>.npz`` clip files, plus ``<hash>.flow.npz`` flow files when made with ``--flow``
(`fdpkit.data.preprocess.keys`). A cache written before flow existed has no ``flow_file`` column
and reads as a cache without flow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fdpkit.data.preprocess.keys import row_key
from fdpkit.errors import BadInput
from fdpkit.io import CorruptFileError, load_npz, read_json

INDEX_FILE = "index.csv"
REPORT_FILE = "preprocess_report.csv"
META_FILE = "preprocess.json"
STATUSES = ("ok", "skipped", "failed")
REPORT_COLUMNS = ("clip_uid", "status", "reason", "notes", "file", "flow_file", "cached")
INDEX_COLUMNS = ("clip_uid", "status", "file", "row_key", "flow_file")
LOOKUP_COLUMNS = ("clip_uid", "status", "reason", "path", "flow_path")
CLIP_ARRAYS = ("frames", "dynamic_image", "frame_numbers")   # what a run reads from a clip file
INPUTS = ("frames", "flow")
NO_FLOW_HINT = "run fdpkit preprocess --flow tvl1 (or farneback, dis) with the same manifest and --cache"


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
    """The arrays of one cache file, clip or flow (allow_pickle=False)."""
    return load_npz(path)


def read_index(cache_dir) -> pd.DataFrame:
    path = cache_folder(cache_dir) / INDEX_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no cache index; run `fdpkit preprocess` first")
    index = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "flow_file" not in index:   # a cache made before flow existed
        index["flow_file"] = ""
    return index


def read_report(cache_dir) -> pd.DataFrame:
    path = cache_folder(cache_dir) / REPORT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no preprocessing report; run `fdpkit preprocess` first")
    report = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "cached" in report:
        report["cached"] = report["cached"].str.lower() == "true"
    return report


def flow_settings(cache_dir) -> dict | None:
    """The flow the cache's last `fdpkit preprocess` made: {"method", "params", "size"} (what a run
    records in config.json), or None when it was made without ``--flow`` (or before flow existed)."""
    path = cache_folder(cache_dir) / META_FILE
    if not path.is_file():
        return None
    return read_json(path).get("flow")


def lookup(cache_dir, rows: pd.DataFrame) -> pd.DataFrame:
    """Per manifest row (in order): clip_uid, status, reason, path and flow_path (absolute; '' unless
    usable; flow_path also '' when the cache holds no flow for the clip).

    status: the report's ok / skipped / failed, or ``missing`` (not in the index, or its file is
    gone) or ``stale`` (the manifest row changed since it was preprocessed).
    """
    cache_dir = Path(cache_dir)
    index = read_index(cache_dir).set_index("clip_uid")
    reasons = {}
    if (cache_dir / REPORT_FILE).exists():
        report = read_report(cache_dir)
        reasons = dict(zip(report["clip_uid"], report["reason"]))
    out = []
    for _, row in rows.iterrows():
        uid = str(row["clip_uid"])
        entry = index.loc[uid] if uid in index.index else None
        status, reason, path, flow_path = "missing", "not in the cache index (preprocess this manifest)", "", ""
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
                    flow_path = str(cache_dir / entry["flow_file"]) if entry["flow_file"] else ""
        out.append({"clip_uid": uid, "status": status, "reason": reason, "path": path, "flow_path": flow_path})
    return pd.DataFrame(out, columns=list(LOOKUP_COLUMNS))


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


def read_flow(path) -> np.ndarray:
    """The (3, S, S) float32 flow (u, v, strain) of a flow file; CorruptFileError naming the file
    when it is missing, of the wrong shape or not finite everywhere (never trained on)."""
    data = load_clip(path)
    if "flow" not in data:
        raise CorruptFileError(f"{path}: no flow array")
    flow = data["flow"]
    if flow.dtype != np.float32 or flow.ndim != 3 or flow.shape[0] != 3 or flow.shape[1] != flow.shape[2]:
        raise CorruptFileError(f"{path}: flow is {flow.dtype} {flow.shape}, not float32 (3, S, S)")
    if not np.isfinite(flow).all():
        raise CorruptFileError(f"{path}: flow holds {int((~np.isfinite(flow)).sum())} non-finite value(s)")
    return flow


def check_cache_files(cache_dir, rows: pd.DataFrame, inputs: str = "frames") -> pd.DataFrame:
    """Open every cache file of `rows` that a run on ``inputs`` ("frames" or "flow": the clip files,
    plus the flow files) reads, before it writes anything; ``lookup``'s frame when all are usable,
    else one CacheFileError naming each bad clip and file (the first 5, then a count) and saying to
    re-run ``fdpkit preprocess``, which re-makes bad files."""
    if inputs not in INPUTS:
        raise BadInput(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    found = lookup(cache_dir, rows)
    problems = []
    for uid, status, reason, path, flow_path in found.itertuples(index=False):
        if status != "ok":
            problems.append(f"{uid}: {status}: {reason}")
            continue
        if inputs == "flow" and not flow_path:
            problems.append(f"{uid}: no optical flow in the cache")
            continue
        try:
            clip_file_shape(path)
            if inputs == "flow":
                read_flow(flow_path)
        except (OSError, ValueError) as error:
            problems.append(f"{uid}: {error}")
    if problems:
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        hint = (f" ({NO_FLOW_HINT})" if any(p.endswith("no optical flow in the cache") for p in problems)
                else "")
        raise CacheFileError(
            f"{len(problems)} of {len(found)} clip(s) cannot be read from the cache {cache_dir}: "
            + "; ".join(problems[:5]) + more
            + f". Re-run `fdpkit preprocess` with the same manifest and --cache (it re-makes bad files){hint}"
        )
    return found
