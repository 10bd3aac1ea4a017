"""CAS(ME)^2 as distributed: long videos as frames, `<root>/rawpic/s15/15_0101disgustingteeth/img001.jpg`
(frame numbers zero-padded to three digits: img001 ... img099, img100, img1000),
and `CAS(ME)^2code_final.xlsx` (or the "(Updated)" edition). Its first sheet usually has no header
row; the columns are, in order: participant, video name + expression number (`disgust1_1`), onset,
apex, offset, action units, estimated emotion, expression type (macro/micro), self-reported emotion.
A sheet whose first row does name its columns is read through the alias table instead.

Two more sheets map the codes to folders: "naming rule1" (folder number, folder name such as `s15`,
participant number used in the code sheet) and "naming rule2" (video code `0101`, video name
`disgust1`); the clip folder is the subject folder's child named `<number>_<code>...`. At least one
long video sits in another participant's folder (`rawpic/s19/23_0502funnyerrors`, used by s23): when
the subject's own folder has none, the one folder `<number>_<code>...` (its own folder number) under
any other subject folder is used and the row's `notes` say where it was found.

Manifest `subject` is the folder name, `s15`; `clip` is the sheet's video name + expression number
(`disgust1_1`). Onset/apex/offset index frames of the long video. Recognition uses the
micro-expression rows: macro-expression rows are excluded (listed and counted as "not in protocol").
A 0 means "not annotated" (as the public readers treat it): an apex of 0 is estimated as
floor((onset + offset) / 2) and flagged `apex_estimated`; an offset of 0 is set to apex + (apex -
onset); both are noted in `fixes`. Apex and offset both 0 is a row error.
"""

from __future__ import annotations

import re
from pathlib import Path

from fdpkit.data.protocols import emotion_key

from .common import Adapter, relative
from .sheets import (RowError, SheetRow, cell_text, choose_sheet, find_header, parse_frame, read_workbook, records,
                     table_from_sheet)

POSITIONAL = ("subject", "clip", "onset", "apex", "offset", "aus", "emotion", "type", "self_report")


