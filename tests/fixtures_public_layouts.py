"""Tiny corpora laid out as the vendors ship them, built from PUBLIC evidence of the real files (not
from what the adapters expect). Each builder's docstring cites where each fact comes from; rows are
copied from public copies of the annotation sheets (values, not formatting). Frames are 4x4 images
written only around the annotated windows (the manifest never looks inside them).

Evidence (public repositories, read with the project's search tools):
- E1 `tvaranka/meb` tools/README.md and tools/extract_casme3_part_a.py: CAS(ME)^3 part A frames at
  `part_a/data/part_A_split/part_A/<Subject>/<Filename>/color/<n>.jpg`, no prefix or padding; "there
  are frame drops" (the extractor counts missing files).
- E2 `muse1998/MMNet` (commit bedaf54) `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`: sheets `label`,
  `Sheet1`, `Sheet3` (the last two empty); header Subject, Filename, Onset, Apex, Offset, AU,
  Objective class, emotion; 860 rows; one Filename repeated within a subject (spNO.1 e, f, j).
- E3 `wangzhifengharrison/HTNet` cas(me)3_part_A_edited.csv: image paths `spNO.1/b/color/175.jpg`.
- E4 public CAS(ME)^3 preprocessing scripts (found by the string `Compressed_version1_seperate_compress`):
  `part_A/data/Compressed_version1_seperate_compress/<Subject>/<Filename>/color/<n>.jpg` + `depth/<n>.png`,
  and `part_A/annotation/` holding `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` beside
  `cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx`.
- E5 `XionghuiYe/AMAF-MOF` CASME_sq/code_final.xlsx (CAS(ME)^2): sheets `CASFEcode_final` (no header;
  participant, video_expression, onset, apex, offset, AUs, emotion, type, self-report), `naming rule1`
  (one [folder number, folder name, participant] row per code row: [15, 's15', 1] ... [40, 's40', 22]),
  `naming rule2` ([101, 'disgust1'] ...: codes stored as numbers); offset 0 in 43 rows, apex 0 in one.
  `genbing99/MEAN_Spot-then-recognize` load_excel.py / load_label.py read it so (offset 0 -> apex).
- E6 public CAS(ME)^2 scripts (found by the string `0502funnyerrors`): video folder names
  (`0101disgustingteeth`, `0102eatingworms`, `0401girlcrashing`, `0502funnyerrors`, ...), and
  `rawpic/s19/23_0502funnyerrors` special-cased as participant s23's video; frames `img001.jpg`
  zero-padded to 3 digits (/work/shared/docs/datasets.md).
- E7 `MouathAb/AnalyseMiE-CNN_LSTM_SE` CASME2-coding-20190701.xlsx: header Subject, Filename, (blank),
  OnsetFrame, ApexFrame, OffsetFrame, (blank), Action Units, Estimated Emotion, Objective Classes;
  Subject stored as text '01'; row sub04 EP12_01f has apex '/'. `AloveDL/Hubing-EMs`
  data/CASME2-coding-20140508.xlsx: the same rows without Objective Classes, Subject as a number.
- E8 `MouathAb/AnalyseMiE-CNN_LSTM_SE` SAMM_Micro_FACS_Codes_v2.xlsx: one sheet `MICRO_ONLY`, 13
  description rows (title, update note, symbol key, AU help, blanks) above the header row (Excel row
  14): Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Micro,
  Action Units, Estimated Emotion, Objective Classes, Notes; Subject as text '006'. MEB reads it with
  df.loc[12] as the header (tvaranka/meb meb/datasets/datasets.py Samm); frames `006/006_1_2/006_05562.jpg`.
"""

from __future__ import annotations

from pathlib import Path

from fixtures_vendor import write_frames, write_xlsx

