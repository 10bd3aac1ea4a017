"""Faults of manifests and paths (fdpkit.data.manifest): escaping frame_dirs, edited CSVs, bad sidecars,
bad cell types. No file is read but the manifest's own (except the symlink checks)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fdpkit.data.manifest import (COLUMNS, ManifestError, frame_folder, meta_path, read_manifest, validate)

from faultkit import manifest_row, write_manifest_csv

CLASSES = ["happiness", "surprise"]


def rows(tmp_path, **changes) -> pd.DataFrame:
    row = {**manifest_row(tmp_path, "01", "EP01", list(range(1, 9))), **changes}
    return pd.DataFrame([row], columns=list(COLUMNS))


@pytest.mark.parametrize("frame_dir, why", [
    ("../outside", "escapes the dataset root"),
    ("sub01/../../outside", "escapes the dataset root"),
    ("sub01\\..\\..\\outside", "escapes the dataset root"),
    ("/etc", "is absolute"),
    ("C:/data/sub01", "is absolute"),
    ("\\\\server\\share\\sub01", "is absolute"),
])
def test_frame_dir_escaping_the_root_is_refused_by_validation(tmp_path, frame_dir, why):
    with pytest.raises(ManifestError, match=rf"casme2 subject 01 clip EP01: frame_dir .* {why}"):
        validate(rows(tmp_path, frame_dir=frame_dir), CLASSES)
    row = rows(tmp_path, frame_dir=frame_dir).iloc[0]
    with pytest.raises(ManifestError, match=why):
        frame_folder(row)


def test_frame_dir_escaping_through_a_symlink_is_refused_at_resolution(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "EP01").mkdir(parents=True)
    root.mkdir()
    (root / "sub01").symlink_to(outside, target_is_directory=True)
    row = rows(root).iloc[0]                     # frame_dir sub01/EP01: fine on paper
    validate(rows(root), CLASSES)
    with pytest.raises(ManifestError, match=r"resolves to .*outside.*outside the dataset root"):
        frame_folder(row)
    (root / "sub02").mkdir()                     # a symlink that stays inside the root is fine
    (root / "sub03").symlink_to(root / "sub02", target_is_directory=True)
    assert frame_folder(rows(root, frame_dir="sub03").iloc[0]) == root / "sub03"


def test_relative_root_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="root 'data/casme2' is not an absolute path"):
        validate(rows(tmp_path, root="data/casme2"), CLASSES)


def test_manifest_edited_after_writing_is_refused_by_its_hash(tmp_path):
    path = write_manifest_csv(tmp_path / "m.csv", [manifest_row(tmp_path, "01", "EP01", list(range(1, 9)))],
                              CLASSES)
    read_manifest(path)
    text = path.read_text()
    path.write_text(text.replace(",1,8,8,1,4,8,", ",1,8,8,2,4,8,"))   # onset 1 -> 2
    assert path.read_text() != text
    with pytest.raises(ManifestError, match=r"content differs from the hash .*re-run `fdpkit manifest`"):
        read_manifest(path)


@pytest.mark.parametrize("damage, message", [
    ("missing", "sidecar m.csv.meta.json is missing"),
    ("garbage", "cannot read its sidecar"),
    ("no_hash", "lacks manifest_sha256"),
])
def test_missing_or_corrupt_sidecar_is_a_manifest_error(tmp_path, damage, message):
    path = write_manifest_csv(tmp_path / "m.csv", [manifest_row(tmp_path, "01", "EP01", list(range(1, 9)))],
                              CLASSES)
    meta = meta_path(path)
    if damage == "missing":
        meta.unlink()
    elif damage == "garbage":
        meta.write_text("{oops")
    else:
        data = json.loads(meta.read_text())
        del data["manifest_sha256"]
        meta.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_undecodable_manifest_is_a_manifest_error(tmp_path):
    path = write_manifest_csv(tmp_path / "m.csv", [manifest_row(tmp_path, "01", "EP01", list(range(1, 9)))],
                              CLASSES)
    path.write_bytes(path.read_bytes().replace(b"EP01", b"EP\xff1"))
    with pytest.raises(ManifestError, match="not a readable manifest CSV"):
        read_manifest(path, check_hash=False)


@pytest.mark.parametrize("changes, message", [
    ({"onset": "five"}, r"column onset must be a whole number, got 'five'"),
    ({"apex": 4.5}, r"column apex must be a whole number"),
    ({"onset": 6, "apex": 4}, r"onset/apex/offset out of order: 6/4/8"),
    ({"offset": 12}, r"onset..offset 1..12 outside the frames on disk 1..8"),
    ({"first_frame": 9}, r"first_frame 9 is after last_frame 8"),
    ({"n_frames": 20}, r"n_frames 20 is more than the frame numbers 1..8 allow"),
    ({"label": "fear"}, r"label 'fear' is not a class"),
    ({"clip_uid": "casme2/01/other"}, r"clip_uid 'casme2/01/other' does not match"),
])
def test_bad_cells_are_named(tmp_path, changes, message):
    with pytest.raises(ManifestError, match=message):
        validate(rows(tmp_path, **changes), CLASSES)


def test_missing_columns_and_duplicate_clips_are_named(tmp_path):
    with pytest.raises(ManifestError, match="missing columns: onset, apex"):
        validate(rows(tmp_path).drop(columns=["onset", "apex"]), CLASSES)
    twice = pd.concat([rows(tmp_path), rows(tmp_path)])
    with pytest.raises(ManifestError, match=r"duplicate clip id casme2/01/EP01 \(2 rows\)"):
        validate(twice, CLASSES)