class CasmeSq(Adapter):
    name = "casme_sq"
    sheet_patterns = ("cas(me)^2*code*", "cas(me)2*code*", "casme^2*code*", "*code_final*")
    frame_bases = ("rawpic", ".")
    clip_signature = r"(?i)(?!ep\d)[a-z]+\d*_\d+"   # disgust1_1, anger1_2
    needed = ("subject", "clip", "onset", "offset", "emotion", "type")

    def __init__(self):
        super().__init__()
        self.participants: dict[int, str] = {}   # participant number in the code sheet -> 's15'
        self.videos: dict[str, str] = {}         # video name (lower case) -> 4-digit code

    def read(self, path: Path, sheet: str | None = None) -> list[SheetRow]:
        book = read_workbook(path)
        names = list(book)
        coded = [n for n in names if "code" in n.lower()]
        code = choose_sheet(path, book, sheet, coded or names[:1])
        self.sheet_name = code
        rule1 = next((n for n in names if "rule1" in n.lower().replace(" ", "")), None)
        rule2 = next((n for n in names if "rule2" in n.lower().replace(" ", "")), None)
        if rule1 is None and rule2 is None and len(names) >= 3:   # sheets in the public loaders' order
            rule1, rule2 = names[1], names[2]
        self.participants = self._participants(book.get(rule1, []))
        self.videos = self._videos(book.get(rule2, []))
        rows = book[code]
        if find_header(rows, scan=5) is not None:   # an edition with a header row
            return table_from_sheet(path, code, rows, self.needed)
        return records(rows, -1, {name: i for i, name in enumerate(POSITIONAL)})

    @staticmethod
    def _participants(rows) -> dict[int, str]:
        out = {}
        for _, values in rows:
            cells = [cell_text(v) for v in values[:3]]
            if len(cells) < 3 or not cells[2].isdigit():
                continue
            folder = cells[1] if re.fullmatch(r"[sS]?\d+", cells[1]) else cells[0]
            digits = re.sub(r"\D", "", folder)
            if digits:
                out[int(cells[2])] = f"s{int(digits):02d}"
        return out

    @staticmethod
    def _videos(rows) -> dict[str, str]:
        out = {}
        for _, values in rows:
            cells = [cell_text(v) for v in values[:2]]
            if len(cells) == 2 and cells[0].isdigit() and cells[1]:
                out[cells[1].lower()] = cells[0].zfill(4)
        return out

    def identify(self, row: SheetRow) -> None:
        raw = row.text("subject")
        if re.fullmatch(r"[sS]\d+", raw):
            row.subject = f"s{int(raw[1:]):02d}"
        elif raw.isdigit():
            number = int(raw)
            if self.participants and number not in self.participants:
                raise RowError(f"participant {number} is not in the 'naming rule1' sheet")
            row.subject = self.participants.get(number, f"s{number:02d}")
        else:
            raise RowError(f"participant {raw!r} is not a participant number")
        row.clip = row.text("clip")
        if not row.clip:
            raise RowError("the video name + expression number cell is empty")
        video = row.clip.split("_")[0]
        code = self.videos.get(video.lower()) or (video.zfill(4) if video.isdigit() else None)
        if code is None:
            raise RowError(f"video {video!r} is not in the 'naming rule2' sheet (video code unknown)")
        row.extra["code"] = code

    def pre_exclude(self, row: SheetRow) -> str | None:
        kind = emotion_key(row.text("type"))
        if "macro" in kind:
            return "not in protocol (macro-expression; recognition uses the micro-expression rows)"
        if "micro" in kind:
            return None
        if not kind:
            raise RowError("expression type (macro/micro) is empty")
        raise RowError(f"expression type {row.text('type')!r} is neither macro- nor micro-expression")

    def adjust(self, row: SheetRow) -> None:
        onset, apex = parse_frame(row.values.get("onset"), "onset"), parse_frame(row.values.get("apex"), "apex")
        offset = parse_frame(row.values.get("offset"), "offset")
        if apex == 0 and offset == 0:
            raise RowError("apex and offset are both 0 (not annotated): nothing to estimate them from")
        if apex == 0 and onset is not None and offset is not None:
            row.values["apex"] = (onset + offset) // 2
            row.apex_estimated = True
            row.fixes.append(f"apex 0->{row.values['apex']} (rule: apex not annotated; floor((onset + offset) / 2))")
        if offset != 0:
            return
        if onset is None or apex is None:
            raise RowError("offset is 0 (not annotated) and onset or apex is missing too")
        row.values["offset"] = 2 * apex - onset
        row.fixes.append(f"offset 0->{2 * apex - onset} (rule: offset not annotated; apex + (apex - onset))")

    def clip_parts(self, row: SheetRow) -> tuple[str, ...]:
        return (row.subject,)

    def locate(self, root: Path, row: SheetRow) -> str:
        base, code = self.base or root, row.extra["code"]
        number = int(row.subject[1:])
        own = re.compile(rf"^0*{number}_{re.escape(code)}(\D|$)")      # 15_0101..., this subject's number
        anyone = re.compile(rf"^\d+_{re.escape(code)}(\D|$)")           # any number
        subject_dir = self.folders.path(base, row.subject)
        if subject_dir is not None:
            children = self.folders.children(subject_dir)
            for pattern in (own, anyone):
                found = [d for d in children if pattern.match(d.name)]
                if len(found) == 1:
                    return relative(root, found[0])
                if len(found) > 1:
                    raise RowError(f"{len(found)} video folders for code {code} ({', '.join(d.name for d in found)}) "
                                   f"in {relative(root, subject_dir)}")
        elsewhere = [d for other in self.folders.children(base) if other != subject_dir
                     for d in self.folders.children(other) if own.match(d.name)]
        if len(elsewhere) == 1:
            folder = elsewhere[0]
            row.notes.append(f"video folder found under {folder.parent.name} ({relative(root, folder)}), "
                             f"not under {row.subject}")
            return relative(root, folder)
        where = relative(root, subject_dir) if subject_dir is not None else f"{relative(root, base)}/{row.subject}"
        extra = (f"; {len(elsewhere)} candidates elsewhere: {', '.join(relative(root, d) for d in elsewhere)}"
                 if elsewhere else "")
        raise RowError(f"no video folder for code {code} ({number}_{code}...) in {where}{extra}")
