"""Faults of annotation spreadsheets and of frame folders as seen by the adapters (`fdpkit manifest`).

One CASME II-style corpus holds one bad row per fault; strict mode must stop naming every bad row,
lenient mode must skip exactly those rows with their reason, and the counts must add up.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from fdpkit.cli import main as cli_main
from fdpkit.data.adapters import AdapterError, build_manifest, skipped_path
from fdpkit.data.manifest import read_manifest

from faultkit import CASME2_HEADER, CASME2_ROWS, TINY, make_casme2, make_samm_sheet, write_xlsx

# subject, clip, onset, apex, offset, aus, emotion -> the reason lenient mode must record
BAD_ROWS = {
    (4, "EP01_01", "abc", 5, 9, "4", "happiness"): r"onset 'abc' is not a frame number",
    (4, "EP01_02", 3, 5.5, 9, "4", "happiness"): r"apex '5.5' is not a whole frame number",
    (4, "EP01_03", 9, 5, 3, "4", "happiness"): r"onset/apex/offset out of order: 9/5/3",
    (4, "EP01_04", 3, "/", 2, "4", "happiness"): r"onset/apex/offset out of order: 3/missing/2",
    (4, "EP01_05", 3, 5, 9, "4", "angry-ish"): r"unknown emotion 'angry-ish' \(known for casme2: ",
    (4, "EP01_06", 3, 5, 9, "4", None): r"the emotion cell is empty",
    (4, "EP01_07", 3, 5, 90, "4", "happiness"): r"onset..offset 3..90 outside the frames on disk 1..11",
    (4, "EP01_08", 3, 5, 9, "4", "happiness"): r"frame folder sub04/EP01_08 does not exist",
    (4, "EP01_09", 3, 5, 9, "4", "happiness"): r"img5\.jpg .* are empty \(0 bytes\)",
    (4, "EP01_10", 3, 5, 9, "4", "happiness"): r"apex frame 5 missing in sub04/EP01_10 \(img5\.gif: not a frame extension",
    (4, "EP01_11", 3, 5, 9, "4", "happiness"): r"frames img4\.jpg and reg_img4\.jpg both have number 4|frames reg_img4\.jpg and img4\.jpg both have number 4",
    (4, "EP01_12", 3, 5, 9, "4", "happiness"): r"holds no frame images .*it holds \.tif files",
    (4, "EP01_13", 3, 5, 9, "4", "happiness"): r"resolves to .* outside the dataset root",
    ("abc", "EP01_14", 3, 5, 9, "4", "happiness"): r"subject 'abc' is not a subject number",
    (5, "EP01_15", 3, 5, 9, "4", "happiness"): r"duplicate clip id casme2/05/EP01_15 \(sheet rows \d+, \d+\)",
    (4, "/abs/EP01_16", 3, 5, 9, "4", "happiness"): r"Filename '/abs/EP01_16' is an absolute path",
    (4, "../EP01_17", 3, 5, 9, "4", "happiness"): r"Filename '\.\./EP01_17' contains '\.\.'",
    (4, "EP01_18", 3, 5, 9, "4", "happiness"): r"frame file sub04/EP01_18/img4\.jpg resolves to .* outside the dataset root",
    (4, "EP01_19", 3, 5, -9, "4", "happiness"): r"offset '-9' is negative",
    (4, "EP01_20", "1e1", 5, 9, "4", "happiness"): r"onset '1e1' is not a frame number \(ASCII digits only\)",
}
DUPLICATE = (5, "EP01_15", 3, 5, 9, "4", "happiness")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good CASME II rows + one row per fault; frames 1..11 for every bad row, then damaged."""
    base = tmp_path_factory.mktemp("casme2_faults")
    root = base / "données_主体"                       # a non-ASCII path on purpose
    bad = list(BAD_ROWS) + [DUPLICATE]
    notes = [[], ["note: coded by two FACS coders"], [None, None, None, None]]
    make_casme2(root, rows=CASME2_ROWS,
                extra_rows=notes + [[s, c, None, on, ap, off, None, au, emo] for s, c, on, ap, off, au, emo in bad])
    for subject, clip, *_ in bad:
        if subject == "abc" or clip in ("EP01_08", "/abs/EP01_16", "../EP01_17"):   # no folder to write
            continue
        folder = (base / "outside" if clip == "EP01_13" else root / f"sub{subject:02d}") / clip
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, 12):
            (folder / f"img{n}.jpg").write_bytes(TINY)
    (root / "sub04" / "EP01_09" / "img5.jpg").write_bytes(b"")                       # zero-byte frame
    (root / "sub04" / "EP01_10" / "img5.jpg").rename(root / "sub04" / "EP01_10" / "img5.gif")  # wrong extension
    (root / "sub04" / "EP01_11" / "reg_img4.jpg").write_bytes(TINY)                 # raw + cropped names mixed
    for path in list((root / "sub04" / "EP01_12").iterdir()):                       # only .tif files
        path.rename(path.with_suffix(".tif"))
    (root / "sub04" / "EP01_13").symlink_to(base / "outside" / "EP01_13", target_is_directory=True)
    (base / "outside" / "img4.jpg").write_bytes(TINY)                                  # one frame file links out
    (root / "sub04" / "EP01_18" / "img4.jpg").unlink()
    (root / "sub04" / "EP01_18" / "img4.jpg").symlink_to(base / "outside" / "img4.jpg")
    (root / "sub01" / "EP02_01f" / "._img12.jpg").write_bytes(b"\x00\x05")          # a macOS resource fork: ignored
    return root


