"""Pixel-level faults through `fdpkit.data.preprocess.cache.preprocess`: every bad clip becomes a report row
(status + reason naming the file), never a crash; good clips are made whatever happens to the others.

Frames are crops of skimage's astronaut (dlib finds the face) in a CASME II-style folder under a
non-ASCII path; one clip per fault.
"""

from __future__ import annotations

import errno
import os
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from fdpkit import io
from fdpkit.cli import main as cli_main
from fdpkit.data.preprocess import cache as C
from fdpkit.data.preprocess import lookup as L
from fdpkit.data.manifest import COLUMNS, ManifestError

from faultkit import PREPROCESS, blank, encode, face, manifest_row, read_only, write_frames, write_manifest_csv

CLASSES = ["happiness", "surprise"]


def frames(n: int = 8, **kw) -> list[np.ndarray]:
    return [face(dx=k % 3, **kw) for k in range(n)]


def damaged(index: int, data: bytes, ext: str = ".jpg") -> list:
    out: list = [encode(f, ext) for f in frames()]
    out[index] = data
    return out


JPEG, PNG = encode(face()), encode(face(), ".png")
# clip -> (frames, file name pattern, expected status, reason regex)
CLIPS = {
    "EP01_ok": (frames(), "img{}.jpg", "ok", r"^$"),
    "EP02_grey": ([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames()], "img{}.jpg", "ok", r"^$"),
    "EP03_grey_and_colour": ([f if k % 2 else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for k, f in enumerate(frames())],
                             "img{}.jpg", "ok", r"^$"),
    "EP04_png_named_jpg": ([encode(f, ".png") for f in frames()], "img{}.jpg", "ok", r"^$"),
    "EP05_truncated_png": (damaged(3, PNG[:len(PNG) // 2], ".png"), "img{}.png", "failed",
                           r"unreadable frame .*img4\.png"),
    "EP06_garbage": (damaged(3, b"\x00not an image" * 20), "img{}.jpg", "failed", r"unreadable frame .*img4\.jpg"),
    "EP07_zero_byte": (damaged(3, b""), "img{}.jpg", "failed", r"unreadable frame .*img4\.jpg"),
    "EP08_mixed_sizes": (frames(5) + [face(height=250)] + frames(2), "img{}.jpg", "failed",
                         r"mixed frame sizes: img1\.jpg is 230x240, img6\.jpg is 230x250"),
    "EP09_no_face": ([blank()] + frames(7), "img{}.jpg", "failed", r"no face in the onset frame .*img1\.jpg"),
    "EP10_short": (frames(5), "img{}.jpg", "ok", r"^$"),
    "EP11_missing": (None, "img{}.jpg", "failed", r"frame folder not found: .*EP11_missing"),
}
TRUNCATED_JPEG = ("EP12_truncated_jpg", damaged(3, JPEG[:len(JPEG) // 2]), r"(unreadable|truncated|corrupt).*img4\.jpg")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """(rows, manifest path, report of a lenient preprocess into `cache`)."""
    base = tmp_path_factory.mktemp("pixel_faults")
    root = base / "données" / "主体 casme2"
    rows = []
    for clip, (images, name, _, _) in {**CLIPS, TRUNCATED_JPEG[0]: (TRUNCATED_JPEG[1], "img{}.jpg", 0, 0)}.items():
        label = "happiness" if len(rows) % 2 else "surprise"
        if images is None:
            rows.append(manifest_row(root, "01", clip, list(range(1, 9)), label))
            continue
        numbers = write_frames(root / "sub01" / clip, images, name=name)
        rows.append(manifest_row(root, "01", clip, numbers, label))
    outside = base / "outside" / "EP13_symlinked"                 # frames outside the root
    write_frames(outside, frames())
    (root / "sub02").symlink_to(outside.parent, target_is_directory=True)
    rows.append(manifest_row(root, "02", "EP13_symlinked", list(range(1, 9))))
    manifest = write_manifest_csv(base / "manifest.csv", rows, CLASSES)
    cache = base / "cache"
    report = C.preprocess(manifest, cache, lenient=True, progress=False, **PREPROCESS)
    return pd.DataFrame(rows, columns=list(COLUMNS)), manifest, cache, report


def report_row(report, clip):
    found = report[report["clip_uid"].str.endswith("/" + clip)]
    assert len(found) == 1
    return found.iloc[0]


@pytest.mark.parametrize("clip", list(CLIPS))
def test_each_pixel_fault_becomes_a_named_report_row(faulty, clip):
    _, _, cache, report = faulty
    _, _, status, reason = CLIPS[clip]
    row = report_row(report, clip)
    assert row["status"] == status, (row["status"], row["reason"])
    assert re.search(reason, row["reason"]), row["reason"]
    if status == "ok":
        data = io.load_npz(cache / row["file"])
        assert data["frames"].shape == (8, 32, 32) and data["frames"].dtype == np.uint8
    else:
        assert row["file"] == ""


def test_short_clip_repeats_frames_with_a_note(faulty):
    row = report_row(faulty[3], "EP10_short")
    assert "repeated frames: 5 distinct frame(s) for 8 samples" in row["notes"]


def test_truncated_jpeg_is_reported_not_silently_decoded(faulty):
    """libjpeg decodes a truncated JPEG with a grey lower half and only a warning on stderr."""
    row = report_row(faulty[3], TRUNCATED_JPEG[0])
    assert row["status"] == "failed" and re.search(TRUNCATED_JPEG[2], row["reason"]), dict(row)


def test_frame_folder_symlinked_out_of_the_root_is_refused_at_preprocessing(faulty):
    """frame_dir `sub02/EP13_symlinked` is fine on paper; sub02 is a symlink out of the root."""
    row = report_row(faulty[3], "EP13_symlinked")
    assert row["status"] == "failed" and "outside the dataset root" in row["reason"], dict(row)


def test_frame_files_symlinked_out_of_the_root_are_refused_at_preprocessing(tmp_path):
    """The clip folder is inside the root, but its frame files are links to files outside it."""
    root, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    numbers = write_frames(outside, frames())
    folder = root / "sub01" / "EP14_linked_files"
    folder.mkdir(parents=True)
    for number in numbers:
        (folder / f"img{number}.jpg").symlink_to(outside / f"img{number}.jpg")
    manifest = write_manifest_csv(tmp_path / "m.csv", [manifest_row(root, "01", "EP14_linked_files", numbers)],
                                  CLASSES)
    report = C.preprocess(manifest, tmp_path / "cache", lenient=True, progress=False, **PREPROCESS)
    row = report.iloc[0]
    assert row["status"] == "failed", dict(row)
    assert re.search(r"frame file img\d+\.jpg in .*EP14_linked_files resolves to .*elsewhere.* outside the "
                     r"dataset root", row["reason"]), row["reason"]
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_report_accounts_for_every_row_in_manifest_order(faulty):
    rows, _, cache, report = faulty
    assert list(report["clip_uid"]) == list(rows["clip_uid"])
    assert set(report["status"]) <= {"ok", "skipped", "failed"}
    assert (report.loc[report["status"] != "ok", "reason"].str.len() > 0).all()
    index = L.read_index(cache)
    assert list(index["clip_uid"]) == list(rows["clip_uid"])
    assert sorted(p.name for p in cache.glob("*.npz")) == sorted(report.loc[report["status"] == "ok", "file"])


def test_strict_by_default_raises_after_writing_the_report(faulty, tmp_path):
    rows, _, _, _ = faulty
    some = rows[rows["clip"].isin(["EP01_ok", "EP07_zero_byte"])]
    with pytest.raises(C.PreprocessIncomplete, match=r"2 clips: 1 ok .*1 failed") as info:
        C.preprocess(some, tmp_path / "cache", progress=False, **PREPROCESS)
    assert list(info.value.report["status"]) == ["ok", "failed"]
    assert (tmp_path / "cache" / L.REPORT_FILE).exists() and (tmp_path / "cache" / L.INDEX_FILE).exists()


def test_official_sampling_skips_a_clip_shorter_than_T_with_a_reason(faulty, tmp_path):
    rows, _, _, _ = faulty
    report = C.preprocess(rows[rows["clip"] == "EP10_short"], tmp_path / "cache", sampling="official",
                          lenient=True, progress=False, **PREPROCESS)
    assert report.iloc[0]["status"] == "skipped"
    assert "official sampling needs at least 8 frames, the folder has 5" in report.iloc[0]["reason"]


def test_cli_counts_reconcile_and_strict_exit_code(faulty, capsys):
    rows, manifest, cache, _ = faulty
    assert cli_main(["preprocess", "--manifest", str(manifest), "--cache", str(cache), "--frames", "8",
                     "--size", "32"]) == C.EXIT_INCOMPLETE
    captured = capsys.readouterr()
    match = re.search(r"(\d+) clips: (\d+) ok \((\d+) from cache\), (\d+) skipped, (\d+) failed", captured.out)
    total, ok, reused, skipped, failed = map(int, match.groups())
    report = L.read_report(cache)
    assert total == ok + skipped + failed == len(rows) == len(report)
    assert (ok, skipped, failed) == tuple(int((report["status"] == s).sum()) for s in ("ok", "skipped", "failed"))
    assert reused == ok                                  # the fixture made them all already
    for _, row in report[report["status"] != "ok"].iterrows():
        assert f"{row['status']}: {row['clip_uid']}: {row['reason']}" in captured.err
    assert cli_main(["preprocess", "--manifest", str(manifest), "--cache", str(cache), "--frames", "8",
                     "--size", "32", "--lenient"]) == C.EXIT_OK


@pytest.mark.parametrize("frame_dir", ["../outside/EP13_symlinked", "/etc"])
def test_escaping_frame_dir_is_refused_before_any_work(faulty, tmp_path, frame_dir):
    rows, _, _, _ = faulty
    bad = rows.copy()
    bad.loc[0, "frame_dir"] = frame_dir
    with pytest.raises(ManifestError, match="escapes the dataset root|is absolute"):
        C.preprocess(bad, tmp_path / "cache", lenient=True, progress=False, **PREPROCESS)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_edited_manifest_row_is_reprocessed_not_served_stale(faulty, tmp_path):
    rows, _, _, _ = faulty
    one = rows[rows["clip"] == "EP01_ok"].reset_index(drop=True)
    cache = tmp_path / "cache"
    first = C.preprocess(one, cache, progress=False, **PREPROCESS)
    edited = one.copy()
    edited.loc[0, ["onset", "apex"]] = [2, 4]
    assert L.lookup(cache, edited).iloc[0]["status"] == "stale"   # the old index refuses to serve it
    second = C.preprocess(edited, cache, progress=False, **PREPROCESS)
    assert second.iloc[0]["file"] != first.iloc[0]["file"] and not second.iloc[0]["cached"]
    assert list(io.load_npz(cache / second.iloc[0]["file"])["frame_numbers"])[0] == 2
    assert L.lookup(cache, edited).iloc[0]["status"] == "ok"
    assert C.preprocess(edited, cache, progress=False, **PREPROCESS).iloc[0]["cached"]


def _disk_full_on(monkeypatch, pattern: str):
    real = io._write_all

    def write_all(fd, data):
        if re.search(pattern, os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))):
            real(fd, memoryview(data)[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(io, "_write_all", write_all)


def test_disk_full_on_clip_writes_fails_those_rows_and_keeps_nothing_half_written(faulty, tmp_path, monkeypatch):
    rows, _, _, _ = faulty
    some = rows[rows["clip"].isin(["EP01_ok", "EP02_grey"])]
    cache = tmp_path / "cache"
    _disk_full_on(monkeypatch, r"\.npz\.tmp-")
    report = C.preprocess(some, cache, lenient=True, progress=False, **PREPROCESS)
    assert list(report["status"]) == ["failed", "failed"]
    for reason in report["reason"]:
        assert "No space left on device" in reason and re.search(r"writing .*\.npz failed", reason), reason
    assert not list(cache.glob("*.npz")) and not [p for p in cache.iterdir() if ".tmp-" in p.name]
    assert (cache / L.REPORT_FILE).exists()


def test_disk_full_on_the_index_is_a_clear_error_and_keeps_the_old_index(faulty, tmp_path, monkeypatch):
    rows, _, _, _ = faulty
    some = rows[rows["clip"] == "EP01_ok"]
    cache = tmp_path / "cache"
    C.preprocess(some, cache, progress=False, **PREPROCESS)
    before = {name: (cache / name).read_bytes() for name in (L.INDEX_FILE, L.REPORT_FILE)}
    _disk_full_on(monkeypatch, r"^\.(index|preprocess_report)\.csv\.tmp-")
    with pytest.raises(OSError, match=r"No space left on device .*writing .*\.csv failed") as info:
        C.preprocess(rows[rows["clip"].isin(["EP01_ok", "EP02_grey"])], cache, progress=False, **PREPROCESS)
    assert info.value.errno == errno.ENOSPC
    assert {name: (cache / name).read_bytes() for name in before} == before
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]
    for path in cache.glob("*.npz"):
        io.load_npz(path)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cache_that_is_a_file_is_one_line_and_exit_2(faulty, tmp_path, capsys):
    _, manifest, _, _ = faulty
    cache = tmp_path / "cache.npz"
    cache.write_bytes(b"not a folder")
    for verb, extra in (("preprocess", []), ("loso", ["--out", str(tmp_path / "run")])):
        assert cli_main([verb, "--manifest", str(manifest), "--cache", str(cache), *extra]) == 2, verb
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"fdpkit {verb}: cache folder {cache} is a file, not a folder"), line
    assert cache.read_bytes() == b"not a folder" and sorted(os.listdir(tmp_path)) == ["cache.npz"]


def test_read_only_cache_fails_in_one_line_before_any_clip_is_made(faulty, tmp_path, monkeypatch, capsys):
    _, manifest, _, _ = faulty
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(monkeypatch, cache)
    made = []
    monkeypatch.setattr("fdpkit.data.preprocess.worker.make_clip", lambda task: made.append(task))
    argv = ["preprocess", "--manifest", str(manifest), "--cache", str(cache), "--frames", "8", "--size", "32"]
    assert cli_main(argv) == 7
    assert _one_line(capsys.readouterr().err) == (
        f"fdpkit preprocess: cannot write into {cache}: {cache} is not writable (permission denied); "
        "make it writable or choose another output folder")
    assert not made and os.listdir(cache) == []
    assert cli_main(argv[:3] + ["--cache", str(cache / "sub")] + argv[5:]) == 7
    assert f"cannot create the folder {cache / 'sub'}: {cache} is not writable" in capsys.readouterr().err


def _copy_clip(rows, clip: str, root):
    """The clip's frames copied under a new root, and its row pointing there (frames to change)."""
    import shutil

    row = rows[rows["clip"] == clip].reset_index(drop=True).copy()
    shutil.copytree(os.path.join(row.loc[0, "root"], row.loc[0, "frame_dir"]), root / row.loc[0, "frame_dir"])
    row["root"] = str(root)
    return row, root / row.loc[0, "frame_dir"]


def test_a_frame_changed_after_preprocessing_reprocesses_its_clip(faulty, tmp_path):
    rows, _, _, _ = faulty
    row, folder = _copy_clip(rows, "EP01_ok", tmp_path / "corpus")
    cache = tmp_path / "cache"
    first = C.preprocess(row, cache, progress=False, **PREPROCESS)
    assert C.preprocess(row, cache, progress=False, **PREPROCESS).iloc[0]["cached"]   # unchanged: reused
    (folder / "img5.jpg").write_bytes(encode(face(dx=6, dy=4)))                       # the face moved
    second = C.preprocess(row, cache, progress=False, **PREPROCESS)
    assert second.iloc[0]["status"] == "ok" and not second.iloc[0]["cached"]
    assert second.iloc[0]["file"] != first.iloc[0]["file"]
    changed = io.load_npz(cache / second.iloc[0]["file"])["frames"]
    assert not np.array_equal(changed, io.load_npz(cache / first.iloc[0]["file"])["frames"])
    # a clip that now fails (no face in the onset frame) does not stay "ok"
    (folder / "img1.jpg").write_bytes(encode(blank()))
    third = C.preprocess(row, cache, lenient=True, progress=False, **PREPROCESS)
    assert third.iloc[0]["status"] == "failed" and "no face in the onset frame" in third.iloc[0]["reason"]
    assert L.lookup(cache, row).iloc[0]["status"] == "failed"


def test_only_the_frames_read_are_in_the_key(faulty, tmp_path):
    """official sampling of 8 of 8 frames reads them all; onset-offset sampling of frames 1..4
    (onset 1, offset 4) never reads frame 8, so changing it keeps that clip's file."""
    rows, _, _, _ = faulty
    row, folder = _copy_clip(rows, "EP01_ok", tmp_path / "corpus")
    row.loc[0, ["onset", "apex", "offset"]] = [1, 2, 4]
    cache = tmp_path / "cache"
    first = C.preprocess(row, cache, progress=False, **PREPROCESS)
    (folder / "img8.jpg").write_bytes(encode(face(dx=6)))
    again = C.preprocess(row, cache, progress=False, **PREPROCESS)
    assert again.iloc[0]["cached"] and again.iloc[0]["file"] == first.iloc[0]["file"]


def test_damaged_cache_files_are_named_before_a_run_and_remade_by_preprocess(faulty, tmp_path):
    """A truncated npz and one with a flipped byte (zip intact, only its CRC tells): the check a run
    makes first names both clips and files; `preprocess` re-makes them (byte-identical)."""
    import shutil

    rows, _, source, report = faulty
    ok = report[report["status"] == "ok"]
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    (uid_a, file_a), (uid_b, file_b) = ok[["clip_uid", "file"]].head(2).itertuples(index=False)
    data = (cache / file_a).read_bytes()
    (cache / file_a).write_bytes(data[:len(data) // 2])
    data = bytearray((cache / file_b).read_bytes())
    data[len(data) // 2] ^= 0x01
    (cache / file_b).write_bytes(bytes(data))
    used = rows[rows["clip_uid"].isin(ok["clip_uid"])]
    with pytest.raises(L.CacheFileError, match=rf"^2 of {len(used)} clip\(s\) cannot be read") as info:
        L.check_cache_files(cache, used)
    for uid, name in ((uid_a, file_a), (uid_b, file_b)):
        assert f"{uid}: {cache / name}: not a readable npz file" in str(info.value)
    again = C.preprocess(used, cache, progress=False, **PREPROCESS)
    assert int((~again["cached"]).sum()) == 2
    for name in (file_a, file_b):
        assert (cache / name).read_bytes() == (source / name).read_bytes()
    assert (L.check_cache_files(cache, used)["status"] == "ok").all()
