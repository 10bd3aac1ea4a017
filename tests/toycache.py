"""Toy corpora for the run tests (tests/test_runner.py and the fault matrix, reliability/faultkit.py;
tests/test_cache.py uses the manifest rows): manifest rows, manifest CSVs and a cache of random
8-frame clips written straight in fdpkit's npz format with its index.csv, so training and LOSO
tests need neither dlib nor a preprocessing run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TOY_CLASSES = ["happiness", "surprise", "others"]
# Added to a class-specific band of each toy clip, frame by frame: it brightens up to frame 5 (the
# annotated apex) and fades again, so the classes are learnable from the motion.
BRIGHTENING = np.array([0, 10, 20, 30, 40, 30, 20, 10])
TOY_APEX = int(np.argmax(BRIGHTENING)) + 1


def manifest_row(root: Path, subject: str, clip: str, numbers, label: str = "happiness", onset=None,
                 offset=None, frame_dir: str | None = None, dataset: str = "casme2") -> dict:
    onset = numbers[0] if onset is None else onset
    offset = numbers[-1] if offset is None else offset
    return {
        "dataset": dataset, "subject": subject, "subject_uid": f"{dataset}/{subject}", "clip": clip,
        "clip_uid": f"{dataset}/{subject}/{clip}", "root": str(root),
        "frame_dir": frame_dir if frame_dir is not None else f"sub{subject}/{clip}",
        "first_frame": numbers[0], "last_frame": numbers[-1], "n_frames": len(numbers),
        "onset": onset, "apex": (onset + offset) // 2, "offset": offset, "apex_estimated": False,
        "emotion": label, "label": label, "aus": "", "fixes": "",
    }


def write_manifest_csv(path: Path, rows: list[dict], classes: list[str], protocol: str = "test") -> Path:
    from fdpkit.data.manifest import COLUMNS, Manifest, write_manifest

    return write_manifest(Manifest(pd.DataFrame(rows, columns=list(COLUMNS)), protocol, classes), path)


def make_toy_cache(folder: Path, subjects=("s01", "s02"), clips_per_subject: int = 4,
                   size: int = 32) -> tuple[Path, Path]:
    """(manifest, cache) of random 8-frame clips, labels cycling through TOY_CLASSES."""
    from fdpkit.data.preprocess.keys import row_key
    from fdpkit.data.preprocess.lookup import INDEX_COLUMNS
    from fdpkit.data.preprocess.dynamic_image import dynamic_image_uint8
    from fdpkit.io import write_csv, write_npz

    rng = np.random.default_rng(0)
    rows, index = [], []
    cache = folder / "cache"
    for subject in subjects:
        for k in range(clips_per_subject):
            label = TOY_CLASSES[k % 3]
            row = {**manifest_row(folder / "corpus", subject, f"c{k}", list(range(1, 9)), label,
                                  frame_dir=f"{subject}/c{k}", dataset="synthme"), "apex": TOY_APEX}
            frames = rng.normal(128, 20, size=(8, size, size))
            frames[:, 10 * (k % 3):10 * (k % 3) + 10] += BRIGHTENING[:, None, None]
            frames = np.clip(frames, 0, 255).astype(np.uint8)
            name = f"{subject}_c{k}.npz"
            write_npz(cache / name, frames=frames, dynamic_image=dynamic_image_uint8(frames),
                      frame_numbers=np.arange(1, 9))
            rows.append(row)
            index.append({"clip_uid": row["clip_uid"], "status": "ok", "file": name, "row_key": row_key(row)})
    write_csv(cache / "index.csv", pd.DataFrame(index, columns=list(INDEX_COLUMNS)))
    manifest = write_manifest_csv(folder / "manifest.csv", rows, TOY_CLASSES, "toy3")
    return manifest, cache
