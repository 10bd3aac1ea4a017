"""Optical flow in the preprocessing cache (`fdpkit preprocess --flow`, fdpkit/data/preprocess/flow_clip.py)
and its consumer (`ClipDataset(inputs="flow")`), on a small SynthME (real rendered faces, dlib alignment).

SynthME clips can have their apex off the sampled frames (e.g. onset 4, apex 11, offset 23: the 8
sampled frames are 4, 7, 9, 12, 15, 18, 20, 23), so a flow taken to a sampled frame instead of the
annotated apex is caught.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from fdpkit.data.adapters import build_manifest
from fdpkit.data.dataset import CacheMissError, ClipDataset
from fdpkit.data.frames import index_frames
from fdpkit.data.manifest import write_manifest
from fdpkit.data.preprocess import lookup as L
from fdpkit.data.preprocess.cache import preprocess, run_cli
from fdpkit.data.preprocess.faces import warp_face
from fdpkit.data.preprocess.flow import flow_inputs, has_tvl1
from fdpkit.data.preprocess.worker import read_frame
from fdpkit.io import load_npz, write_npz
from fdpkit.synthme.corpus import generate_synthme

PRE = dict(frames=8, size=48, lenient=True, progress=False)


@pytest.fixture(scope="module")
def synthme(tmp_path_factory):
    """(root, manifest (Manifest), manifest csv): 1 subject x 3 clips."""
    root = tmp_path_factory.mktemp("synthme")
    generate_synthme(root / "corpus", subjects=1, clips_per_subject=3, seed=0)
    manifest, _, _ = build_manifest("synthme", root / "corpus")
    csv = write_manifest(manifest, root / "manifest.csv")
    return root, manifest, csv


def files_of(cache: Path, pattern: str) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(cache.glob(pattern))}


def clip_files(cache: Path) -> dict[str, tuple[bytes, int]]:
    return {k: v for k, v in files_of(cache, "*.npz").items() if not k.endswith(".flow.npz")}


@pytest.mark.parametrize("method", ["farneback", pytest.param("tvl1", marks=pytest.mark.skipif(
    not has_tvl1(), reason="TV-L1 needs opencv-contrib (cv2.optflow)"))])
def test_cached_flow_is_flow_inputs_of_the_aligned_annotated_onset_and_apex(synthme, tmp_path, method):
    _, manifest, _ = synthme
    rows = manifest.rows
    report = preprocess(rows, tmp_path, flow=method, **PRE)
    assert (report["status"] == "ok").all() and report["flow_file"].str.endswith(".flow.npz").all()
    off_samples = 0
    for (_, row), (_, rep) in zip(rows.iterrows(), report.iterrows()):
        clip, flow = load_npz(tmp_path / rep["file"]), load_npz(tmp_path / rep["flow_file"])
        onset, apex = int(row["onset"]), int(row["apex"])
        off_samples += apex not in clip["frame_numbers"]
        np.testing.assert_array_equal(flow["frame_numbers"], [onset, apex])
        frames = index_frames(Path(row["root"]) / row["frame_dir"])
        matrix = clip["transforms"][0]                     # align=once: the clip's one transform
        onset_face = warp_face(read_frame(frames[onset]), matrix, 48)
        np.testing.assert_array_equal(onset_face, clip["frames"][0])
        expected = flow_inputs(onset_face, warp_face(read_frame(frames[apex]), matrix, 48), 28, method)
        assert flow["flow"].dtype == np.float32 and flow["flow"].shape == (3, 28, 28)
        np.testing.assert_array_equal(flow["flow"], expected)
        assert np.abs(flow["flow"][:2]).max() > 0.05          # the expression moves the face
        assert str(flow["method"]) == method
    assert off_samples >= 1        # an annotated apex that no sampled frame (the middle one included) is
    assert L.flow_settings(tmp_path)["method"] == method and L.flow_settings(tmp_path)["size"] == 28


def test_per_frame_alignment_takes_the_flow_under_the_onset_frames_own_transform(synthme, tmp_path):
    """align=per-frame fits a transform on every frame; the flow warps onset and apex with the onset
    frame's (the clip's first, onset-offset sampling), never the apex's own, so alignment jitter is
    not motion. A resume that makes only the flow (clip file reused) gives the same file."""
    _, manifest, _ = synthme
    row = manifest.rows.iloc[[0]]
    report = preprocess(row, tmp_path, align="per-frame", flow="farneback", **PRE)
    clip, flow = load_npz(tmp_path / report.loc[0, "file"]), load_npz(tmp_path / report.loc[0, "flow_file"])
    np.testing.assert_array_equal(flow["transform"], clip["transforms"][0])
    frames = index_frames(Path(row.iloc[0]["root"]) / row.iloc[0]["frame_dir"])
    onset, apex = (read_frame(frames[int(row.iloc[0][k])]) for k in ("onset", "apex"))
    matrix = clip["transforms"][0]
    expected = flow_inputs(warp_face(onset, matrix, 48), warp_face(apex, matrix, 48), 28, "farneback")
    np.testing.assert_array_equal(flow["flow"], expected)
    made = (tmp_path / report.loc[0, "flow_file"]).read_bytes()
    (tmp_path / report.loc[0, "flow_file"]).unlink()
    again = preprocess(row, tmp_path, align="per-frame", flow="farneback", **PRE)
    assert again.attrs["computed"] == 1 and (tmp_path / again.loc[0, "flow_file"]).read_bytes() == made


def test_changing_the_method_remakes_only_the_flow(synthme, tmp_path):
    _, manifest, _ = synthme
    rows = manifest.rows
    plain = preprocess(rows, tmp_path, **PRE)                      # a cache made without --flow
    assert (plain["flow_file"] == "").all() and L.flow_settings(tmp_path) is None
    frames_before = clip_files(tmp_path)
    first = preprocess(rows, tmp_path, flow="farneback", **PRE)
    assert first.attrs["computed"] == len(rows) and not first["cached"].any()
    assert list(first["file"]) == list(plain["file"])
    assert clip_files(tmp_path) == frames_before                   # same bytes, same mtimes
    farneback = files_of(tmp_path, "*.flow.npz")
    second = preprocess(rows, tmp_path, flow="dis", **PRE)
    assert list(second["file"]) == list(plain["file"]) and second.attrs["computed"] == len(rows)
    assert set(second["flow_file"]).isdisjoint(first["flow_file"])
    assert clip_files(tmp_path) == frames_before
    assert {k: v for k, v in files_of(tmp_path, "*.flow.npz").items() if k in farneback} == farneback
    back = preprocess(rows, tmp_path, flow="farneback", **PRE)     # the first method's files come back
    assert back.attrs["computed"] == 0 and back["cached"].all()
    assert list(back["flow_file"]) == list(first["flow_file"]) and list(back["notes"]) == list(first["notes"])
    # the flow parameters are in the key: another size is another file
    assert preprocess(rows, tmp_path, flow="farneback", flow_size=32, **PRE)["flow_file"].tolist() \
        != first["flow_file"].tolist()
    # a frames-only run over it serves frame models and says there is no flow
    preprocess(rows, tmp_path, **PRE)
    assert clip_files(tmp_path) == frames_before and L.flow_settings(tmp_path) is None
    assert (L.lookup(tmp_path, rows)["flow_path"] == "").all()


KILL_AT_SECOND_FLOW = textwrap.dedent("""
    import os, signal, sys
    import fdpkit.data.preprocess.worker as W
    real, calls = W.write_flow, []
    def write_flow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:                 # clip 2's frames are written, its flow is not
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    W.write_flow = write_flow
    from fdpkit.data.preprocess.cache import preprocess
    preprocess(sys.argv[1], sys.argv[2], frames=8, size=48, flow="farneback", lenient=True, progress=False)
