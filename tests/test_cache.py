"""Preprocessing cache (fdpkit.data.preprocess.cache, fdpkit.data.preprocess.sampling): a CASME II-like folder of real-face
jpg frames (skimage astronaut) built at test time, dlib really detecting the face."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data

from fdpkit.cli import main as cli_main
from fdpkit.data.preprocess import cache as C
from fdpkit.data.preprocess import keys as K
from fdpkit.data.preprocess import lookup as L
from fdpkit.data.preprocess.dynamic_image import dynamic_image_uint8
from fdpkit.data.manifest import COLUMNS, Manifest, write_manifest
from fdpkit.data.preprocess.sampling import (SamplingError, SamplingSkip, evenly_spaced_positions, sample_frames,
                                  sample_official, sample_onset_offset)
from fdpkit.io import load_npz

sys.path.insert(0, str(Path(__file__).parent))
from toycache import manifest_row  # noqa: E402

ASTRONAUT = data.astronaut()
CLASSES = ["happiness", "surprise"]


def face_bgr(dx: int = 0, dy: int = 0, height: int = 240, width: int = 230) -> np.ndarray:
    """A crop around the astronaut's face; the face moves by (-dx, -dy) in the crop."""
    crop = ASTRONAUT[20 + dy:20 + dy + height, 110 + dx:110 + dx + width]
    return np.ascontiguousarray(crop[..., ::-1])


def blank(height: int = 240, width: int = 230) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def write_clip(root: Path, subject: str, clip: str, frames: list, first: int = 1,
               label: str = "happiness", onset=None, offset=None) -> dict:
    """Write frames as root/sub<subject>/<clip>/img<n>.jpg (bytes are written as they are) and
    return the clip's manifest row."""
    folder = root / f"sub{subject}" / clip
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(first, first + len(frames)))
    for number, frame in zip(numbers, frames):
        path = folder / f"img{number}.jpg"
        if isinstance(frame, bytes):
            path.write_bytes(frame)
        else:
            assert cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return manifest_row(root, subject, clip, numbers, label, onset, offset)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("casme2")
    rows = {
        # face moving right to left by 1 px per frame, onset 101 .. offset 110
        "moving": write_clip(root, "01", "EP01_moving", [face_bgr(dx=k) for k in range(10)], first=101),
        "short": write_clip(root, "01", "EP02_short", [face_bgr(dx=k % 2) for k in range(5)]),
        "blank_onset": write_clip(root, "01", "EP03_blankonset", [blank()] + [face_bgr()] * 7, label="surprise"),
        "blank_middle": write_clip(root, "02", "EP04_blankmiddle",
                                   [face_bgr(dx=k) for k in range(3)] + [blank()] + [face_bgr(dx=k) for k in range(4)],
                                   first=46, label="surprise"),
        "corrupt": write_clip(root, "02", "EP05_corrupt", [face_bgr()] * 4 + [b"not a jpeg"] + [face_bgr()] * 3),
        "mixed": write_clip(root, "02", "EP06_mixed", [face_bgr()] * 5 + [face_bgr(height=250)] + [face_bgr()] * 2),
        "missing": manifest_row(root, "03", "EP07_missing", list(range(1, 9))),
        "grey": write_clip(root, "03", "EP08_grey",
                           [cv2.cvtColor(face_bgr(dy=k), cv2.COLOR_BGR2GRAY) for k in range(8)]),
    }
    return root, {key: pd.Series(row) for key, row in rows.items()}


def frame_of(corpus, key, *keys) -> pd.DataFrame:
    return pd.DataFrame([corpus[1][k] for k in (key, *keys)], columns=list(COLUMNS))


def by_key(report: pd.DataFrame) -> dict:
    return {uid.split("_")[-1]: row for uid, row in zip(report["clip_uid"], report.to_dict("records"))}


# --- sampling (pure) -----------------------------------------------------------------------------


def test_evenly_spaced_positions():
    assert evenly_spaced_positions(8, 8) == list(range(8))
    assert evenly_spaced_positions(10, 8) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert evenly_spaced_positions(5, 8) == [0, 1, 1, 2, 2, 3, 3, 4]   # halves round up
    assert evenly_spaced_positions(1, 3) == [0, 0, 0]
    assert evenly_spaced_positions(30, 1) == [0]