# ------------------------------------------------------------------------------------- CAS(ME)^3
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
CASME3_ROWS = [   # E2, rows 1-10 of the `label` sheet, as they are
    ["spNO.1", "a", 355, 359, 360, "5", "II", "others"],
    ["spNO.1", "b", 166, 175, 179, "4", "III", "disgust"],
    ["spNO.1", "e", 62, 68, 96, "R12", "I", "others"],
    ["spNO.1", "e", 96, 102, 106, "R12", "I", "others"],
    ["spNO.1", "f", 1421, 1426, 1440, "5", "II", "others"],
    ["spNO.1", "f", 1568, 1572, 1581, "4", "III", "others"],
    ["spNO.1", "h", 181, 185, 194, "38", "VII", "surprise"],
    ["spNO.1", "j", 28, 33, 49, "24", "VII", "happy"],
    ["spNO.1", "j", 102, 105, 113, "26+25", "II", "surprise"],
    ["spNO.1", "k", 153, 159, 168, "38", "VII", "happy"],
]
CASME3_TREES = {"split": "data/part_A_split/part_A",                      # E1
                "compressed": "data/Compressed_version1_seperate_compress"}  # E4


def make_casme3_part_a(part_a: Path, tree: str = "split", rows=CASME3_ROWS, dropped=()) -> Path:
    """`part_A/` as distributed (E1-E4): the ME sheet (sheets label/Sheet1/Sheet3) and the MaE sheet
    in `annotation/`, whole-video frames `<tree>/<Subject>/<Filename>/color/<n>.jpg` around every
    annotated window and `depth/<n>.png` beside them. `dropped`: (subject, filename, n) frames left
    out, as the real videos drop frames (E1)."""
    write_xlsx(part_a / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
               {"label": [CASME3_HEADER, *rows], "Sheet1": [], "Sheet3": []})
    write_xlsx(part_a / "annotation" / "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx",
               {"label": [CASME3_HEADER, ["spNO.1", "a", 1, 20, 60, "12", "I", "happy"]]})
    spans: dict[tuple, set] = {}
    for subject, filename, onset, _, offset, *_ in rows:
        spans.setdefault((subject, filename), set()).update(range(max(1, onset - 2), offset + 3))
    for (subject, filename), numbers in spans.items():
        video = part_a / CASME3_TREES[tree] / subject / filename
        keep = sorted(n for n in numbers if (subject, filename, n) not in set(dropped))
        write_frames(video / "color", keep, "{}.jpg")
        write_frames(video / "depth", keep[:2], "{}.png")
    return part_a


# ------------------------------------------------------------------------------------- CAS(ME)^2
CASME_SQ_CODE = [   # E5, rows of `CASFEcode_final` (no header), as they are
    [1, "disgust2_3", 699, 703, 707, None, "others", "micro-expression", "disgust"],
    [1, "happy1_1", 138, 142, 148, "7", "others", "micro-expression", "happiness"],
    [1, "happy1_2", 178, 190, 0, "12", "positive", "macro-expression", "happiness"],   # offset 0
    [2, "happy1_1", 323, 329, 334, "R1+R2", "surprise", "micro-expression", "happiness"],
    [2, "disgust2_3", 270, 275, 278, "4+10", "negative", "micro-expression", "disgust"],
    [7, "disgust2_1", 331, 335, 346, "45", "others", "micro-expression", "disgust"],
    [7, "happy1_1", 1381, 1413, 1460, "7", "others", "macro-expression", "pain"],
    [17, "anger1_1", 1763, 0, 1787, "24", "others", "macro-expression", "sadness"],     # apex 0
]
CASME_SQ_RULE1 = {1: (15, "s15"), 2: (16, "s16"), 3: (19, "s19"), 7: (23, "s23"), 17: (34, "s34")}   # E5
CASME_SQ_RULE2 = [[101, "disgust1"], [102, "disgust2"], [401, "anger1"], [402, "anger2"], [502, "happy1"],
                  [503, "happy2"], [505, "happy3"], [507, "happy4"], [508, "happy5"]]           # E5
CASME_SQ_VIDEOS = {"0101": "disgustingteeth", "0102": "eatingworms", "0401": "girlcrashing",
                   "0402": "beatingpregnantwoman", "0502": "funnyerrors", "0503": "unnyfarting",
                   "0505": "funnyinnovations", "0507": "climbingthewall", "0508": "funnydunkey"}   # E6
MISPLACED = {("s23", "0502"): "s19"}   # E6: rawpic/s19/23_0502funnyerrors is participant s23's video


