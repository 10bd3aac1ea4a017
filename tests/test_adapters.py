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
from fdpkit import paths  # noqa: E402
from fdpkit.data import protocols as P  # noqa: E402
from fdpkit.data.adapters import common as C  # noqa: E402
from fdpkit.data.adapters import fixes as F  # noqa: E402
from fdpkit.data.adapters import sheets  # noqa: E402
from fdpkit.data.adapters import (AdapterError, build_composite, build_manifest,  # noqa: E402
                                  find_annotations, skipped_path)
from fdpkit.data.manifest import read_manifest  # noqa: E402
from fdpkit.errors import BadInput  # noqa: E402


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
    rows = [*V.CASME2_ROWS, (4, "EP12_01f", 261, "/", 321, "4", "disgust")]   # apex '/' as in the public sheets
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
    "missing apex frame": (lambda root: (root / "sub02" / "EP01_11f" / "img6.jpg").unlink(), 4, "02", "EP01_11f",
                           "apex frame 6 missing in sub02/EP01_11f"),
    "missing onset frame": (lambda root: (root / "sub02" / "EP01_11f" / "img3.jpg").unlink(), 4, "02", "EP01_11f",
                            "onset frame 3 missing in sub02/EP01_11f"),
    "too many missing frames": (lambda root: [(root / "sub01" / "EP02_01f" / f"img{n}.jpg").unlink()
                                              for n in (11, 12, 13)], 2, "01", "EP02_01f",
                                "frame(s) 11, 12, 13 between onset and offset are missing in sub01/EP02_01f: 3 of 11, "
                                "more than 1/4 of the clip"),
    "mixed names": (lambda root: V.write_frames(root / "sub01" / "EP02_01f", [12], "reg_img{}.jpg"), 2, "01",
                    "EP02_01f", "both have number 12"),
    "out of order": ({2: (1, "EP02_01f", 10, 22, 20, "12", "happiness")}, 2, "01", "EP02_01f",
                     "out of order: 10/22/20"),
    "outside frames": ({4: (2, "EP01_11f", 3, 6, 30, "14", "repression")}, 4, "02", "EP01_11f",
                       "outside the frames on disk 1..11"),
    "unknown emotion": ({6: (3, "EP08_04", 2, 5, 8, "4", "anger")}, 6, "03", "EP08_04", "unknown emotion 'anger'"),
    "duplicate clip": ({3: (1, "EP02_01f", 10, 14, 20, "12", "disgust")}, 3, "01", "EP02_01f",
                       "duplicate clip id casme2/01/EP02_01f (sheet rows 2, 3"),
    "duplicate clip in another case": ({3: (1, "ep02_01F", 10, 14, 20, "12", "disgust")}, 3, "01", "ep02_01F",
                                       "duplicate clip id casme2/01/EP02_01f = casme2/01/ep02_01F (sheet rows 2, 3; ids are compared "
                                       "ignoring case)"),
    "duplicate clip with a trailing /.": ({3: (1, "EP02_01f/.", 10, 14, 20, "12", "disgust")}, 3, "01", "EP02_01f",
                                          "duplicate clip id casme2/01/EP02_01f (sheet rows 2, 3"),
    "absolute file name": ({3: (1, "/etc/EP03_02", 5, "/", 12, "4+9", "disgust")}, 3, "01", "/etc/EP03_02",
                           "Filename '/etc/EP03_02' is an absolute path"),
    "file name with ..": ({3: (1, "../../EP03_02", 5, "/", 12, "4+9", "disgust")}, 3, "01", "../../EP03_02",
                          "Filename '../../EP03_02' contains '..'"),
    "file name naming no folder": ({3: (1, "./", 5, "/", 12, "4+9", "disgust")}, 3, "01", "./",
                                   "Filename './' names no folder"),
    "negative offset": ({5: (2, "EP06_01f", 4, 7, -5, "1+2", "surprise")}, 5, "02", "EP06_01f",
                        "offset '-5' is negative"),
    "exponent frame number": ({5: (2, "EP06_01f", "1e1", 7, 11, "1+2", "surprise")}, 5, "02", "EP06_01f",
                              "onset '1e1' is not a frame number (ASCII digits only)"),
    "underscore frame number": ({5: (2, "EP06_01f", "1_0", 7, 11, "1+2", "surprise")}, 5, "02", "EP06_01f",
                                "onset '1_0' is not a frame number (ASCII digits only)"),
    "arabic-indic frame number": ({5: (2, "EP06_01f", "\u0664", 7, 11, "1+2", "surprise")}, 5, "02", "EP06_01f",
                                  "onset '\u0664' is not a frame number (ASCII digits only)"),
    "bad frame number": ({5: (2, "EP06_01f", "4a", 7, 11, "1+2", "surprise")}, 5, "02", "EP06_01f",
                         "onset '4a' is not a frame number"),
}


