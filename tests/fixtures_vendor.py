"""Tiny corpora in each vendor's layout, written at test time (frames are 4x4 images: manifests
never look inside them)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openpyxl


def encode(image: np.ndarray, ext: str = ".jpg") -> bytes:
    """The bytes of `image` as an `ext` file."""
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


TINY_IMAGES = {ext: encode(np.full((4, 4), 128, np.uint8), ext) for ext in (".jpg", ".png")}


def write_frames(folder: Path, numbers, name: str = "img{}.jpg") -> Path:
    """A tiny image (encoded as the name's extension) as folder/name.format(n) for each number."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        path = folder / name.format(n)
        path.write_bytes(TINY_IMAGES[path.suffix.lower()])
    return folder


def write_xlsx(path: Path, sheets: dict) -> Path:
    """sheets: {title: [row, ...]} in workbook order; None cells stay empty."""
    book = openpyxl.Workbook()
    for i, (title, rows) in enumerate(sheets.items()):
        ws = book.active if i == 0 else book.create_sheet()
        ws.title = title
        for row in rows:
            ws.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def _span(onset, offset, margin=2):
    return range(max(1, int(onset) - margin), int(offset) + margin + 1)


# ------------------------------------------------------------------------------------------ CASME II
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                 "Estimated Emotion"]
CASME2_ROWS = [  # subject, clip, onset, apex, offset, aus, emotion
    (1, "EP02_01f", 10, 14, 20, "12", "happiness"),
    (1, "EP03_02", 5, "/", 12, "4+9", "disgust"),          # apex not annotated
    (2, "EP01_11f", 3, 6, 9, "14", "repression"),
    (2, "EP06_01f", 4, 7, 11, "1+2", "surprise"),
    (3, "EP08_04", 2, 5, 8, "4", "others"),
    (3, "EP09_03", 6, 8, 12, "1+4", "fear"),                 # outside the 5-class protocol
]


def make_casme2(root: Path, rows=CASME2_ROWS, header=CASME2_HEADER, sheet="CASME2-coding-test.xlsx",
                frame_name="img{}.jpg", subject_folder="sub{:02d}", frames=True, extra_rows=()) -> Path:
    """A CASME II-style corpus (tiny frames from onset-2 to offset+2) and its coding sheet;
    `extra_rows` are appended to the sheet as they are (no frames)."""
    table = [header] + [[s, c, None, on, ap, off, None, au, emo] for s, c, on, ap, off, au, emo in rows]
    write_xlsx(root / sheet, {"Sheet1": table + [list(r) for r in extra_rows]})
    if frames:
        for s, c, on, _, off, _, _ in rows:
            number = int(str(s).lstrip("sub"))
            write_frames(root / subject_folder.format(number) / c, _span(on, off), frame_name)
    return root


# -------------------------------------------------------------------------------------------- SAMM
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Type", "Action Units", "Notes", "Estimated Emotion", "Objective Classes"]
SAMM_ROWS = [  # subject, clip, onset, apex, offset, aus, emotion
    (6, "006_1_2", 101, 105, 110, "R12", "Happiness"),
    (6, "006_1_3", 201, 204, 208, "4+7", "Anger"),
    (7, "007_3_1", 51, 55, 60, "14", "Contempt"),
    (7, "007_5_2", 31, 33, 36, "1+2", "Surprise"),
    (11, "011_2_1", 71, 74, 78, "12", "Others"),
    (11, "011_2_4", 81, 84, 88, "9", "Disgust"),           # outside the 5-class protocol
]
SAMM_PREAMBLE = [["SAMM: Spontaneous Micro-Facial Movement Dataset"], [], ["Version 2 -- FACS codes"],
                 ["Notes: frame numbers refer to the image files"], [None, "Coded by three FACS coders"]]


