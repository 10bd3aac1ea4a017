"""CAS(ME)^3 part A as distributed: `part_A/annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`
(sheet `label`: Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion; beside it the
macro-expression sheet `cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx`, not read) and the
frames of each whole video, `<tree>/<Subject>/<Filename>/color/<n>.jpg` (`depth/<n>.png` beside
`color/`), where `<tree>` under the `part_A` root is the distributed archive's
`data/part_A_split/part_A` or another copy's `data/Compressed_version1_seperate_compress` (the
tree used is logged and recorded as `frame_tree`). Also accepted: `--root` at the tree itself (the
sheet is then found in `part_A/annotation/` above it), and the per-expression clip folders some
copies carry, `<root>/<subject>_<filename>_<onset>/<n>.jpg`.

Manifest `subject` is spelled as in the sheet (`spNO.1`; folders spelled `spNo.1` are found by a
case-insensitive match). One video can hold several expressions, so the same Filename can appear
several times for one subject: such rows get the clip id `<Filename>_<onset>` (onset as written in
the sheet, before fixes); a Filename that appears once keeps the plain `<Filename>` as its clip id.
The real videos have dropped frames: see MAX_MISSING_SHARE in `fdpkit.data.adapters.collect`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .common import Adapter, relative
from .sheets import RowError, SheetRow


class Casme3(Adapter):
    name = "casme3"
    sheet_patterns = ("cas(me)3_part_a_me_label*", "cas(me)^3_part_a_me_label*", "*part_a_me_label*")
    frame_bases = (".", "data/part_A_split/part_A", "data/Compressed_version1_seperate_compress",
                   "part_A/data/part_A_split/part_A", "part_A/data/Compressed_version1_seperate_compress",
                   "data", "part_A", "part_A/data", "data/part_A", "ME_A", "Part_A_ME_clip/frame", "frame")
    sheet_folders = ("annotation", "Annotation")
    subject_signature = r"(?i)sp\s*no\.?\s*\d+"   # spNO.1

    def identify(self, row: SheetRow) -> None:
        row.subject = row.text("subject")
        if not row.subject:
            raise RowError("the Subject cell is empty")
        row.extra["filename"] = row.clip = row.text("clip")
        if not row.clip:
            raise RowError("the Filename cell is empty")

    def assign(self, rows: list[SheetRow]) -> None:
        counts = Counter((r.subject, r.extra["filename"]) for r in rows)
        for row in rows:
            if counts[(row.subject, row.extra["filename"])] > 1:
                row.clip = f"{row.extra['filename']}_{row.sheet_onset or 'row' + str(row.sheet_row)}"

    def _clip_folder_name(self, row: SheetRow) -> str:
        return f"{row.subject}_{row.extra['filename']}_{row.sheet_onset}"

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
