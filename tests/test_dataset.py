"""ClipDataset and ok_rows over a real preprocessing cache (astronaut face frames, dlib alignment)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data
from torch.utils.data import DataLoader

from fdpkit.data.cache import preprocess
from fdpkit.data.dataset import CacheMissError, ClipDataset, ok_rows
from fdpkit.data.manifest import COLUMNS
from fdpkit.io import load_npz

CLASSES = ["happiness", "surprise", "others"]


def write_clip(root: Path, subject: str, clip: str, label: str, n: int = 8, corrupt: int | None = None) -> dict:
    face = data.astronaut()[20:260, 110:340, ::-1]
    folder = root / f"sub{subject}" / clip
    folder.mkdir(parents=True)
    for k in range(n):
        path = folder / f"img{k + 1}.jpg"
        if k == corrupt:
            path.write_bytes(b"\xff\xd8 truncated")
        else:
            cv2.imwrite(str(path), np.ascontiguousarray(np.roll(face, k, axis=1)))
    return {
        "dataset": "casme2", "subject": subject, "subject_uid": f"casme2/{subject}", "clip": clip,
        "clip_uid": f"casme2/{subject}/{clip}", "root": str(root), "frame_dir": f"sub{subject}/{clip}",
        "first_frame": 1, "last_frame": n, "n_frames": n, "onset": 1, "apex": 4, "offset": n,
        "apex_estimated": False, "emotion": label, "label": label, "aus": "", "fixes": "",
    }


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rows = pd.DataFrame([
        write_clip(root, "01", "EP01_a", "surprise"),
        write_clip(root, "01", "EP02_b", "happiness", n=6),
        write_clip(root, "02", "EP03_c", "others", corrupt=2),
        write_clip(root, "02", "EP04_d", "others"),
    ], columns=list(COLUMNS))
    cache = tmp_path_factory.mktemp("cache")
    report = preprocess(rows, cache, lenient=True, progress=False)
    assert list(report["status"]) == ["ok", "ok", "failed", "ok"]
    return cache, rows, report


def test_ok_rows_drops_with_reasons(cached):
    cache, rows, _ = cached
    usable, dropped = ok_rows(cache, rows)
    assert list(usable["clip"]) == ["EP01_a", "EP02_b", "EP04_d"]
    assert list(usable.index) == [0, 1, 3]                   # the caller's index is kept
    assert list(dropped["clip_uid"]) == ["casme2/02/EP03_c"]
    assert dropped["status"][0] == "failed" and "unreadable frame" in dropped["reason"][0]
    result = ok_rows(cache, rows)
    assert result.n_dropped == 1 and sum(result.reasons().values()) == 1
    never = rows.iloc[:1].copy()
    never["clip"], never["clip_uid"] = "EP99_x", "casme2/01/EP99_x"
    assert ok_rows(cache, never).dropped["status"][0] == "missing"


def test_items_shapes_dtypes_ranges_labels(cached):
    cache, rows, report = cached
    usable, _ = ok_rows(cache, rows)
    dataset = ClipDataset(cache, usable, CLASSES)
    assert len(dataset) == 3
    assert list(dataset.labels) == [1, 0, 2]
    for i, (frames, image, label, uid) in enumerate(dataset):
        assert frames.dtype == torch.float32 and frames.shape == (8, 1, 64, 64)
        assert image.dtype == torch.float32 and image.shape == (64, 64)
        assert -1.0 <= frames.min() and frames.max() <= 1.0
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() == 1.0   # min-max normalised
        assert isinstance(label, int) and label == CLASSES.index(usable["label"].iloc[i])
        assert uid == usable["clip_uid"].iloc[i]
        raw = load_npz(cache / report.set_index("clip_uid").loc[uid, "file"])
        # Fixed constants, no statistics: x / 127.5 - 1 and x / 255.
        np.testing.assert_allclose(frames[:, 0].numpy(), raw["frames"] / 127.5 - 1, atol=1e-6)
        np.testing.assert_allclose(image.numpy(), raw["dynamic_image"] / 255.0, atol=1e-7)
    assert frames[0].numpy().min() >= -1 and dataset[-1][3] == "casme2/02/EP04_d"


def test_preload_keeps_uint8_and_matches(cached):
    cache, rows, _ = cached
    usable, _ = ok_rows(cache, rows)
    lazy = ClipDataset(cache, usable, CLASSES)
    eager = ClipDataset(cache, usable, CLASSES, preload=True)
    assert all(a.dtype == np.uint8 and b.dtype == np.uint8 for a, b in eager._arrays)
    for i in range(len(lazy)):
        for a, b in zip(lazy[i], eager[i]):
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    batch = next(iter(DataLoader(eager, batch_size=2)))
    assert batch[0].shape == (2, 8, 1, 64, 64) and batch[1].shape == (2, 64, 64)
    assert batch[2].tolist() == [1, 0] and list(batch[3]) == ["casme2/01/EP01_a", "casme2/01/EP02_b"]


def test_unusable_rows_raise_naming_the_clip(cached):
    cache, rows, _ = cached
    with pytest.raises(CacheMissError, match="casme2/02/EP03_c: failed: unreadable frame"):
        ClipDataset(cache, rows, CLASSES)
    stale = rows.iloc[[0]].copy()
    stale["onset"] = 2
    with pytest.raises(CacheMissError, match="EP01_a: stale"):
        ClipDataset(cache, stale, CLASSES)
    with pytest.raises(ValueError, match="label 'others' is not|labels not in classes"):
        ClipDataset(cache, rows.iloc[[3]], ["happiness", "surprise"])
    with pytest.raises(FileNotFoundError, match="run `fdpkit preprocess`"):
        ClipDataset(cache / "nowhere", rows.iloc[[0]], CLASSES)