""")


def test_killed_and_resumed_preprocessing_with_flow_gives_identical_files(synthme, tmp_path):
    _, manifest, csv = synthme
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    reference = preprocess(csv, clean, flow="farneback", **PRE)
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_FLOW, str(csv), str(resumed)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert len(list(resumed.glob("*.flow.npz"))) == 1 and len(clip_files(resumed)) == 2
    again = preprocess(csv, resumed, flow="farneback", **PRE)
    assert again.attrs["computed"] == 2 and list(again["cached"]) == [True, False, False]
    pd.testing.assert_frame_equal(again.drop(columns="cached"), reference.drop(columns="cached"))
    assert {k: v[0] for k, v in files_of(resumed, "*.npz").items()} == \
        {k: v[0] for k, v in files_of(clean, "*.npz").items()}
    assert (resumed / L.INDEX_FILE).read_bytes() == (clean / L.INDEX_FILE).read_bytes()
    assert not [p for p in resumed.iterdir() if ".tmp" in p.name]


def copy_clip(row: pd.Series, root: Path) -> tuple[pd.DataFrame, Path]:
    source = Path(row["root"]) / row["frame_dir"]
    shutil.copytree(source, root / row["frame_dir"], copy_function=shutil.copy2)
    out = pd.DataFrame([row]).reset_index(drop=True)
    out["root"] = str(root)
    return out, root / row["frame_dir"]


def test_missing_or_estimated_apex_and_a_flow_without_motion(synthme, tmp_path):
    _, manifest, _ = synthme
    row, folder = copy_clip(manifest.rows.iloc[0], tmp_path / "corpus")
    apex = int(row.loc[0, "apex"])
    estimated = row.copy()
    estimated["apex_estimated"] = True
    report = preprocess(estimated, tmp_path / "a", flow="farneback", **PRE)
    assert report.loc[0, "status"] == "ok"
    assert f"flow apex {apex} is estimated (not annotated in the corpus)" in report.loc[0, "notes"]
    # the apex frame file is gone: the nearest frame inside onset..offset, noted (as sampling does)
    [path] = [p for n, p in index_frames(folder).items() if n == apex]
    path.unlink()
    report = preprocess(row, tmp_path / "b", flow="farneback", **PRE)
    assert report.loc[0, "status"] == "ok"
    assert f"flow apex frame {apex} missing; used frame {apex - 1}" in report.loc[0, "notes"]
    np.testing.assert_array_equal(load_npz(tmp_path / "b" / report.loc[0, "flow_file"])["frame_numbers"],
                                  [row.loc[0, "onset"], apex - 1])
    # onset == apex: nothing to measure; failed with the reason, for a new clip and a reused one
    still = row.copy()
    still["apex"] = still["onset"]
    for attempt in range(2):
        report = preprocess(still, tmp_path / "c", flow="farneback", **PRE)
        assert report.loc[0, "status"] == "failed" and report.loc[0, "file"] == ""
        assert report.loc[0, "reason"] == (f"optical flow: onset and apex are the same frame "
                                           f"({still.loc[0, 'onset']}): no motion to measure")
        assert report.loc[0, "cached"] == (attempt == 1)
    assert preprocess(still, tmp_path / "c", **PRE).loc[0, "status"] == "ok"   # frames alone are fine


def test_unknown_method_or_missing_tvl1_is_refused_before_any_work(synthme, tmp_path, monkeypatch):
    _, manifest, _ = synthme
    with pytest.raises(ValueError, match="unknown --flow method 'raft'; choose one of tvl1, farneback, dis"):
        preprocess(manifest.rows, tmp_path / "cache", flow="raft", **PRE)
    monkeypatch.delattr(cv2, "optflow", raising=False)          # an OpenCV without the contrib module
    with pytest.raises(ValueError, match=r"--flow tvl1 needs OpenCV's contrib module cv2.optflow: install "
                                         r"opencv-contrib-python-headless==.*or choose --flow farneback or dis"):
        preprocess(manifest.rows, tmp_path / "cache", flow="tvl1", **PRE)
    assert not (tmp_path / "cache").exists()


def test_dataset_serves_flow_and_refuses_a_cache_without_it(synthme, tmp_path):
    _, manifest, _ = synthme
    rows, classes = manifest.rows, sorted(set(manifest.rows["label"]))
    report = preprocess(rows, tmp_path, **PRE)
    with pytest.raises(CacheMissError, match=rf"the cache {tmp_path} holds no optical flow for 3 of 3 clip\(s\) "
                                             r".*run fdpkit preprocess --flow tvl1"):
        ClipDataset(tmp_path, rows, classes, inputs="flow")
    with pytest.raises(L.CacheFileError, match=r"3 of 3 clip\(s\).*no optical flow.*fdpkit preprocess --flow tvl1"):
        L.check_cache_files(tmp_path, rows, inputs="flow")
    frames = ClipDataset(tmp_path, rows, classes)                  # frame models keep working
    assert frames[0][0].shape == (8, 1, 48, 48)

    report = preprocess(rows, tmp_path, flow="farneback", **PRE)
    assert (L.check_cache_files(tmp_path, rows, inputs="flow")["flow_path"] != "").all()
    for preload in (False, True):
        data = ClipDataset(tmp_path, rows, classes, preload=preload, inputs="flow")
        x, image, label, uid = data[1]
        assert x.dtype == torch.float32 and x.shape == (3, 28, 28) and image.shape == (48, 48)
        np.testing.assert_array_equal(x.numpy(), load_npz(tmp_path / report.loc[1, "flow_file"])["flow"])
        assert uid == rows.loc[1, "clip_uid"] and label == classes.index(rows.loc[1, "label"])
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch[0].shape == (3, 3, 28, 28)
    with pytest.raises(ValueError, match="inputs must be one of frames, flow"):
        ClipDataset(tmp_path, rows, classes, inputs="optical")

    # a flow file holding NaN is refused, naming the clip and the file; preprocess re-makes it
    bad = tmp_path / report.loc[2, "flow_file"]
    arrays = load_npz(bad)
    arrays["flow"][0, 3, 4] = np.nan
    write_npz(bad, **arrays)
    uid = rows.loc[2, "clip_uid"]
    with pytest.raises(CacheMissError, match=rf"{uid}: cannot read the cache file {bad}: flow holds 1 non-finite"):
        ClipDataset(tmp_path, rows, classes, inputs="flow")[2]
    with pytest.raises(L.CacheFileError, match=rf"{uid}: {bad}: flow holds 1 non-finite"):
        L.check_cache_files(tmp_path, rows, inputs="flow")
    again = preprocess(rows, tmp_path, flow="farneback", **PRE)
    assert list(again["cached"]) == [True, True, False]
    assert torch.isfinite(ClipDataset(tmp_path, rows, classes, inputs="flow")[2][0]).all()


def test_cli_reads_the_flow_option(synthme, tmp_path):
    """run_cli passes args.flow (the --flow option of `fdpkit preprocess`) to preprocess."""
    _, _, csv = synthme
    args = argparse.Namespace(manifest=str(csv), cache=str(tmp_path), frames=8, size=48, align="once",
                              sampling="onset-offset", workers=1, lenient=False, flow="dis")
    assert run_cli(args) == 0
    assert L.flow_settings(tmp_path)["method"] == "dis"
    assert (L.read_index(tmp_path)["flow_file"] != "").all()


def test_workers_give_identical_flow_files(synthme, tmp_path):
    """Spawned workers (one OpenCV thread each) and the main process (OpenCV's default threads)
    write the same bytes."""
    _, manifest, _ = synthme
    method = "tvl1" if has_tvl1() else "dis"
    serial = preprocess(manifest.rows, tmp_path / "w1", flow=method, workers=1, **PRE)
    parallel = preprocess(manifest.rows, tmp_path / "w2", flow=method, workers=2, **PRE)
    pd.testing.assert_frame_equal(serial, parallel)
    assert {k: v[0] for k, v in files_of(tmp_path / "w1", "*.npz").items()} == \
        {k: v[0] for k, v in files_of(tmp_path / "w2", "*.npz").items()}
    assert len(list((tmp_path / "w1").glob("*.flow.npz"))) == len(manifest.rows)