def make_casme_sq(root: Path, code=CASME_SQ_CODE, sheet="CAS(ME)^2code_final.xlsx") -> Path:
    """CAS(ME)^2 as distributed (E5, E6): the three-sheet workbook in the public loaders' order, and
    `rawpic/<sNN>/<NN>_<code><name>/img001.jpg` frames (3-digit padding) for frames 1-3 and around
    every annotated window; participant s23's `0502` video sits in `rawpic/s19/` (E6)."""
    codes = {name: f"{number:04d}" for number, name in CASME_SQ_RULE2}
    rule1 = [[*CASME_SQ_RULE1[row[0]], row[0]] for row in code]       # one row per code row (E5)
    write_xlsx(root / sheet, {"CASFEcode_final": [list(r) for r in code], "naming rule1": rule1,
                              "naming rule2": CASME_SQ_RULE2})
    spans: dict[tuple, set] = {}
    for participant, clip, onset, apex, offset, *_ in code:
        number, folder = CASME_SQ_RULE1[participant]
        video = codes[clip.split("_")[0]]
        end = max(onset, apex, offset)
        spans.setdefault((number, folder, video), {1, 2, 3}).update(range(onset - 2, end + 40))   # the video goes on
    for (number, folder, video), numbers in spans.items():
        parent = MISPLACED.get((folder, video), folder)
        write_frames(root / "rawpic" / parent / f"{number}_{video}{CASME_SQ_VIDEOS[video]}", sorted(numbers),
                     "img{:03d}.jpg")
    return root


# ------------------------------------------------------------------------------------------ CASME II
CASME2_HEADER_2019 = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                      "Estimated Emotion", "Objective Classes"]
CASME2_ROWS_2019 = [   # E7, CASME2-coding-20190701.xlsx rows 1-2 and 30, as they are
    ["01", "EP02_01f", None, 46, 59, 86, None, "12", "happiness", 1],
    ["01", "EP03_02", None, 131, 139, 161, None, "18", "others", 7],
    ["04", "EP12_01f", None, 261, "/", 321, None, "4+7+L10", "disgust", 4],
]


def make_casme2(root: Path, frame_name: str = "img{}.jpg", tree: str = "CASME2_RAW_selected") -> Path:
    """CASME II (E7): the 2019 coding sheet (Subject as text) next to the `CASME2_RAW_selected` tree
    `sub01/EP02_01f/img46.jpg` (raw selected frames run from onset to offset; the cropped release
    names them `reg_img46.jpg`)."""
    write_xlsx(root / "CASME2-coding-20190701.xlsx", {"Sheet1": [CASME2_HEADER_2019, *CASME2_ROWS_2019],
                                                      "Sheet2": [], "Sheet3": []})
    for subject, clip, _, onset, _, offset, *_ in CASME2_ROWS_2019:
        write_frames(root / tree / f"sub{subject}" / clip, range(onset, offset + 1), frame_name)
    return root


# ---------------------------------------------------------------------------------------------- SAMM
SAMM_PREAMBLE = [["SAMM Dataset - Master FACS Codes"], [], ["(update note)"], [], [], ["Symbol Key:"],
                 ['"/" = or'], ['"?" = some AUs have an unclear offset'], [], ["AU Help:"],
                 ['"L2 or R2" = unilateral AU 2'], ['"A2" = asymmetric AU 2'], []]   # E8: 13 rows, same shape
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
SAMM_ROWS = [   # E8, as they are
    ["006", "006_1_2", 1, 5562, 5588, 5632, 71, "Micro - 1/2", "4+7", "Anger", 3, None],
    ["028", "028_4_1", 4, 1071, 1143, 1134, 64, "Micro - 1/2", "A14C", "Contempt", 7, "Blinks"],
    ["032", "032_3_1", 3, 4896, 1930, 4970, 75, "Micro - 1/2", "4A", "Anger", 3, None],
]


def make_samm(root: Path) -> Path:
    """SAMM (E8): sheet `MICRO_ONLY` with its description block above the header, and frames
    `<root>/006/006_1_2/006_05562.jpg` (5-digit numbers) from onset to offset."""
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", {"MICRO_ONLY": [*SAMM_PREAMBLE, SAMM_HEADER, *SAMM_ROWS]})
    for subject, clip, _, onset, _, offset, *_ in SAMM_ROWS:
        write_frames(root / subject / clip, range(onset, offset + 1), f"{subject}_{{:05d}}.jpg")
    return root
