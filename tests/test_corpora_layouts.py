"""Each corpus read strictly from the root the README names, in every layout its vendor has shipped
(fixtures from public evidence: tests/fixtures_public_layouts.py), plus the workbook and path rules
of issues #14 and #12."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import openpyxl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_public_layouts as L  # noqa: E402
import fixtures_vendor as V  # noqa: E402

from fdpkit.cli import main  # noqa: E402
from fdpkit.data import protocols as P  # noqa: E402
from fdpkit.data.adapters import AdapterError, build_manifest, run_cli  # noqa: E402
from fdpkit.data.manifest import ManifestError, meta_path, read_manifest, validate  # noqa: E402
from fdpkit.errors import BadInput  # noqa: E402
from fdpkit.io import read_json, sha256_file  # noqa: E402


def reconciled(summary):
    return summary["rows_read"] == summary["rows_kept"] + summary["rows_excluded"] + summary["rows_skipped"]


# -------------------------------------------------------------------------------------- CAS(ME)^3
@pytest.mark.parametrize("tree", sorted(L.CASME3_TREES))
def test_casme3_part_a_reads_strictly_from_part_a_in_both_shipped_trees(tmp_path, tree, caplog):
    part_a = L.make_casme3_part_a(tmp_path / "part_A", tree=tree)
    with caplog.at_level(logging.INFO, logger="fdpkit"):
        manifest, skipped, summary = build_manifest("casme3", part_a)      # strict, root = part_A as in the README
    assert len(manifest.rows) == len(L.CASME3_ROWS) and skipped.empty and reconciled(summary)
    rows = manifest.rows.set_index("clip")
    assert rows.loc["b", "frame_dir"] == f"{L.CASME3_TREES[tree]}/spNO.1/b/color"
    assert {"e_62", "e_96", "f_1421", "f_1568", "j_28", "j_102"} <= set(rows.index)   # repeated file names
    source = summary["sources"]["casme3"]
    assert source["frame_tree"] == L.CASME3_TREES[tree] and source["sheet"] == "label"
    assert Path(source["annotations"]).name == "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"   # not the MaE sheet
    assert f"(frame tree {L.CASME3_TREES[tree]})" in caplog.text


def test_casme3_split_tree_as_root_still_finds_the_sheet_in_annotation(tmp_path):
    part_a = L.make_casme3_part_a(tmp_path / "part_A")
    manifest, _, summary = build_manifest("casme3", part_a / L.CASME3_TREES["split"])
    assert len(manifest.rows) == len(L.CASME3_ROWS)
    assert Path(summary["sources"]["casme3"]["annotations"]) == (
        part_a / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx").resolve()


def test_casme3_dropped_frames_keep_the_clip_with_notes(tmp_path):
    """E1: the real videos drop frames. spNO.1 b is 166..179 (apex 175); drop 170 and 171."""
    part_a = L.make_casme3_part_a(tmp_path / "part_A", dropped=[("spNO.1", "b", 170), ("spNO.1", "b", 171)])
    manifest, _, summary = build_manifest("casme3", part_a)
    row = manifest.rows.set_index("clip").loc["b"]
    assert "missing frames 170, 171 (2 of 14 in 166..179" in row["notes"]
    assert summary["rows_with_missing_frames"] == 1 and (manifest.rows["notes"] != "").sum() == 1


def test_casme3_dropped_apex_frame_fails_the_clip(tmp_path):
    part_a = L.make_casme3_part_a(tmp_path / "part_A", dropped=[("spNO.1", "b", 175)])
    with pytest.raises(AdapterError, match=r"clip b\): apex frame 175 missing in data/part_A_split/part_A/spNO.1/b/color"):
        build_manifest("casme3", part_a)
    manifest, skipped, summary = build_manifest("casme3", part_a, lenient=True)
    assert list(skipped["clip"]) == ["b"] and reconciled(summary)


# -------------------------------------------------------------------------------------- CAS(ME)^2
def test_casme_sq_padded_frames_zero_codes_and_the_video_in_another_folder(tmp_path):
    root = L.make_casme_sq(tmp_path)
    manifest, skipped, summary = build_manifest("casme_sq", root)
    rows = manifest.rows.set_index(["subject", "clip"])
    assert rows.loc[("s15", "happy1_1"), "frame_dir"] == "rawpic/s15/15_0502funnyerrors"
    assert rows.loc[("s15", "happy1_1"), "first_frame"] == 1       # img001.jpg
    assert rows.loc[("s15", "disgust2_3"), "frame_dir"] == "rawpic/s15/15_0102eatingworms"
    assert sorted(skipped["clip"]) == ["anger1_1", "happy1_1", "happy1_2"]     # macro rows (E5)
    assert reconciled(summary) and summary["rows_read"] == len(L.CASME_SQ_CODE)


def test_casme_sq_video_under_another_participant_is_found_and_noted(tmp_path):
    """E6: participant s23's 0502 video sits in rawpic/s19/. In the public code sheet its rows are
    macro-expressions; one is marked micro here to exercise the lookup of the layout."""
    code = [list(r) for r in L.CASME_SQ_CODE]
    code[6][7] = "micro-expression"
    manifest, _, _ = build_manifest("casme_sq", L.make_casme_sq(tmp_path, code=code))
    row = manifest.rows.set_index(["subject", "clip"]).loc[("s23", "happy1_1")]
    assert row["frame_dir"] == "rawpic/s19/23_0502funnyerrors"
    assert "video folder found under s19 (rawpic/s19/23_0502funnyerrors), not under s23" in row["notes"]


def test_casme_sq_apex_and_offset_zero_are_estimated_by_the_documented_rules(tmp_path):
    """E5: row (17, anger1_1) has apex 0 and (1, happy1_2) offset 0; both are macro-expressions in
    the public sheet, marked micro here to exercise the rules."""
    code = [list(r) for r in L.CASME_SQ_CODE]
    code[2][7] = code[7][7] = "micro-expression"
    manifest, _, summary = build_manifest("casme_sq", L.make_casme_sq(tmp_path, code=code))
    rows = manifest.rows.set_index(["subject", "clip"])
    apex0 = rows.loc[("s34", "anger1_1")]
    assert apex0["apex"] == (1763 + 1787) // 2 and apex0["apex_estimated"]
    assert "apex 0->1775 (rule: apex not annotated; floor((onset + offset) / 2))" in apex0["fixes"]
    offset0 = rows.loc[("s15", "happy1_2")]
    assert offset0["offset"] == 2 * 190 - 178 and "offset 0->202" in offset0["fixes"]
    assert reconciled(summary)


# ---------------------------------------------------------------------------------- CASME II, SAMM
@pytest.mark.parametrize("frame_name", ["img{}.jpg", "reg_img{}.jpg"])
def test_casme2_2019_sheet_shipped_fix_applies_by_clip_name(tmp_path, frame_name):
    manifest, _, summary = build_manifest("casme2", L.make_casme2(tmp_path, frame_name=frame_name))
    rows = manifest.rows.set_index("clip")
    assert rows.loc["EP12_01f", "apex"] == 279 and rows.loc["EP12_01f", "apex_estimated"]   # fixes/casme2.csv
    assert rows.loc["EP02_01f", "frame_dir"] == "CASME2_RAW_selected/sub01/EP02_01f"
    assert summary["fixes_applied"] == 1 and summary["sources"]["casme2"]["sheet"] == "Sheet1"


def test_samm_public_sheet_shipped_fixes_apply_by_clip_name(tmp_path):
    manifest, _, summary = build_manifest("samm", L.make_samm(tmp_path))
    rows = manifest.rows.set_index("clip")
    assert (rows.loc["028_4_1", "apex"], rows.loc["032_3_1", "apex"]) == (1105, 4945)
    assert rows.loc["028_4_1", "fixes"].startswith("apex 1143->1105")
    assert rows.loc["006_1_2", "fixes"] == "" and summary["fixes_applied"] == 2


# ------------------------------------------------------------------------------------ workbooks
def _add_sheet(path: Path, title: str, rows) -> None:
    book = openpyxl.load_workbook(path)
    ws = book.create_sheet(title, 0)
    for row in rows:
        ws.append(list(row))
    book.save(path)


def test_several_candidate_sheets_need_sheet_and_the_choice_is_recorded(tmp_path, capsys):
    root = L.make_casme2(tmp_path / "c")
    sheet = root / "CASME2-coding-20190701.xlsx"
    _add_sheet(sheet, "old edition", [L.CASME2_HEADER_2019, ["01", "EP02_01f", None, 46, 59, 86, None, "12", "sadness", 1]])
    with pytest.raises(AdapterError, match=r"several sheets hold an annotation table \('old edition', 'Sheet1'\); "
                                           r"choose one with --sheet NAME"):
        build_manifest("casme2", root)
    with pytest.raises(AdapterError, match=r"no sheet named 'Sheet9' \(--sheet\)"):
        build_manifest("casme2", root, sheet="Sheet9")
    out = tmp_path / "m.csv"   # `--sheet` reaches run_cli as args.sheet (the flag itself: fdpkit/cli.py)
    args = argparse.Namespace(dataset=["casme2"], root=[str(root)], annotations=None, protocol=None, lenient=False,
                              out=str(out), sheet="Sheet1")
    assert run_cli(args) == 0
    assert read_json(meta_path(out))["sheets"] == {"casme2": "Sheet1"}
    assert "sheet 'Sheet1'" in capsys.readouterr().out
    assert read_manifest(out).rows.set_index("clip").loc["EP02_01f", "emotion"] == "happiness"


def test_duplicate_headers_are_an_error(tmp_path):
    header = ["Subject", "Filename", "OnsetFrame", "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
              "Estimated Emotion"]
    V.write_xlsx(tmp_path / "CASME2-coding-x.xlsx", {"Sheet1": [header, [1, "EP02_01f", 10, 11, 14, 20, None, "12",
                                                                         "happiness"]]})
    with pytest.raises(AdapterError, match=r"header row 1 names a field in more than one column \(onset: columns "
                                           r"C \('OnsetFrame'\), D \('OnsetFrame'\)\)"):
        build_manifest("casme2", tmp_path)


def test_hidden_rows_are_read_and_counted(tmp_path, caplog):
    root = V.make_casme2(tmp_path)
    path = root / "CASME2-coding-test.xlsx"
    book = openpyxl.load_workbook(path)
    book.active.row_dimensions[3].hidden = True
    book.save(path)
    with caplog.at_level(logging.INFO, logger="fdpkit"):
        manifest, _, summary = build_manifest("casme2", root)
    assert "EP03_02" in set(manifest.rows["clip"]) and summary["hidden_rows_read"] == 1
    assert "1 row(s) of sheet 'Sheet1' are hidden in Excel and are read like the others (sheet rows 3)" in caplog.text


# ---------------------------------------------------------------------------------------- paths
def test_frame_files_symlinked_outside_the_root_are_refused(tmp_path):
    root = V.make_casme2(tmp_path / "root")
    outside = V.write_frames(tmp_path / "elsewhere", [14])
    frame = root / "sub01" / "EP02_01f" / "img14.jpg"
    frame.unlink()
    os.symlink(outside / "img14.jpg", frame)
    with pytest.raises(AdapterError, match=r"frame file sub01/EP02_01f/img14.jpg resolves to .*elsewhere/img14.jpg, "
                                           r"outside the dataset root"):
        build_manifest("casme2", root)
    os.unlink(frame)                                        # a link that stays under the root is fine
    os.symlink(root / "sub01" / "EP02_01f" / "img13.jpg", frame)
    build_manifest("casme2", root)


@pytest.mark.parametrize("given", ["../../x", "/etc/x.json", "nested/name"])
def test_protocol_given_as_a_path_must_exist(tmp_path, given):
    root = V.make_casme2(tmp_path)
    with pytest.raises(P.ProtocolError, match="protocol file .* does not exist"):
        build_manifest("casme2", root, protocol=given)


@pytest.mark.parametrize("name", ["..", ".hidden", "casme2 5class"])
def test_protocol_name_must_be_plain(tmp_path, name):
    with pytest.raises(P.ProtocolError, match="is not a plain name under data_manifests/"):
        P.load_protocol(name)


def test_protocol_path_is_recorded_whole_with_its_sha256(tmp_path):
    root = V.make_casme2(tmp_path / "c")
    copy = tmp_path / "mine" / "casme2_5class.json"
    copy.parent.mkdir()
    shutil.copy(P.protocol_path("casme2_5class"), copy)
    out = tmp_path / "m.csv"
    assert main(["manifest", "--dataset", "casme2", "--root", str(root), "--out", str(out),
                 "--protocol", str(copy)]) == 0
    meta = read_json(meta_path(out))
    assert meta["protocol"] == "casme2_5class" and meta["protocol_source"] == str(copy.resolve())
    assert meta["protocol_sha256"] == sha256_file(copy)
    assert main(["manifest", "--dataset", "casme2", "--root", str(root), "--out", str(out)]) == 0
    assert read_json(meta_path(out))["protocol_source"] == str(P.protocol_path("casme2_5class"))


@pytest.mark.parametrize("case", ["folder", "under a file"])
def test_bad_out_is_bad_input_in_one_line(tmp_path, capsys, case):
    root = V.make_casme2(tmp_path / "c")
    blocker = tmp_path / "taken"
    if case == "folder":
        blocker.mkdir()
        out, expected = blocker, f"--out {blocker} is a folder; give the manifest file to write"
    else:
        blocker.write_text("x")
        out, expected = blocker / "m.csv", f"--out {blocker / 'm.csv'}: {blocker} is a file, not a folder"
    assert main(["manifest", "--dataset", "casme2", "--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fdpkit manifest: ") and expected in err[-1] and "Traceback" not in "\n".join(err)


def test_manifest_errors_are_bad_input():
    assert all(issubclass(cls, BadInput) for cls in (AdapterError, ManifestError, P.ProtocolError))


def test_a_manifest_without_notes_column_still_validates(tmp_path):
    out = tmp_path / "m.csv"
    assert main(["manifest", "--dataset", "casme2", "--root", str(V.make_casme2(tmp_path / "c")), "--out", str(out)]) == 0
    rows = read_manifest(out).rows
    assert "notes" in rows.columns
    old = validate(rows.drop(columns=["notes"]))            # written before the column existed
    assert list(old.columns) == list(rows.columns) and (old["notes"] == "").all()