def test_sample_onset_offset():
    numbers = list(range(40, 120))
    sampled = sample_onset_offset(numbers, 50, 57, 8)
    assert sampled.numbers == tuple(range(50, 58)) and sampled.notes == ()
    sampled = sample_onset_offset(numbers, 50, 54, 8)
    assert sampled.numbers == (50, 51, 51, 52, 52, 53, 53, 54)
    assert any("repeated frames" in note for note in sampled.notes)
    # targets 1, 5, 8, 12 keep their time; a dropped target frame takes its nearest neighbour
    gappy = sample_onset_offset([1, 2, 5, 6, 7, 8, 9, 10, 11, 12], 1, 12, 4)
    assert gappy.numbers == (1, 5, 8, 12) and "2 frame number(s) missing" in gappy.notes[0]
    dropped = sample_onset_offset([1, 2, 6, 7, 9, 10, 11, 12], 1, 12, 4)
    assert dropped.numbers == (1, 6, 7, 12) and "4 frame number(s) missing" in dropped.notes[0]
    with pytest.raises(SamplingError):
        sample_onset_offset([1, 2, 3], 10, 20, 8)


def test_sample_official():
    assert sample_official(range(100, 120), 8).numbers == (100, 102, 104, 106, 108, 110, 112, 114)
    assert sample_official([5, 3, 9, 1, 7, 2, 8, 4], 8).numbers == (1, 2, 3, 4, 5, 7, 8, 9)
    with pytest.raises(SamplingSkip, match="at least 8 frames, the folder has 5"):
        sample_official(range(5), 8)
    with pytest.raises(ValueError):
        sample_frames(range(10), 0, 9, 8, "random")


# --- preprocess ----------------------------------------------------------------------------------


def test_once_mode_statuses_reasons_and_files(corpus, tmp_path):
    rows = frame_of(corpus, *corpus[1])
    report = C.preprocess(rows, tmp_path, lenient=True, progress=False)
    assert list(report.columns) == list(L.REPORT_COLUMNS)
    assert list(report["clip_uid"]) == list(rows["clip_uid"])
    got = by_key(report)
    assert {k: r["status"] for k, r in got.items()} == {
        "moving": "ok", "short": "ok", "blankonset": "failed", "blankmiddle": "ok",
        "corrupt": "failed", "mixed": "failed", "missing": "failed", "grey": "ok"}
    assert "repeated frames" in got["short"]["notes"]
    assert "no face in the onset frame" in got["blankonset"]["reason"]
    assert got["blankonset"]["reason"].count("img1.jpg") == 1
    assert "unreadable frame" in got["corrupt"]["reason"] and "EP05_corrupt/img5.jpg" in got["corrupt"]["reason"]
    assert "mixed frame sizes" in got["mixed"]["reason"]
    assert "frame folder not found" in got["missing"]["reason"]
    counts = report.attrs
    assert counts["ok"] + counts["skipped"] + counts["failed"] == len(rows) == counts["total"]

    # Files written atomically next to each other: report, index, meta, one npz per ok clip.
    on_disk = pd.read_csv(tmp_path / L.REPORT_FILE, keep_default_na=False)
    assert len(on_disk) == len(rows) and (on_disk["status"] == report["status"]).all()
    index = L.read_index(tmp_path)
    assert list(index.columns) == list(L.INDEX_COLUMNS) and len(index) == len(rows)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted(report.loc[report["status"] == "ok", "file"])
    assert not list(tmp_path.glob(".*tmp"))

    clip = load_npz(tmp_path / got["moving"]["file"])
    assert clip["frames"].dtype == np.uint8 and clip["frames"].shape == (8, 64, 64)
    assert clip["dynamic_image"].dtype == np.uint8 and clip["dynamic_image"].shape == (64, 64)
    np.testing.assert_array_equal(clip["dynamic_image"], dynamic_image_uint8(clip["frames"]))
    np.testing.assert_array_equal(clip["frame_numbers"], [101, 102, 104, 105, 106, 107, 109, 110])
    assert clip["transforms"].shape == (8, 2, 3)
    assert (clip["transforms"] == clip["transforms"][0]).all()        # once: one transform
    short = load_npz(tmp_path / got["short"]["file"])
    np.testing.assert_array_equal(short["frame_numbers"], [1, 2, 2, 3, 3, 4, 4, 5])
    np.testing.assert_array_equal(short["frames"][1], short["frames"][2])
    # The blank middle frame under the onset transform is a grey image.
    middle = load_npz(tmp_path / got["blankmiddle"]["file"])
    assert list(middle["frame_numbers"]) == list(range(46, 54))
    assert np.abs(middle["frames"][3].astype(int) - 128).max() <= 2