def test_one_reading_of_ids_for_tidying_comparing_and_the_path_check():
    """`id_parts` is the one reading of a sheet id: what the manifest writes (`tidy_id`), how ids
    are compared (`clip_key`) and which ids are refused (`path_problem`) all follow from it."""
    for text in ("EP01_01", "EP01_01/.", "./EP01_01", "EP01_01\\", " EP01_01 "):
        assert C.id_parts(text) == ("EP01_01",) and C.tidy_id(text) == "EP01_01"
        assert C.clip_key(text) == C.clip_key("ep01_01") == "ep01_01" and C.path_problem(text, "Filename") is None
    assert C.path_problem("sub01\\EP01_01", "Filename") == "Filename 'sub01\\\\EP01_01' is a path, not one folder name"
    assert "contains '..'" in C.path_problem("..\\EP01", "Filename")
    assert "absolute path" in C.path_problem("\\EP01", "Filename") and "absolute path" in C.path_problem("C:EP01", "Subject")
    for text in (".", "./", ".\\"):
        assert C.path_problem(text, "Filename") == (f"Filename {text!r} names no folder; the sheet must name a "
                                                    "folder under the dataset root")


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


@pytest.mark.parametrize("case", ["missing folder", "unknown emotion", "duplicate clip", "mixed names",
                                  "duplicate clip in another case", "absolute file name", "file name with .."])
def test_lenient_mode_skips_rows_with_reason_and_counts_reconcile(tmp_path, case):
    _, sheet_row, subject, clip, message = BAD_ROWS[case]
    manifest, skipped, summary = build_manifest("casme2", _bad_corpus(tmp_path, case), lenient=True)
    bad = skipped[skipped.status == "skipped"]
    assert sheet_row in set(bad.sheet_row) and all(message in r for r in bad.reason)
    assert (subject, clip) not in set(zip(manifest.rows.subject, manifest.rows["clip"]))
    assert reconciled(summary) and summary["rows_skipped"] == len(bad)
    assert summary["rows_kept"] == len(manifest.rows)


def test_a_sheet_the_file_system_refuses_is_an_environment_fault_exit_7(tmp_path, monkeypatch, capsys):
    """Permission denied or an I/O error reading the sheet is the machine's fault (exit 7, one line
    naming the file), not a spreadsheet to correct (exit 2). Patched, not chmod: tests may run as root."""
    root = V.make_casme2(tmp_path / "c")
    sheet = root / "CASME2-coding-test.xlsx"

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sheets.openpyxl, "load_workbook", refuse)
    assert main(["manifest", "--dataset", "casme2", "--root", str(root), "--out", str(tmp_path / "m.csv")]) == 7
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"fdpkit manifest: {sheet}: cannot read the annotation spreadsheet (Permission denied); make it "
                   "readable, or copy it somewhere readable and pass --annotations"), err