def make_samm(root: Path, rows=SAMM_ROWS, sheet="SAMM_Micro_FACS_Codes_test.xlsx", preamble=SAMM_PREAMBLE,
              frames=True, pad_subject=False) -> Path:
    table = [*preamble, SAMM_HEADER]
    for s, c, on, ap, off, au, emo in rows:
        subject = f"{s:03d}" if pad_subject else s
        table.append([subject, c, 1, on, ap, off, off - on + 1, "Micro - 1/2", au, None, emo, 1])
    write_xlsx(root / sheet, {"FACS codes": table})
    if frames:
        for s, c, on, _, off, _, _ in rows:
            write_frames(root / f"{s:03d}" / c, _span(on, off), f"{s:03d}_{{:05d}}.jpg")
    return root


# --------------------------------------------------------------------------------------- CAS(ME)^2
CASME_SQ_ROWS = [  # participant, clip, onset, apex, offset, aus, emotion, type, self report
    (1, "disgust1_1", 5, 8, 12, "4+9", "negative", "micro-expression", "disgust"),
    (1, "disgust1_2", 20, 26, 40, "4", "negative", "macro-expression", "disgust"),
    (1, "anger1_1", 10, 13, 0, "4+7", "negative", "micro-expression", "anger"),   # offset 0: not annotated
    (2, "disgust2_1", 6, 9, 14, "12", "positive", "micro-expression", "happy"),
    (2, "anger1_1", 3, 5, 7, "1+2", "surprise", "micro-expression", "surprise"),
    (2, "anger1_2", 15, 17, 19, "14", "others", "micro-expression", "others"),
]
CASME_SQ_RULE1 = [(15, "s15", 1), (16, "s16", 2)]
CASME_SQ_RULE2 = [("0101", "disgust1"), ("0102", "disgust2"), ("0401", "anger1")]
CASME_SQ_FOLDERS = {"0101": "disgustingteeth", "0102": "disgustingface", "0401": "angerboy"}


def make_casme_sq(root: Path, rows=CASME_SQ_ROWS, sheet="CAS(ME)^2code_final.xlsx", n_frames=45,
                  header=None) -> Path:
    code_rows = ([header] if header else []) + [list(r) for r in rows]
    write_xlsx(root / sheet, {"CASFEcode_final": code_rows, "naming rule1": CASME_SQ_RULE1,
                              "naming rule2": CASME_SQ_RULE2})
    for number, folder, _ in CASME_SQ_RULE1:
        for code, name in CASME_SQ_FOLDERS.items():
            write_frames(root / "rawpic" / folder / f"{number}_{code}{name}", range(1, n_frames + 1))
    return root


# --------------------------------------------------------------------------------------- CAS(ME)^3
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
CASME3_ROWS = [  # subject, filename, onset, apex, offset, au, objective class, emotion
    ("spNO.1", "a", 10, 12, 15, "4", 1, "disgust"),
    ("spNO.1", "f", 3, 5, 8, "12", 2, "happy"),
    ("spNO.1", "f", 20, 22, 25, "1+2", 3, "surprise"),        # same video, second expression
    ("spNO.2", "b", 4, 6, 9, "14", 4, "Others"),
    ("spNO.2", "c", 7, 9, 12, "4+7", 1, "anger"),
    ("spNO.2", "d", 2, 4, 6, "15", 5, "sad"),
    ("spNO.2", "e", 5, 6, 9, "1+2+4", 6, "fear"),
]


def make_casme3(root: Path, rows=CASME3_ROWS, sheet="cas(me)3_part_A_ME_label_JpgIndex_test.xlsx",
                folder_case=lambda s: s.replace("NO", "No"), n_frames=30) -> Path:
    write_xlsx(root / "annotation" / sheet, {"label": [CASME3_HEADER, *rows]})
    for subject, filename, *_ in rows:
        video = root / "data" / folder_case(subject) / filename
        write_frames(video / "color", range(1, n_frames + 1), "{}.jpg")
        write_frames(video / "depth", range(1, 3), "{}.png")
    return root


# ----------------------------------------------------------------------------------------- SynthME
SYNTHME_ROWS = [(s, f"EP0{k}_01", 2, 5, 9, "", emo) for s in (1, 2)
                for k, emo in enumerate(["happiness", "disgust", "surprise", "repression", "others"], start=1)]


def make_synthme(root: Path) -> Path:
    return make_casme2(root, rows=SYNTHME_ROWS, sheet="SynthME-coding.xlsx")