def test_once_versus_per_frame_on_a_moving_face(corpus, tmp_path):
    rows = frame_of(corpus, "moving")
    once = load_npz(tmp_path / "a" / C.preprocess(rows, tmp_path / "a", progress=False)["file"][0])
    per = load_npz(tmp_path / "b" / C.preprocess(rows, tmp_path / "b", align="per-frame", progress=False)["file"][0])
    # Same onset frame, same transform fitted on it.
    np.testing.assert_array_equal(once["frames"][0], per["frames"][0])

    def drift(frames):   # mean absolute difference of each frame from the first
        return np.array([np.abs(frame.astype(int) - frames[0]).mean() for frame in frames])

    one_pixel = np.abs(per["frames"][0][:, 1:].astype(int) - per["frames"][0][:, :-1]).mean()
    # per-frame follows the face over 9 px of motion, up to landmark jitter (about one output pixel)
    assert drift(per["frames"]).max() < 1.5 * one_pixel
    # once keeps the onset's coordinates: the face drifts away
    assert drift(once["frames"])[-1] > 2 * drift(per["frames"])[-1]
    # once: the frame moved by 9 px in the input moves by 9 * scale px in the output
    scale = np.hypot(*once["transforms"][0][:, 0])
    shifted = cv2.warpAffine(once["frames"][0], np.float64([[1, 0, -9 * scale], [0, 1, 0]]), (64, 64),
                             borderValue=128)
    assert np.abs(shifted[:, 8:50].astype(int) - once["frames"][-1][:, 8:50]).mean() < 0.8 * one_pixel
    assert len({t.tobytes() for t in per["transforms"]}) == 8


def test_per_frame_falls_back_and_fails_without_a_first_face(corpus, tmp_path):
    rows = frame_of(corpus, "blank_middle", "blank_onset", "mixed")
    report = by_key(C.preprocess(rows, tmp_path, align="per-frame", lenient=True, progress=False))
    assert report["blankmiddle"]["status"] == "ok"
    assert "fallback transform on frame 49 (no face; used frame 48's)" in report["blankmiddle"]["notes"]
    clip = load_npz(tmp_path / report["blankmiddle"]["file"])
    np.testing.assert_array_equal(clip["transforms"][3], clip["transforms"][2])
    assert "fallback transform on frame 49" in str(clip["notes"])
    assert report["blankonset"]["status"] == "failed"
    assert "no face in the first sampled frame" in report["blankonset"]["reason"]
    assert report["mixed"]["status"] == "ok"    # a transform per frame copes with mixed sizes


def test_official_sampling_skips_short_clips(corpus, tmp_path):
    rows = frame_of(corpus, "moving", "short")
    with pytest.raises(C.PreprocessIncomplete) as raised:
        C.preprocess(rows, tmp_path, sampling="official", progress=False)
    report = by_key(raised.value.report)
    assert report["short"]["status"] == "skipped"
    assert report["short"]["reason"] == "official sampling needs at least 8 frames, the folder has 5"
    assert report["moving"]["status"] == "ok"
    clip = load_npz(tmp_path / report["moving"]["file"])
    np.testing.assert_array_equal(clip["frame_numbers"], range(101, 109))    # 10 // 8 = 1
    assert (tmp_path / L.REPORT_FILE).exists()          # strict still writes everything first


def test_resume_does_no_work(corpus, tmp_path):
    rows = frame_of(corpus, "moving", "short", "blank_middle", "corrupt")
    first = C.preprocess(rows, tmp_path, lenient=True, progress=False)
    assert first.attrs["computed"] == 4 and not first["cached"].any()
    ok_files = [tmp_path / f for f in first["file"] if f]
    stamps = {p: os.stat(p).st_mtime_ns for p in ok_files}
    second = C.preprocess(rows, tmp_path, lenient=True, progress=False)
    assert second.attrs["computed"] == 1                # only the failed clip is tried again
    assert list(second["cached"]) == [True, True, True, False]
    assert {p: os.stat(p).st_mtime_ns for p in ok_files} == stamps
    assert (second["notes"] == first["notes"]).all()    # notes come back from the npz
    good = C.preprocess(rows.iloc[:3], tmp_path, progress=False)
    assert good.attrs["computed"] == 0
    # A damaged cache file is made again.
    ok_files[0].write_bytes(b"garbage")
    again = C.preprocess(rows.iloc[:3], tmp_path, progress=False)
    assert again.attrs["computed"] == 1 and load_npz(ok_files[0])["frames"].shape == (8, 64, 64)


