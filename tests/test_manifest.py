import pandas as pd
import pytest

from fdpkit.data.manifest import (
    Manifest,
    ManifestError,
    manifest_hash,
    meta_path,
    read_manifest,
    validate,
    write_manifest,
)

CLASSES = ["happiness", "others"]


def make_row(**changes):
    row = dict(
        dataset="casme2", subject="01", subject_uid="casme2/01", clip="EP02_01f",
        clip_uid="casme2/01/EP02_01f", root="/data/CASME2", frame_dir="sub01/EP02_01f",
        first_frame=40, last_frame=90, n_frames=51, onset=46, apex=59, offset=86,
        apex_estimated=False, emotion="happiness", label="happiness", aus="12", fixes="",
    )
    row.update(changes)
    return row


def frame(*rows):
    return pd.DataFrame(list(rows))


def test_valid_rows_pass_and_keep_types():
    rows = validate(frame(make_row(), make_row(clip="EP03", clip_uid="casme2/01/EP03", label="others")), CLASSES)
    assert rows["onset"].dtype == "int64" and rows["apex_estimated"].dtype == bool


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(onset=60), "out of order"),
        (dict(offset=95), "outside the frames on disk"),
        (dict(frame_dir="../escape/x"), "escapes the dataset root"),
        (dict(frame_dir="/abs/sub01"), "absolute"),
        (dict(label="fear"), "not a class"),
        (dict(clip_uid="casme2/01/other"), "does not match"),
        (dict(onset="abc"), "whole number"),
    ],
)
def test_each_problem_is_named_with_its_row(changes, message):
    with pytest.raises(ManifestError, match=message) as error:
        validate(frame(make_row(**changes)), CLASSES)
    assert "subject 01 clip EP02_01f" in str(error.value)


def test_duplicate_clip_ids_rejected():
    with pytest.raises(ManifestError, match="duplicate clip id casme2/01/EP02_01f"):
        validate(frame(make_row(), make_row()), CLASSES)


def test_missing_column_named():
    rows = frame(make_row()).drop(columns=["apex"])
    with pytest.raises(ManifestError, match="missing columns: apex"):
        validate(rows)


def test_write_read_round_trip_and_hash(tmp_path):
    manifest = Manifest(rows=frame(make_row()), protocol="casme2_5class", classes=CLASSES)
    path = write_manifest(manifest, tmp_path / "m.csv")
    back = read_manifest(path)
    assert back.classes == CLASSES and back.protocol == "casme2_5class"
    assert manifest_hash(back.rows) == manifest_hash(manifest.rows)
    assert meta_path(path).exists()


def test_edited_manifest_detected_by_hash(tmp_path):
    path = write_manifest(Manifest(rows=frame(make_row()), protocol="p", classes=CLASSES), tmp_path / "m.csv")
    path.write_text(path.read_text().replace(",46,", ",47,"))
    with pytest.raises(ManifestError, match="differs from the hash"):
        read_manifest(path)


def test_hash_changes_with_any_cell():
    assert manifest_hash(frame(make_row())) != manifest_hash(frame(make_row(apex=60)))


def test_clip_ids_differing_only_in_case_are_duplicates():
    rows = frame(make_row(), make_row(clip="ep02_01F", clip_uid="casme2/01/ep02_01F"))
    with pytest.raises(ManifestError, match=r"duplicate clip id casme2/01/EP02_01f / casme2/01/ep02_01F \(2 rows; "
                                            r"ids are compared ignoring case\)"):
        validate(rows, CLASSES)


def test_notes_column_is_optional_on_input_and_kept():
    rows = validate(frame(make_row()).drop(columns=[]), CLASSES)
    assert rows["notes"].tolist() == [""]
    noted = validate(frame(make_row(notes="missing frames 50 (1 of 41)")), CLASSES)
    assert noted["notes"].tolist() == ["missing frames 50 (1 of 41)"]
