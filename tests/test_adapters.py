"""Corpus adapters, protocols and fixes: tiny vendor-format corpora built in tmp_path."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_vendor as V  # noqa: E402

from fdpkit.cli import main  # noqa: E402
from fdpkit.data import protocols as P  # noqa: E402
from fdpkit.data.adapters import (AdapterError, build_composite, build_manifest,  # noqa: E402
                                  find_annotations, skipped_path)
from fdpkit.data.manifest import read_manifest  # noqa: E402


def reconciled(summary):
    return summary["rows_read"] == summary["rows_kept"] + summary["rows_excluded"] + summary["rows_skipped"]


def by_clip(manifest):
    return manifest.rows.set_index("clip")


# ------------------------------------------------------------------------------------ each corpus
def test_casme2_default_protocol_blank_columns_and_missing_apex(tmp_path):
    manifest, skipped, summary = build_manifest("casme2", V.make_casme2(tmp_path))
    assert manifest.protocol == "casme2_5class"
    assert manifest.classes == ["happiness", "disgust", "repression", "surprise", "others"]
    rows = by_clip(manifest)
    assert list(rows["subject"].unique()) == ["01", "02", "03"]
    assert rows.loc["EP02_01f", "frame_dir"] == "sub01/EP02_01f"
    assert (rows.loc["EP02_01f", "first_frame"], rows.loc["EP02_01f", "last_frame"]) == (8, 22)
    assert rows.loc["EP03_02", "apex"] == (5 + 12) // 2 and rows.loc["EP03_02", "apex_estimated"]
    assert "rule" in rows.loc["EP03_02", "fixes"] and not rows.loc["EP02_01f", "apex_estimated"]
    assert skipped.to_dict("records") == [{
        "dataset": "casme2", "sheet_row": 7, "subject": "03", "clip": "EP09_03", "emotion": "fear",
        "status": "excluded", "reason": "not in protocol (casme2_5class: emotion 'fear' not used)"}]
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_excluded"]) == (6, 5, 1) and reconciled(summary)


def test_casme2_three_class(tmp_path):
    manifest, skipped, summary = build_manifest("casme2", V.make_casme2(tmp_path), protocol="casme2_3class")
    assert manifest.classes == ["negative", "positive", "surprise"]
    assert dict(zip(manifest.rows["clip"], manifest.rows.label)) == {
        "EP02_01f": "positive", "EP03_02": "negative", "EP01_11f": "negative", "EP06_01f": "surprise"}
    assert sorted(skipped["clip"]) == ["EP08_04", "EP09_03"] and reconciled(summary)


@pytest.mark.parametrize("pad", [False, True])
def test_samm_preamble_and_subject_ids(tmp_path, pad):
    manifest, skipped, summary = build_manifest("samm", V.make_samm(tmp_path, pad_subject=pad))
    assert manifest.protocol == "samm_5class"
    assert sorted(manifest.rows.subject.unique()) == ["006", "007", "011"]
    rows = by_clip(manifest)
    assert rows.loc["006_1_2", "frame_dir"] == "006/006_1_2" and rows.loc["006_1_2", "onset"] == 101
    assert rows.loc["011_2_1", "label"] == "other" and rows.loc["011_2_1", "emotion"] == "Others"
    assert list(skipped.sheet_row) == [len(V.SAMM_PREAMBLE) + 1 + 6]     # row numbers as Excel shows them
    assert reconciled(summary)


def test_samm_three_class_and_note_rows(tmp_path):
    root = V.make_samm(tmp_path)
    book = openpyxl.load_workbook(root / "SAMM_Micro_FACS_Codes_test.xlsx")
    book.active.append([])
    book.active.append(["Note: apex frames were re-checked in 2018"])    # a note below the table
    book.save(root / "SAMM_Micro_FACS_Codes_test.xlsx")
    manifest, skipped, summary = build_manifest("samm", root, protocol="samm_3class")
    assert by_clip(manifest).loc["011_2_4", "label"] == "negative"
    assert list(skipped.emotion) == ["Others"]
    assert summary["rows_read"] == 6 and summary["sources"]["samm"]["note_rows_ignored"] == 1


@pytest.mark.parametrize("header", [None, ["Participant", "Video name & expression number", "Onset", "Apex",
                                           "Offset", "AUs", "Estimated emotion", "Expression type",
                                           "Self-reported emotion"]])
def test_casme_sq_headerless_sheet_naming_sheets_and_macro_rows(tmp_path, header):
    manifest, skipped, summary = build_manifest("casme_sq", V.make_casme_sq(tmp_path, header=header))
    assert manifest.classes == ["positive", "negative", "surprise", "others"]
    rows = manifest.rows.set_index(["subject", "clip"])
    assert rows.loc[("s15", "disgust1_1"), "frame_dir"] == "rawpic/s15/15_0101disgustingteeth"
    assert rows.loc[("s16", "anger1_1"), "frame_dir"] == "rawpic/s16/16_0401angerboy"
    assert rows.loc[("s15", "anger1_1"), "offset"] == 2 * 13 - 10          # offset 0 -> apex + (apex - onset)
    assert "offset 0->16" in rows.loc[("s15", "anger1_1"), "fixes"]
    assert list(skipped["clip"]) == ["disgust1_2"] and "macro-expression" in skipped.reason[0]
    assert skipped.sheet_row[0] == (3 if header else 2) and reconciled(summary)


def test_casme_sq_three_class(tmp_path):
    manifest, skipped, _ = build_manifest("casme_sq", V.make_casme_sq(tmp_path), protocol="casme_sq_3class")
    assert manifest.classes == ["negative", "positive", "surprise"] and len(manifest.rows) == 4
    assert sorted(skipped["clip"]) == ["anger1_2", "disgust1_2"]


def test_casme3_duplicate_filenames_and_folder_case(tmp_path):
    manifest, skipped, summary = build_manifest("casme3", V.make_casme3(tmp_path))
    assert manifest.protocol == "casme3_7class" and len(manifest.rows) == 7 and skipped.empty
    rows = manifest.rows.set_index(["subject", "clip"])
    assert rows.loc[("spNO.1", "f_3"), "frame_dir"] == "data/spNo.1/f/color"
    assert rows.loc[("spNO.1", "f_20"), "label"] == "surprise"
    assert rows.loc[("spNO.1", "a"), "frame_dir"] == "data/spNo.1/a/color"
    assert rows.loc[("spNO.2", "b"), "label"] == "others"                     # 'Others' in the sheet


@pytest.mark.parametrize("protocol, n, classes", [
    ("casme3_4class", 7, ["positive", "negative", "surprise", "others"]),
    ("casme3_3class", 6, ["negative", "positive", "surprise"])])
def test_casme3_protocols(tmp_path, protocol, n, classes):
    manifest, skipped, summary = build_manifest("casme3", V.make_casme3(tmp_path), protocol=protocol)
    assert manifest.classes == classes and len(manifest.rows) == n and reconciled(summary)


def test_synthme_reads_through_casme2_path(tmp_path):
    root = V.make_synthme(tmp_path)
    assert find_annotations("synthme", root) == root / "SynthME-coding.xlsx"
    manifest, _, _ = build_manifest("synthme", root)
    assert manifest.protocol == "synthme_5class"
    assert manifest.classes == ["happiness", "disgust", "surprise", "repression", "others"]
    assert set(manifest.rows.dataset) == {"synthme"} and len(manifest.rows) == 10


def test_composite_namespaces_subjects_and_excludes_megc_clips(tmp_path):
    rows = [*V.CASME2_ROWS, (4, "EP12_01f", 3, 5, 8, "4", "disgust")]
    casme2 = V.make_casme2(tmp_path / "c2", rows=rows)
    manifest, skipped, summary = build_composite([("casme2", casme2, None), ("samm", V.make_samm(tmp_path / "s"))])
    assert manifest.classes == ["negative", "positive", "surprise"]
    assert {"casme2/01", "samm/006"} <= set(manifest.rows.subject_uid)
    megc = skipped[skipped["clip"] == "EP12_01f"].reason.iloc[0]
    assert megc.startswith("not in protocol") and "MEGC 2019" in megc
    assert set(summary["sources"]) == {"casme2", "samm"} and reconciled(summary)
    assert summary["rows_read"] == 7 + 6


# ------------------------------------------------------------------------------- variants
def test_renamed_columns_integer_and_padded_ids_png_and_cropped_names(tmp_path):
    header = ["Subject", "Filename", "", "Onset", "Apex", "Offset", None, "AUs", "Emotion"]
    rows = [("01", "EP02_01f", 10, 14, 20, "12", "happiness"), ("sub02", "EP01_11f", 3, 6, 9, "14", "Repression")]
    png = build_manifest("casme2", V.make_casme2(tmp_path / "a", rows=rows, header=header, frame_name="img{}.png"))[0]
    reg = build_manifest("casme2", V.make_casme2(tmp_path / "b", rows=rows, frame_name="reg_img{}.jpg"))[0]
    for manifest in (png, reg):
        assert list(manifest.rows.subject) == ["01", "02"] and list(manifest.rows.onset) == [10, 3]
        assert list(manifest.rows.label) == ["happiness", "repression"]


def test_frame_tree_inside_a_known_subfolder_and_ambiguous_trees(tmp_path):
    V.make_casme2(tmp_path / "CASME2-RAW")
    shutil.move(str(tmp_path / "CASME2-RAW" / "CASME2-coding-test.xlsx"), tmp_path)
    manifest, _, _ = build_manifest("casme2", tmp_path)
    assert manifest.rows.frame_dir.iloc[0] == "CASME2-RAW/sub01/EP02_01f"
    shutil.copytree(tmp_path / "CASME2-RAW", tmp_path / "Cropped")
    with pytest.raises(AdapterError, match="several frame trees"):
        build_manifest("casme2", tmp_path)


# -------------------------------------------------------------------------- strict / lenient
def _rm(path):
    shutil.rmtree(path)


def _empty(path):
    for f in path.iterdir():
        f.unlink()


BAD_ROWS = {  # name: (row edit or folder edit, sheet row, subject, clip, message)
    "missing folder": (lambda root: _rm(root / "sub02" / "EP06_01f"), 5, "02", "EP06_01f", "does not exist"),
    "no frames": (lambda root: _empty(root / "sub02" / "EP06_01f"), 5, "02", "EP06_01f", "holds no frame images"),
    "missing frame": (lambda root: (root / "sub02" / "EP01_11f" / "img7.jpg").unlink(), 4, "02", "EP01_11f",
                      "frame(s) 7 between onset and offset are missing"),
    "mixed names": (lambda root: V.write_frames(root / "sub01" / "EP02_01f", [12], "reg_img{}.jpg"), 2, "01",
                    "EP02_01f", "both have number 12"),
    "out of order": ({2: (1, "EP02_01f", 10, 22, 20, "12", "happiness")}, 2, "01", "EP02_01f",
                     "out of order: 10/22/20"),
    "outside frames": ({4: (2, "EP01_11f", 3, 6, 30, "14", "repression")}, 4, "02", "EP01_11f",
                       "outside the frames on disk 1..11"),
    "unknown emotion": ({6: (3, "EP08_04", 2, 5, 8, "4", "anger")}, 6, "03", "EP08_04", "unknown emotion 'anger'"),
    "duplicate clip": ({3: (1, "EP02_01f", 10, 14, 20, "12", "disgust")}, 3, "01", "EP02_01f",
                       "duplicate clip id casme2/01/EP02_01f (sheet rows 2, 3)"),
    "bad frame number": ({5: (2, "EP06_01f", "4a", 7, 11, "1+2", "surprise")}, 5, "02", "EP06_01f",
                         "onset '4a' is not a frame number"),
}


def _bad_corpus(tmp_path, case):
    edit = BAD_ROWS[case][0]
    rows = list(V.CASME2_ROWS)
    if isinstance(edit, dict):
        for sheet_row, row in edit.items():
            rows[sheet_row - 2] = row
    root = V.make_casme2(tmp_path, rows=rows, frames=False)
    for subject, clip, onset, _, offset, *_ in V.CASME2_ROWS:   # frames as the original sheet needs
        V.write_frames(root / f"sub{subject:02d}" / clip, range(max(1, onset - 2), offset + 3))
    if callable(edit):
        edit(root)
    return root


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_strict_mode_names_row_and_problem(tmp_path, case):
    _, sheet_row, subject, clip, message = BAD_ROWS[case]
    with pytest.raises(AdapterError) as error:
        build_manifest("casme2", _bad_corpus(tmp_path, case))
    text = str(error.value)
    assert f"CASME2-coding-test.xlsx row {sheet_row} (subject {subject}, clip {clip})" in text
    assert message in text


@pytest.mark.parametrize("case", ["missing folder", "unknown emotion", "duplicate clip", "mixed names"])
def test_lenient_mode_skips_rows_with_reason_and_counts_reconcile(tmp_path, case):
    _, sheet_row, subject, clip, message = BAD_ROWS[case]
    manifest, skipped, summary = build_manifest("casme2", _bad_corpus(tmp_path, case), lenient=True)
    bad = skipped[skipped.status == "skipped"]
    assert sheet_row in set(bad.sheet_row) and all(message in r for r in bad.reason)
    assert (subject, clip) not in set(zip(manifest.rows.subject, manifest.rows["clip"]))
    assert reconciled(summary) and summary["rows_skipped"] == len(bad)
    assert summary["rows_kept"] == len(manifest.rows)


def test_unreadable_and_headerless_spreadsheets(tmp_path):
    root = V.make_casme2(tmp_path)
    (root / "CASME2-coding-test.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(AdapterError, match="unreadable annotation spreadsheet"):
        build_manifest("casme2", root)
    header = ["Subject", "Filename", None, "Start", "ApexFrame", "OffsetFrame", None, "Action Units", "Emotion"]
    V.make_casme2(root, header=header)
    with pytest.raises(AdapterError, match=r"header row 1 lacks column\(s\) onset \(accepted spellings: onset: "):
        build_manifest("casme2", root)


def test_annotation_discovery_none_or_ambiguous(tmp_path):
    root = V.make_casme2(tmp_path)
    (root / "CASME2-coding-test.xlsx").rename(root / "CASME2-coding-20140508.xlsx")
    assert find_annotations("casme2", root).name == "CASME2-coding-20140508.xlsx"
    shutil.copy(root / "CASME2-coding-20140508.xlsx", root / "sub01" / "CASME2-coding-updated.xlsx")
    with pytest.raises(AdapterError, match="several annotation spreadsheets"):
        find_annotations("casme2", root)
    with pytest.raises(AdapterError, match="no annotation spreadsheet"):
        find_annotations("samm", V.write_frames(tmp_path / "empty", [1]))


# --------------------------------------------------------------------------------------- fixes
@pytest.fixture
def fixes_dir(tmp_path, monkeypatch):
    """A copy of data_manifests/ whose fixes/casme2.csv the test writes."""
    copy = tmp_path / "manifests"
    shutil.copytree(P.data_manifests_dir(), copy)
    monkeypatch.setenv(P.ENV_VAR, str(copy))

    def write(*lines):
        (copy / "fixes" / "casme2.csv").write_text("\n".join([",".join(P.FIX_COLUMNS), *lines]) + "\n")
    return write


def test_fixes_applied_logged_and_recorded(tmp_path, fixes_dir, caplog):
    fixes_dir("01,EP02_01f,,offset,20,19,offset one frame late (test)",
              ",,1,apex,missing,9,apex from optical flow (test),CASME2-coding-*",
              ",,0,aus,12,12+25,never applied: other edition,CASME2-coding-updated*",
              ",,4,onset,*,3,source did not record the old value (test),")
    with caplog.at_level(logging.INFO, logger="fdpkit"):
        manifest, _, summary = build_manifest("casme2", V.make_casme2(tmp_path / "c"))
    rows = by_clip(manifest)
    assert rows.loc["EP02_01f", "offset"] == 19
    assert rows.loc["EP02_01f", "fixes"] == "offset 20->19 (offset one frame late (test))"
    assert rows.loc["EP03_02", "apex"] == 9 and rows.loc["EP03_02", "apex_estimated"]
    assert rows.loc["EP03_02", "fixes"] == "apex missing->9 (apex from optical flow (test))"
    assert rows.loc["EP08_04", "onset"] == 3
    logged = [r for r in caplog.records if " fix (fixes/casme2.csv" in r.getMessage()]
    assert len(logged) == 3 and "row 2 (subject 01, clip EP02_01f)" in logged[0].getMessage()
    assert logged[2].levelno == logging.WARNING and "not verified" in logged[2].getMessage()
    source = summary["sources"]["casme2"]
    assert summary["fixes_applied"] == 3 and source["fixes_other_edition"] == 1 and source["fixes_unverified"] == 1


def test_fix_with_mismatched_old_is_an_error(tmp_path, fixes_dir):
    fixes_dir("01,EP02_01f,,offset,21,19,offset one frame late (test)")
    root = V.make_casme2(tmp_path / "c")
    with pytest.raises(AdapterError, match=r"row 2 \(subject 01, clip EP02_01f\): fixes/casme2.csv line 2 "
                                           r"expects offset '21' but the sheet has '20'"):
        build_manifest("casme2", root)
    manifest, skipped, _ = build_manifest("casme2", root, lenient=True)
    assert "EP02_01f" not in set(manifest.rows["clip"]) and "expects offset" in skipped.reason.iloc[0]


def test_fix_matching_no_row_is_an_error(tmp_path, fixes_dir):
    fixes_dir("09,EP99_01,,onset,3,4,no such clip (test)")
    with pytest.raises(AdapterError, match="no row of CASME2-coding-test.xlsx matches subject 09 clip EP99_01"):
        build_manifest("casme2", V.make_casme2(tmp_path / "c"))


def test_malformed_fixes_file(tmp_path, fixes_dir):
    fixes_dir("01,EP02_01f,,onset,10,ten,not a number")
    with pytest.raises(P.ProtocolError, match="line 2: new value 'ten' for onset"):
        build_manifest("casme2", V.make_casme2(tmp_path / "c"))


# ---------------------------------------------------------------------------- shipped data
def test_shipped_protocols_and_fixes_are_well_formed():
    names = P.list_protocols()
    assert {"casme2_5class", "casme2_3class", "samm_5class", "samm_3class", "casme_sq_4class", "casme_sq_3class",
            "casme3_7class", "casme3_4class", "casme3_3class", "synthme_5class", "composite_3class"} <= set(names)
    for dataset, default in [("casme2", "casme2_5class"), ("samm", "samm_5class"), ("casme_sq", "casme_sq_4class"),
                             ("casme3", "casme3_7class"), ("synthme", "synthme_5class")]:
        assert P.default_protocol(dataset).name == default
        for fix in P.load_fixes(dataset):   # index-keyed fixes must name the edition they index
            assert fix.reason and (fix.subject or fix.sheet), fix
    assert len(P.load_fixes("casme2")) == 22 and len(P.load_fixes("samm")) == 4
    assert P.load_protocol("composite_3class").datasets == ["casme2", "casme3", "casme_sq", "samm"]


def test_missing_data_manifests_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(P.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(P.ProtocolError, match="data_manifests folder not found"):
        P.load_protocol("casme2_5class")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_end_to_end(tmp_path, capsys):
    root, out = V.make_samm(tmp_path / "samm"), tmp_path / "out" / "samm.csv"
    assert main(["manifest", "--dataset", "samm", "--root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rows read 6 = kept 5 + excluded 1 (not in protocol) + skipped 0 (invalid)" in printed
    manifest = read_manifest(out)
    assert len(manifest.rows) == 5 and manifest.summary["rows_read"] == 6
    assert list(pd.read_csv(skipped_path(out))["clip"]) == ["011_2_4"]


def test_cli_bad_row_strict_and_lenient(tmp_path, capsys):
    root, out = _bad_corpus(tmp_path / "c", "unknown emotion"), tmp_path / "m.csv"
    args = ["manifest", "--dataset", "casme2", "--root", str(root), "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "row 6 (subject 03, clip EP08_04): unknown emotion 'anger'" in err and not out.exists()
    assert main([*args, "--lenient", "--protocol", "casme2_3class"]) == 0
    skipped = pd.read_csv(skipped_path(out))
    assert set(skipped.status) == {"skipped", "excluded"} and read_manifest(out).summary["rows_skipped"] == 1
