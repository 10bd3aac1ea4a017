"""CASME II as distributed: `<root>/sub01/EP02_01f/img46.jpg` (or `reg_img46.jpg` in the cropped
release) and `CASME2-coding-20140508.xlsx` (Subject, Filename, blank columns, OnsetFrame, ApexFrame,
OffsetFrame, Action Units, Estimated Emotion; '/' where the apex was not annotated).

Manifest `subject` is the two-digit number of the folder (`sub01` -> `01`); `clip` is the Filename.
"""

from __future__ import annotations

from .common import Adapter
from .sheets import RowError, SheetRow, number_id


class Casme2(Adapter):
    name = "casme2"
    sheet_patterns = ("casme2*coding*", "casme2*label*", "casme2*.xls*", "casme*2*cod*")
    # --root may be the folder holding sub01..sub26, or a folder holding exactly one of these trees
    frame_bases = (".", "CASME2-RAW", "CASME2_RAW", "CASME2_RAW_selected", "CASME2-RAW-selected",
                   "Cropped", "CASME2_Cropped", "CASME2-Cropped", "Cropped_original")
    clip_signature = r"(?i)EP\d+_\d+[a-z]*"

    def identify(self, row: SheetRow) -> None:
        row.subject = number_id(row.values.get("subject"), 2, "subject")
        row.clip = row.text("clip")
        if not row.clip:
            raise RowError("the Filename cell is empty")

    def clip_parts(self, row: SheetRow) -> tuple[str, ...]:
        return (f"sub{row.subject}", row.clip)
