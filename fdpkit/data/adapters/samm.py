"""SAMM as distributed: `<root>/006/006_1_2/006_05562.jpg` and `SAMM_Micro_FACS_Codes_v2.xlsx`, whose
header row (Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration,
Action Units, Notes, Estimated Emotion...) sits below a block of descriptive text: it is found by
looking for the row that names a subject and a file name column.

Manifest `subject` is the three-digit folder name (`6` or `006` -> `006`); `clip` is the Filename.
"""

from __future__ import annotations

from .common import Adapter
from .sheets import RowError, SheetRow, number_id


class Samm(Adapter):
    name = "samm"
    sheet_patterns = ("samm*micro*facs*", "samm*codes*", "samm*.xls*")
    frame_bases = (".", "SAMM", "SAMM_CROP", "SAMM_cropped")
    clip_signature = r"\d{3}_\d+_\d+"

    def identify(self, row: SheetRow) -> None:
        row.subject = number_id(row.values.get("subject"), 3, "subject")
        row.clip = row.text("clip")
        if not row.clip:
            raise RowError("the Filename cell is empty")

    def clip_parts(self, row: SheetRow) -> tuple[str, ...]:
        return (row.subject, row.clip)
