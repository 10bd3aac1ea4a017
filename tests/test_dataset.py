"""ClipDataset and ok_rows over a real preprocessing cache (astronaut face frames, dlib alignment)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data
from torch.utils.data import DataLoader

from fdpkit.data.preprocess.cache import preprocess
from fdpkit.data.preprocess.lookup import CacheFileError, check_cache_files
from fdpkit.data.dataset import CacheMissError, ClipDataset, ok_rows
from fdpkit.data.manifest import COLUMNS
from fdpkit.errors import BadInput
from fdpkit.io import load_npz, write_npz

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


def test_cache_miss_is_bad_input_not_a_bare_key_error(cached):
    cache, rows, _ = cached
    with pytest.raises(CacheMissError) as info:
        ClipDataset(cache, rows, CLASSES)
    assert isinstance(info.value, BadInput) and isinstance(info.value, LookupError)
    assert not isinstance(info.value, KeyError)                 # no quoted message, no bare KeyError
    assert str(info.value).startswith("1 of 4 clip(s) have no usable cache entry")


def _damaged_copy(cached, tmp_path):
    """A copy of the cache whose clip files are damaged: EP01_a truncated, EP02_b with one byte of
    its frames flipped (the zip structure intact; only the CRC tells), EP04_d holding float frames."""
    source, rows, report = cached
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    files = {uid: cache / name for uid, name in zip(report["clip_uid"], report["file"]) if name}
    data = files["casme2/01/EP01_a"].read_bytes()
    files["casme2/01/EP01_a"].write_bytes(data[:len(data) // 2])
    data = bytearray(files["casme2/01/EP02_b"].read_bytes())
    data[len(data) // 3] ^= 0xFF
    files["casme2/01/EP02_b"].write_bytes(bytes(data))
    write_npz(files["casme2/02/EP04_d"], frames=np.zeros((8, 64, 64), np.float32),
              dynamic_image=np.zeros((64, 64), np.uint8), frame_numbers=np.arange(8))
    return cache, rows.iloc[[0, 1, 3]], files


def test_check_cache_files_names_every_bad_clip_and_file_before_a_run(cached, tmp_path):
    cache, usable, files = _damaged_copy(cached, tmp_path)
    found = check_cache_files(cached[0], usable)                 # the intact cache passes
    assert list(found["status"]) == ["ok"] * 3 and list(found["clip_uid"]) == list(usable["clip_uid"])
    with pytest.raises(CacheFileError) as info:
        check_cache_files(cache, usable)
    message = str(info.value)
    assert isinstance(info.value, BadInput) and "\n" not in message
    assert message.startswith(f"3 of 3 clip(s) cannot be read from the cache {cache}: ")
    assert re.search(rf"casme2/01/EP01_a: {re.escape(str(files['casme2/01/EP01_a']))}: not a readable npz", message)
    assert re.search(rf"casme2/01/EP02_b: {re.escape(str(files['casme2/01/EP02_b']))}: not a readable npz"
                     r".*(CRC|crc)", message)
    assert f"casme2/02/EP04_d: {files['casme2/02/EP04_d']}: frames are float32 (8, 64, 64)" in message
    assert message.endswith("Re-run `fdpkit preprocess` with the same manifest and --cache (it re-makes bad files)")


def test_a_corrupt_file_read_by_the_dataset_is_a_cache_miss_naming_it(cached, tmp_path):
    cache, usable, files = _damaged_copy(cached, tmp_path)
    dataset = ClipDataset(cache, usable, CLASSES)                # the index alone does not open files
    path = re.escape(str(files["casme2/01/EP02_b"]))
    with pytest.raises(CacheMissError, match=rf"^casme2/01/EP02_b: cannot read the cache file {path}: not a "
                                             r"readable npz file .*; re-run `fdpkit preprocess`") as info:
        dataset[1]
    assert str(info.value).count(str(files["casme2/01/EP02_b"])) == 1


def test_preprocess_remakes_corrupt_cache_files_instead_of_trusting_them(cached, tmp_path):
    cache, usable, files = _damaged_copy(cached, tmp_path)
    report = preprocess(usable, cache, lenient=True, progress=False)
    assert list(report["status"]) == ["ok"] * 3 and not report["cached"].any()
    for name in report["file"]:
        assert (cache / name).read_bytes() == (cached[0] / name).read_bytes()
    assert list(check_cache_files(cache, usable)["status"]) == ["ok"] * 3