def test_file_names_depend_on_row_and_parameters(corpus, tmp_path):
    row = corpus[1]["moving"]
    params = K.PreprocessParams()
    name = K.clip_file_name(row, params)
    assert name == K.clip_file_name(row.copy(), K.PreprocessParams())
    assert name != K.clip_file_name(row, K.PreprocessParams(size=32))
    assert name != K.clip_file_name(row, K.PreprocessParams(align="per-frame"))
    frames = [["img101.jpg", 5120, 1_700_000_000_000_000_000]]      # name, size, mtime_ns
    assert name != K.clip_file_name(row, params, frames)
    assert K.clip_file_name(row, params, [[*frames[0][:2], frames[0][2] + 1]]) != K.clip_file_name(row, params, frames)
    moved_onset = row.copy()
    moved_onset["onset"] += 1
    assert name != K.clip_file_name(moved_onset, params) and K.row_key(moved_onset) != K.row_key(row)
    relabelled = row.copy()
    relabelled["label"] = "surprise"
    assert K.clip_file_name(relabelled, params) == name and K.row_key(relabelled) == K.row_key(row)
    report = C.preprocess(frame_of(corpus, "moving"), tmp_path, frames=4, size=32, progress=False)
    clip = load_npz(tmp_path / report["file"][0])
    assert clip["frames"].shape == (4, 32, 32) and clip["dynamic_image"].shape == (32, 32)
    with pytest.raises(ValueError, match="frames must be >= 2"):
        C.preprocess(frame_of(corpus, "moving"), tmp_path, frames=1, progress=False)
    with pytest.raises(ValueError, match="unknown align"):
        C.preprocess(frame_of(corpus, "moving"), tmp_path, align="never", progress=False)


def test_workers_give_identical_files(corpus, tmp_path):
    rows = frame_of(corpus, "moving", "short", "blank_middle", "corrupt", "mixed")
    serial = C.preprocess(rows, tmp_path / "w1", workers=1, lenient=True, progress=False)
    parallel = C.preprocess(rows, tmp_path / "w2", workers=2, lenient=True, progress=False)
    pd.testing.assert_frame_equal(serial, parallel, check_like=False)
    for name in serial["file"]:
        if name:
            assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    assert (tmp_path / "w1" / L.INDEX_FILE).read_bytes() == (tmp_path / "w2" / L.INDEX_FILE).read_bytes()


def test_cli_exit_codes(corpus, tmp_path, capsys):
    good = Manifest(frame_of(corpus, "moving", "short"), protocol="test", classes=CLASSES)
    mixed = Manifest(frame_of(corpus, "moving", "corrupt"), protocol="test", classes=CLASSES)
    write_manifest(good, tmp_path / "good.csv")
    write_manifest(mixed, tmp_path / "mixed.csv")
    cache = str(tmp_path / "cache")

    assert cli_main(["preprocess", "--manifest", str(tmp_path / "good.csv"), "--cache", cache]) == 0
    out = capsys.readouterr().out
    assert "2 clips: 2 ok (0 from cache), 0 skipped, 0 failed" in out

    argv = ["preprocess", "--manifest", str(tmp_path / "mixed.csv"), "--cache", cache]
    assert cli_main(argv) == C.EXIT_INCOMPLETE == 4
    captured = capsys.readouterr()
    assert "2 clips: 1 ok (1 from cache), 0 skipped, 1 failed" in captured.out
    assert "unreadable frame" in captured.err
    assert cli_main(argv + ["--lenient"]) == 0
    assert cli_main(["preprocess", "--manifest", str(tmp_path / "good.csv"), "--cache", cache,
                     "--sampling", "official"]) == 4
    assert cli_main(["preprocess", "--manifest", str(tmp_path / "nope.csv"), "--cache", cache]) == 2
    assert "no such manifest" in capsys.readouterr().err