def test_unreadable_and_headerless_spreadsheets(tmp_path):
    root = V.make_casme2(tmp_path)
    (root / "CASME2-coding-test.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(AdapterError, match="unreadable annotation spreadsheet"):
        build_manifest("casme2", root)
    header = ["Subject", "Filename", None, "Start", "ApexFrame", "OffsetFrame", None, "Action Units", "Emotion"]
    V.make_casme2(root, header=header)
    with pytest.raises(AdapterError, match=r"header row 1 lacks column\(s\) onset \(accepted spellings: onset: "):
        build_manifest("casme2", root)
    with pytest.raises(AdapterError, match=rf"^annotation spreadsheet {root / 'sub01'} is a folder; give the "
                                           r"spreadsheet file \(--annotations\)$"):
        build_manifest("casme2", root, annotations=root / "sub01")
    with pytest.raises(AdapterError, match=rf"^annotation spreadsheet {root / 'nope.xlsx'} does not exist$"):
        build_manifest("casme2", root, annotations=root / "nope.xlsx")


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
    shutil.copytree(paths.data_manifests_dir(), copy)
    monkeypatch.setenv(paths.DATA_MANIFESTS_ENV, str(copy))

    def write(*lines):
        (copy / "fixes" / "casme2.csv").write_text("\n".join([",".join(F.FIX_COLUMNS), *lines]) + "\n")
    return write


def test_fixes_applied_by_natural_key_logged_and_recorded(tmp_path, fixes_dir, caplog):
    fixes_dir("01,EP02_01f,,offset,20,19,offset one frame late (test),test source,",
              "01,ep03_02,,apex,missing,9,apex from optical flow (test),test source,CASME2-coding-*",
              "02,EP01_11f,,aus,14,14+25,never applied: other edition,test source,CASME2-coding-updated*")
    with caplog.at_level(logging.INFO, logger="fdpkit"):
        manifest, _, summary = build_manifest("casme2", V.make_casme2(tmp_path / "c"))
    rows = by_clip(manifest)
    assert rows.loc["EP02_01f", "offset"] == 19
    assert rows.loc["EP02_01f", "fixes"] == "offset 20->19 (offset one frame late (test))"
    assert rows.loc["EP03_02", "apex"] == 9 and rows.loc["EP03_02", "apex_estimated"]   # clip compared ignoring case
    assert rows.loc["EP03_02", "fixes"] == "apex missing->9 (apex from optical flow (test))"
    logged = [r.getMessage() for r in caplog.records if " fix (fixes/casme2.csv" in r.getMessage()]
    assert len(logged) == 2 and "row 2 (subject 01, clip EP02_01f)" in logged[0] and "[source: test source]" in logged[0]
    source = summary["sources"]["casme2"]
    assert summary["fixes_applied"] == 2 and source["fixes_other_edition"] == 1 and source["fixes_not_in_sheet"] == 0


def test_fixes_follow_their_clip_when_the_sheet_is_reordered_or_trimmed(tmp_path, fixes_dir, caplog):
    """The failure #14 describes: a fix keyed by row position lands on another clip when the rows
    are ordered differently, and a trimmed sheet was refused outright."""
    fixes_dir("02,EP06_01f,,offset,11,10,offset one frame late (test),test source,",
              "09,EP99_01,,onset,3,4,a clip this copy does not hold (test),test source,")
    reordered = list(reversed(V.CASME2_ROWS))[:4]            # another order, and only four of the six rows
    with caplog.at_level(logging.INFO, logger="fdpkit"):
        manifest, _, summary = build_manifest("casme2", V.make_casme2(tmp_path / "c", rows=reordered))
    rows = by_clip(manifest)
    assert rows.loc["EP06_01f", "offset"] == 10 and "offset 11->10" in rows.loc["EP06_01f", "fixes"]
    assert (rows["fixes"] != "").sum() == 1
    assert "fix for casme2/09/EP99_01 not applied: row not in this sheet" in caplog.text
    assert summary["sources"]["casme2"]["fixes_not_in_sheet"] == 1


def test_fix_with_mismatched_old_is_an_error_naming_both_values(tmp_path, fixes_dir):
    fixes_dir("01,EP02_01f,,offset,21,19,offset one frame late (test),test source,")
    root = V.make_casme2(tmp_path / "c")
    with pytest.raises(AdapterError, match=r"row 2 \(subject 01, clip EP02_01f\): fixes/casme2.csv line 2 "
                                           r"expects offset '21' but the sheet has '20'"):
        build_manifest("casme2", root)
    manifest, skipped, _ = build_manifest("casme2", root, lenient=True)
    assert "EP02_01f" not in set(manifest.rows["clip"]) and "expects offset" in skipped.reason.iloc[0]


@pytest.mark.parametrize("line, message", [
    ("01,EP02_01f,,onset,10,ten,not a number,test source,", "line 2: new value 'ten' for onset"),
    ("01,EP02_01f,,onset,*,9,wildcard old,test source,", "line 2: 'old' is '\\*'"),
    ("01,EP02_01f,,onset,,9,no old,test source,", "line 2: 'old' is ''"),
    (",,,onset,10,9,no key,test source,", "line 2: 'subject' is empty"),
    ("01,EP02_01f,,onset,10,9,no source,,", "line 2: 'source' is empty"),
])
def test_malformed_fixes_file(tmp_path, fixes_dir, line, message):
    fixes_dir(line)
    with pytest.raises(P.ProtocolError, match=message):
        build_manifest("casme2", V.make_casme2(tmp_path / "c"))


def test_row_index_keyed_fixes_are_refused(tmp_path, fixes_dir):
    fixes_dir()
    path = F.fixes_path("casme2")
    path.write_text("subject,clip,data_index,field,old,new,reason,sheet\n,,1,apex,missing,9,x,\n")
    with pytest.raises(P.ProtocolError, match="keyed by 'data_index'"):
        build_manifest("casme2", V.make_casme2(tmp_path / "c"))


def test_casme3_fix_keyed_by_onset_where_a_file_name_repeats(tmp_path, monkeypatch):
    """Shipped fixes of CAS(ME)^3 rows spNO.40 e (five expressions in one video) hit only the rows
    with the onset they name (values from the public v2 sheet, muse1998/MMNet)."""
    rows = [("spNO.40", "e", 1731, 1736, 1749, "L14", "VII", "others"),
            ("spNO.40", "e", 1812, 1824, 0, "18", "VII", "others"),
            ("spNO.40", "e", 2327, 2363, 0, "14", "VII", "others")]
    root = V.make_casme3(tmp_path, rows=rows, n_frames=2500)
    manifest, _, summary = build_manifest("casme3", root)
    got = manifest.rows.set_index("clip")
    assert (got.loc["e_1812", "offset"], got.loc["e_2327", "offset"], got.loc["e_1731", "offset"]) == (1845, 2403, 1749)
    assert got.loc["e_1731", "fixes"] == "" and summary["fixes_applied"] == 2
    assert summary["sources"]["casme3"]["fixes_not_in_sheet"] == len(F.load_fixes("casme3")) - 2


# ---------------------------------------------------------------------------- shipped data
def test_shipped_protocols_and_fixes_are_well_formed():
    names = P.list_protocols()
    assert {"casme2_5class", "casme2_3class", "samm_5class", "samm_3class", "casme_sq_4class", "casme_sq_3class",
            "casme3_7class", "casme3_4class", "casme3_3class", "synthme_5class", "composite_3class"} <= set(names)
    for dataset, default in [("casme2", "casme2_5class"), ("samm", "samm_5class"), ("casme_sq", "casme_sq_4class"),
                             ("casme3", "casme3_7class"), ("synthme", "synthme_5class")]:
        assert P.default_protocol(dataset).name == default
        for fix in F.load_fixes(dataset):   # natural key, a verifiable old value, a cited source
            assert fix.subject and fix.clip and fix.reason and fix.source and fix.old not in ("", "*"), fix
    assert [len(F.load_fixes(d)) for d in ("casme2", "samm", "casme3", "casme_sq")] == [1, 2, 7, 0]
    assert P.load_protocol("composite_3class").datasets == ["casme2", "casme3", "casme_sq", "samm"]


def test_missing_data_manifests_folder_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.DATA_MANIFESTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(BadInput, match="data_manifests folder not found"):
        P.load_protocol("casme2_5class")
    root = V.make_samm(tmp_path / "samm")
    assert main(["manifest", "--dataset", "samm", "--root", str(root), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fdpkit manifest: data_manifests folder not found at {tmp_path / 'nowhere'}")
    assert "FDPKIT_DATA_MANIFESTS" in err and "\n" not in err


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
    assert main(args) == 2                                   # bad input (fdpkit.errors)
    err = capsys.readouterr().err
    assert "row 6 (subject 03, clip EP08_04): unknown emotion 'anger'" in err and not out.exists()
    assert "\nfdpkit manifest: casme2: 1 bad row(s)" in err and "Traceback" not in err
    assert main([*args, "--lenient", "--protocol", "casme2_3class"]) == 0
    skipped = pd.read_csv(skipped_path(out))
    assert set(skipped.status) == {"skipped", "excluded"} and read_manifest(out).summary["rows_skipped"] == 1