def test_strict_mode_stops_and_names_every_bad_row(corpus):
    with pytest.raises(AdapterError) as info:
        build_manifest("casme2", corpus)
    message = str(info.value)
    assert re.search(rf"casme2: {len(BAD_ROWS) + 1} bad row\(s\)", message), message
    for (subject, clip, *_), reason in BAD_ROWS.items():
        line = next((l for l in message.splitlines() if f"clip {clip})" in l), None)
        assert line is not None, f"{clip} not named in:\n{message}"
        assert re.search(r"CASME2-coding-test\.xlsx row \d+ \(subject ", line), line
        assert re.search(reason, line), (reason, line)


def test_lenient_mode_skips_exactly_the_bad_rows_with_their_reasons(corpus, tmp_path):
    manifest, skipped, summary = build_manifest("casme2", corpus, lenient=True)
    assert sorted(manifest.rows["clip"]) == sorted(c for _, c, *_ in CASME2_ROWS)
    invalid = skipped[skipped["status"] == "skipped"]
    assert (invalid["reason"].str.len() > 0).all() and (skipped["reason"].str.len() > 0).all()
    for (subject, clip, *_), reason in BAD_ROWS.items():
        found = invalid[invalid["clip"] == clip]
        assert len(found) == (2 if clip == DUPLICATE[1] else 1), clip
        assert all(re.search(reason, r) for r in found["reason"]), (clip, list(found["reason"]))
    s = summary["sources"]["casme2"]
    assert s["rows_read"] == s["rows_kept"] + s["rows_excluded"] + s["rows_skipped"]
    assert s["rows_skipped"] == len(BAD_ROWS) + 1 and s["rows_kept"] == len(CASME2_ROWS)
    assert s["note_rows_ignored"] == 1                    # the note row; blank rows are not rows


def test_cli_counts_reconcile_with_the_files(corpus, tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    assert cli_main(["manifest", "--dataset", "casme2", "--root", str(corpus), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fdpkit manifest: casme2: 21 bad row(s)" in err and "Traceback" not in err and not out.exists()
    assert cli_main(["manifest", "--dataset", "casme2", "--root", str(corpus), "--out", str(out),
                     "--lenient"]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"rows read (\d+) = kept (\d+) \+ excluded (\d+) \(not in protocol\) \+ skipped (\d+)", printed)
    read, kept, excluded, skipped = map(int, match.groups())
    assert read == kept + excluded + skipped
    listed = pd.read_csv(skipped_path(out), dtype=str, keep_default_na=False)
    assert kept == len(read_manifest(out).rows)
    assert excluded == (listed["status"] == "excluded").sum() and skipped == (listed["status"] == "skipped").sum()
    assert f"({excluded + skipped} rows)" in printed
    per_class = dict(re.findall(r"(\w+) (\d+)", printed.split("clips per class: ")[1].splitlines()[0]))
    assert sum(map(int, per_class.values())) == kept


def test_missing_columns_are_a_file_level_error(tmp_path):
    header = [h if h != "OnsetFrame" else "Start" for h in CASME2_HEADER]
    make_casme2(tmp_path, header=header)
    with pytest.raises(AdapterError, match=r"header row 1 lacks column\(s\) onset \(accepted spellings: onset: OnsetFrame"):
        build_manifest("casme2", tmp_path)


def test_a_sheet_without_a_header_row_is_a_file_level_error(tmp_path):
    write_xlsx(tmp_path / "CASME2-coding-x.xlsx", [[1, "EP01_01", None, 3, 5, 9, None, "4", "happiness"]])
    with pytest.raises(AdapterError, match="no sheet has a header row with a subject and a file name column"):
        build_manifest("casme2", tmp_path)


@pytest.mark.parametrize("dataset", ["casme2", "casme3", "casme_sq"])
def test_a_samm_sheet_given_to_another_adapter_is_refused_clearly(tmp_path, dataset):
    make_casme2(tmp_path / "casme2")
    sheet = make_samm_sheet(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx")
    with pytest.raises(AdapterError, match=rf"{dataset}: .*SAMM_Micro_FACS_Codes_v2\.xlsx looks like a samm "
                                           rf"annotation sheet, not a {dataset} one.*--dataset samm"):
        build_manifest(dataset, tmp_path / "casme2", sheet)


def test_a_casme2_sheet_given_to_the_samm_adapter_is_refused_clearly(tmp_path):
    make_casme2(tmp_path)
    with pytest.raises(AdapterError, match=r"looks like a casme2 annotation sheet, not a samm one"):
        build_manifest("samm", tmp_path, tmp_path / "CASME2-coding-test.xlsx")


def test_no_or_several_spreadsheets_are_named(tmp_path):
    with pytest.raises(AdapterError, match="no annotation spreadsheet"):
        build_manifest("casme2", tmp_path)
    make_casme2(tmp_path)
    write_xlsx(tmp_path / "CASME2-coding-copy.xlsx", [CASME2_HEADER])
    with pytest.raises(AdapterError, match="several annotation spreadsheets .*pass --annotations"):
        build_manifest("casme2", tmp_path)


def test_a_missing_dataset_root_is_named(tmp_path):
    with pytest.raises(AdapterError, match=r"dataset root .*nowhere is not a folder"):
        build_manifest("casme2", tmp_path / "nowhere")
