"""ClipDataset: a torch Dataset over the preprocessing cache and a subset of manifest rows.

Items: ``(x, dynamic_image, label, clip_uid)``. With ``inputs="frames"`` (default) ``x`` is the
frames, float32 (T, 1, H, W) in [-1, 1] (``x / 127.5 - 1``); with ``inputs="flow"`` it is the
cached onset -> apex flow, float32 (3, S, S) (u, v, optical strain as `fdpkit preprocess --flow`
stored them; the flow models scale it themselves). ``dynamic_image`` float32 (H, W) in [0, 1]
(``x / 255``), ``label`` the index of the row's label in ``classes`` and ``clip_uid`` a str. The
normalisation uses fixed constants, never statistics of the data. Rows must be usable (status ok in
the cache); ``ok_rows`` filters a manifest subset down to those and says what it dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fdpkit.data.manifest import row_name
from fdpkit.data.preprocess.lookup import INPUTS, NO_FLOW_HINT, load_clip, lookup, read_flow
from fdpkit.errors import BadInput


class CacheMissError(BadInput, LookupError):
    """A manifest row has no usable cache entry, or its cache file cannot be read; the message
    names the clip(s), the file and why (exit code 2 through ``fdpkit.cli``)."""


class OkRows(NamedTuple):
    rows: pd.DataFrame      # the usable rows, original index kept
    dropped: pd.DataFrame   # clip_uid, status, reason of every other row

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)

    def reasons(self) -> dict[str, int]:
        """How many rows were dropped for each reason."""
        return {str(k): int(v) for k, v in self.dropped["reason"].value_counts().items()}


def ok_rows(cache_dir, manifest_rows: pd.DataFrame) -> OkRows:
    """Split rows into those with a usable cache entry and the dropped ones (with status and reason).

    ``rows, dropped = ok_rows(cache, df)``; ``len(dropped)`` is the count.
    """
    found = lookup(cache_dir, manifest_rows)
    usable = (found["status"] == "ok").to_numpy()
    dropped = found.loc[~usable, ["clip_uid", "status", "reason"]].reset_index(drop=True)
    return OkRows(manifest_rows.loc[usable], dropped)


def frames_to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W) -> float32 (T, 1, H, W) in [-1, 1]."""
    return torch.from_numpy(frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).unsqueeze(1)


def dynamic_image_to_float(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) -> float32 (H, W) in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / np.float32(255.0))


class ClipDataset(Dataset):
    """Clips of ``manifest_rows`` from ``cache_dir``; labels index ``classes``.

    Raises CacheMissError at construction, naming the clips, when a row has no usable cache entry
    (never cached, failed, skipped, file gone, or the row changed since preprocessing): filter with
    ``ok_rows`` first. ``preload=True`` reads every clip once and keeps the uint8 arrays (about
    T*H*W + H*W bytes per clip; with flow 12*S*S more); conversion to float happens per item either
    way. ``inputs="flow"`` needs a cache made with ``fdpkit preprocess --flow``: CacheMissError
    naming the cache otherwise, and naming the clip when its flow is not finite.
    """

    def __init__(self, cache_dir, manifest_rows: pd.DataFrame, classes: list[str], preload: bool = False,
                 inputs: str = "frames"):
        if inputs not in INPUTS:
            raise BadInput(f"ClipDataset: inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
        self.inputs = inputs
        self.cache_dir = Path(cache_dir)
        self.rows = manifest_rows.reset_index(drop=True).copy()
        self.classes = list(classes)
        class_index = {name: i for i, name in enumerate(self.classes)}
        unknown = [f"{row_name(r)} ({r['clip_uid']}): label {r['label']!r}"
                   for _, r in self.rows.iterrows() if r["label"] not in class_index]
        if unknown:
            raise ValueError(f"labels not in classes {self.classes}: " + "; ".join(unknown[:10])
                             + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
        found = lookup(self.cache_dir, self.rows)
        bad = found[found["status"] != "ok"]
        if len(bad):
            lines = [f"{uid}: {status}: {reason}" for uid, status, reason
                     in bad[["clip_uid", "status", "reason"]].itertuples(index=False)]
            more = f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else ""
            raise CacheMissError(
                f"{len(bad)} of {len(self.rows)} clip(s) have no usable cache entry in {self.cache_dir} "
                f"(filter with fdpkit.data.dataset.ok_rows):\n  " + "\n  ".join(lines[:10]) + more
            )
        self.paths = found["path"].tolist()
        self.flow_paths = found["flow_path"].tolist()
        if inputs == "flow" and not all(self.flow_paths):
            missing = [uid for uid, path in zip(found["clip_uid"], self.flow_paths) if not path]
            raise CacheMissError(
                f"the cache {self.cache_dir} holds no optical flow for {len(missing)} of {len(found)} clip(s) "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): {NO_FLOW_HINT}")
        self.clip_uids = self.rows["clip_uid"].astype(str).tolist()
        self.labels = np.array([class_index[label] for label in self.rows["label"]], dtype=np.int64)
        self._arrays: list[tuple[np.ndarray, np.ndarray]] | None = None
        if preload:
            self._arrays = [self._read(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8 (T, H, W) or flow float32 (3, S, S), dynamic image uint8 (H, W)) of item i."""
        path = self.paths[i]
        try:
            data = load_clip(path)
            image = data["dynamic_image"]
            if self.inputs == "frames":
                return data["frames"], image
            path = self.flow_paths[i]
            return read_flow(path), image
        except (OSError, ValueError, KeyError) as error:   # unreadable, corrupt, not finite, an array missing
            where = "" if str(path) in str(error) else f"{path}: "   # named once
            raise CacheMissError(f"{self.clip_uids[i]}: cannot read the cache file {where}{error}; "
                                 "re-run `fdpkit preprocess` (it re-makes bad files)") from error

    def uint8(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached (frames uint8 (T, H, W), or flow float32 (3, S, S) with inputs="flow"; dynamic
        image uint8 (H, W)) of item i."""
        return self._arrays[i] if self._arrays is not None else self._read(i)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        i = i % len(self)
        x, image = self.uint8(i)
        x = frames_to_float(x) if self.inputs == "frames" else torch.from_numpy(x.copy())
        return x, dynamic_image_to_float(image), int(self.labels[i]), self.clip_uids[i]


class Relabelled:
    """A dataset whose labels are replaced (the label-shuffled control)."""

    def __init__(self, base, labels: np.ndarray):
        self.base, self.labels = base, np.asarray(labels)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        frames, image, _, uid = self.base[i]
        return frames, image, int(self.labels[i]), uid
