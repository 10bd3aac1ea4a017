"""CAS(ME)^3 part A as distributed: `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (sheet `label`:
Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion) and the frames of each video,
`<root>/<subject>/<filename>/color/<n>.jpg` (depth frames beside `color/`). Also accepted: the
per-expression clip folders some copies carry, `<root>/<subject>_<filename>_<onset>/<n>.jpg`.

Manifest `subject` is spelled as in the sheet (`spNO.1`; folders spelled `spNo.1` are found by a
case-insensitive match). One video can hold two expressions, so the same Filename can appear twice
for one subject: such rows get the clip id `<Filename>_<onset>` (onset as written in the sheet,
before fixes); a Filename that appears once keeps the plain `<Filename>` as its clip id.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .common import Adapter, RowError, SheetRow, cell_text, relative


class Casme3(Adapter):
    name = "casme3"
    sheet_patterns = ("cas(me)3_part_a_me_label*", "cas(me)^3_part_a_me_label*", "*part_a_me_label*")
    frame_bases = (".", "data", "part_A", "part_A/data", "data/part_A", "ME_A", "Part_A_ME_clip/frame",
                   "frame")
    subject_signature = r"(?i)sp\s*no\.?\s*\d+"   # spNO.1

    def sheet_order(self, book: dict):
        # the label sheet first when the workbook names one
        return sorted(book.items(), key=lambda item: item[0].strip().lower() != "label")

    def identify(self, row: SheetRow) -> None:
        row.subject = row.text("subject")
        if not row.subject:
            raise RowError("the Subject cell is empty")
        row.extra["filename"] = row.clip = row.text("clip")
        if not row.clip:
            raise RowError("the Filename cell is empty")
        row.extra["sheet_onset"] = cell_text(row.values.get("onset"))

    def assign(self, rows: list[SheetRow]) -> None:
        counts = Counter((r.subject, r.extra["filename"]) for r in rows)
        for row in rows:
            if counts[(row.subject, row.extra["filename"])] > 1:
                row.clip = f"{row.extra['filename']}_{row.extra['sheet_onset'] or 'row' + str(row.sheet_row)}"

    def _clip_folder_name(self, row: SheetRow) -> str:
        return f"{row.subject}_{row.extra['filename']}_{row.extra['sheet_onset']}"

    def probes(self, row: SheetRow) -> list[tuple[str, ...]]:
        return [(row.subject,), (self._clip_folder_name(row),)]

    def clip_parts(self, row: SheetRow) -> tuple[str, ...]:
        return (row.subject, row.extra["filename"], "color")

    def locate(self, root: Path, row: SheetRow) -> str:
        base = self.base or root
        video = self.folders.path(base, row.subject, row.extra["filename"])
        clip = self.folders.path(base, self._clip_folder_name(row))
        for folder in (video, clip):
            if folder is None:
                continue
            colour = self.folders.child(folder, "color")
            return relative(root, colour if colour is not None else folder)
        where = relative(root, base) if base != root else ""
        tried = " or ".join("/".join(p for p in (where, *parts) if p)
                            for parts in ((row.subject, row.extra["filename"], "color"),
                                          (self._clip_folder_name(row),)))
        raise RowError(f"frame folder {tried} does not exist under {root}")
