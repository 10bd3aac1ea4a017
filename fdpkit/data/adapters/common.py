"""The adapter base class and what every adapter shares: reading a sheet id as folder names,
finding a clip's frame folder under the dataset root, and the strict/lenient collection of row
problems."""

from __future__ import annotations

import logging
import re
from pathlib import Path, PureWindowsPath

from fdpkit.data.frames import FRAME_EXTENSIONS, index_frames, links_outside

from .sheets import (AdapterError, RowError, SheetRow, choose_sheet, find_header, read_workbook,
                     table_from_sheet)

log = logging.getLogger("fdpkit.adapters")


# -------------------------------------------------------------------------------------------- ids
def id_parts(text) -> tuple[str, ...]:
    """The folder names a sheet's subject or clip id spells: '\\' read as '/', surrounding blanks,
    empty and '.' parts dropped. The one reading of an id: `tidy_id`, `clip_key` and
    `path_problem` all go through it."""
    return tuple(p for p in str(text).strip().replace("\\", "/").split("/") if p not in ("", "."))


def tidy_id(text: str) -> str:
    """The id as the manifest writes it: 'EP01_01/.' and './EP01_01' -> 'EP01_01'."""
    return "/".join(id_parts(text))


def clip_key(text) -> str:
    """How subject and clip ids are compared (duplicates, fixes): tidied and case-folded
    ('EP01_01', 'ep01_01' and 'EP01_01/.' are one clip)."""
    return tidy_id(text).casefold()


def path_problem(text: str, what: str) -> str | None:
    """Why a sheet id cannot name one folder under the root: absolute, a drive, a '..' part, several
    folders, or none ('.')."""
    parts = id_parts(text)
    if text.replace("\\", "/").startswith("/") or PureWindowsPath(text).drive or PureWindowsPath(text).is_absolute():
        return f"{what} {text!r} is an absolute path; the sheet must name a folder under the dataset root"
    if ".." in parts:
        return f"{what} {text!r} contains '..'; the sheet must name a folder under the dataset root"
    if len(parts) > 1:
        return f"{what} {text!r} is a path, not one folder name"
    if not parts:
        return f"{what} {text!r} names no folder; the sheet must name a folder under the dataset root"
    return None


# ---------------------------------------------------------------------------------------- folders
class FolderFinder:
    """Resolve child folders by exact name, else by a unique case-insensitive match (CAS(ME)^3's
    sheet writes spNO.1 where some copies have spNo.1); directory listings are cached."""

    def __init__(self):
        self._listing: dict[Path, list[Path]] = {}

    def children(self, parent: Path) -> list[Path]:
        if parent not in self._listing:
            try:
                self._listing[parent] = sorted(p for p in parent.iterdir() if p.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                self._listing[parent] = []
        return self._listing[parent]

    def child(self, parent: Path, name: str) -> Path | None:
        exact = parent / name
        if exact.is_dir():
            return exact
        matches = [p for p in self.children(parent) if p.name.lower() == name.lower()]
        return matches[0] if len(matches) == 1 else None

    def path(self, base: Path, *parts: str) -> Path | None:
        current = base
        for part in parts:
            current = self.child(current, part)
            if current is None:
                return None
        return current


def relative(root: Path, folder: Path) -> str:
    return folder.relative_to(root).as_posix()


def clip_frames(root: Path, frame_dir: str) -> dict[int, Path]:
    """Frame number -> file of a clip folder, or RowError naming the folder and the problem."""
    folder = root / frame_dir
    if not folder.is_dir():
        raise RowError(f"frame folder {frame_dir} does not exist under {root}")
    real_root, real = root.resolve(), folder.resolve()
    if real != real_root and real_root not in real.parents:
        raise RowError(f"frame folder {frame_dir} resolves to {real}, outside the dataset root {real_root} "
                       "(a symlink?); frames must live under the root: point --root at the real folder")
    try:
        frames = index_frames(folder)
    except ValueError as error:
        raise RowError(f"frame folder {frame_dir}: {str(error).split(': ', 1)[-1]} "
                       "(raw and cropped names, or jpg and png, mixed in one folder)") from None
    except OSError as error:
        raise RowError(f"frame folder {frame_dir} cannot be listed: {error}") from None
    outside = links_outside(frames.values(), real_root)
    if outside:
        name, target = outside[0]
        raise RowError(f"frame file {frame_dir}/{name} resolves to {target}, outside the dataset root "
                       f"{real_root} (a symlink; {len(outside)} such file(s)); frames must live under the root: "
                       "copy the files, or point --root at a folder that holds them")
    if not frames:
        others = sorted({p.suffix.lower() or p.name for p in folder.iterdir()
                         if p.is_file() and not p.name.startswith(".")})
        found = f"; it holds {', '.join(others[:8])} files" if others else " (it is empty)"
        raise RowError(f"frame folder {frame_dir} holds no frame images "
                       f"({', '.join(FRAME_EXTENSIONS)}){found}")
    return frames


# ------------------------------------------------------------------------------ problem collection
class Collector:
    """Rows leave the pipeline here: `excluded` (outside the protocol: always listed and counted),
    `invalid` (strict: an error naming the row; lenient: skipped with the reason)."""

    def __init__(self, dataset: str, sheet: str, lenient: bool):
        self.dataset, self.sheet, self.lenient = dataset, sheet, lenient
        self.records: list[dict] = []
        self.errors: list[str] = []

    def name(self, row: SheetRow) -> str:
        who = ", ".join(p for p in (f"subject {row.subject or row.text('subject') or '?'}",
                                    f"clip {row.clip or row.text('clip') or '?'}"))
        return f"{self.sheet} row {row.sheet_row} ({who})"

    def _record(self, row: SheetRow, status: str, reason: str):
        self.records.append({
            "dataset": self.dataset, "sheet_row": row.sheet_row,
            "subject": row.subject or row.text("subject"), "clip": row.clip or row.text("clip"),
            "emotion": row.text("emotion"), "status": status, "reason": reason,
        })

    def excluded(self, row: SheetRow, reason: str):
        self._record(row, "excluded", reason)

    def invalid(self, row: SheetRow, reason: str):
        self._record(row, "skipped", reason)
        self.errors.append(f"{self.name(row)}: {reason}")
        if self.lenient:
            log.warning("%s: skipped %s: %s", self.dataset, self.name(row), reason)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    def raise_if_strict(self):
        if self.errors and not self.lenient:
            shown = "\n  ".join(self.errors[:50])
            more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
            raise AdapterError(f"{self.dataset}: {len(self.errors)} bad row(s) (fix the data, add a fix "
                               f"under data_manifests/fixes/, or use --lenient to skip them):\n  {shown}{more}")


# ------------------------------------------------------------------------------------ base adapter
class Adapter:
    """One corpus as distributed. Subclasses say how to read the sheet, which subject and clip a row
    is, and where its frames are; `fdpkit.data.adapters.build_manifest` does the rest."""

    name = ""
    sheet_patterns: tuple[str, ...] = ()   # known annotation file names (case-insensitive fnmatch)
    frame_bases: tuple[str, ...] = (".",)  # where subject folders may live, relative to root
    sheet_folders: tuple[str, ...] = ()    # folders above the root that may hold the sheet (CAS(ME)^3)
    needed = ("subject", "clip", "onset", "offset", "emotion")
    # How this corpus spells its ids (full-match regexes; None: not checked). A sheet whose ids
    # mostly look like another corpus' is refused as "a sheet of the wrong dataset".
    subject_signature: str | None = None
    clip_signature: str | None = None

    def __init__(self):
        self.sheet_name = ""  # the worksheet read (recorded in the log and the manifest meta)
        self.folders = FolderFinder()
        self.base: Path | None = None
        self._frames: dict[str, dict | RowError] = {}

    def frames(self, root: Path, frame_dir: str) -> dict[int, Path]:
        """`clip_frames`, once per folder (CAS(ME)^2 rows share the long video's folder)."""
        if frame_dir not in self._frames:
            try:
                self._frames[frame_dir] = clip_frames(root, frame_dir)
            except RowError as error:
                self._frames[frame_dir] = error
        found = self._frames[frame_dir]
        if isinstance(found, RowError):
            raise RowError(str(found))
        return found

    def looks_like(self, subject: str, clip: str) -> bool | None:
        """Do these ids look like this corpus' (None when the adapter has no signature)?"""
        if self.subject_signature is None and self.clip_signature is None:
            return None
        return ((self.subject_signature is None or re.fullmatch(self.subject_signature, subject) is not None)
                and (self.clip_signature is None or re.fullmatch(self.clip_signature, clip) is not None))

    # reading
    def read(self, path: Path, sheet: str | None = None) -> list[SheetRow]:
        """The one sheet with a recognisable header (column names by the alias table); with several
        such sheets, `sheet` (`--sheet NAME`) must choose, else an error lists them."""
        book = read_workbook(path)
        name = choose_sheet(path, book, sheet, [n for n, rows in book.items() if find_header(rows) is not None])
        self.sheet_name = name
        return table_from_sheet(path, name, book[name], self.needed)

    # identity
    def identify(self, row: SheetRow) -> None:
        raise NotImplementedError

    def assign(self, rows: list[SheetRow]) -> None:
        """Hook over all identified rows (CAS(ME)^3 disambiguates repeated file names here)."""

    # protocol and annotation rules
    def pre_exclude(self, row: SheetRow) -> str | None:
        """A reason to exclude the row before the class map is consulted (CAS(ME)^2 macro rows)."""
        return None

    def adjust(self, row: SheetRow) -> None:
        """Corpus-specific annotation rules applied after the fixes (CAS(ME)^2's offset 0)."""

    # frames
    def probes(self, row: SheetRow) -> list[tuple[str, ...]]:
        """Folder paths (relative to a frame base) whose existence shows the base holds this corpus."""
        return [self.clip_parts(row)[:1]]

    def clip_parts(self, row: SheetRow) -> tuple[str, ...]:
        raise NotImplementedError

    def pick_base(self, root: Path, rows: list[SheetRow]) -> None:
        """Choose the frame tree: root itself or one known sub-folder; two candidates is an error."""
        candidates = []
        for rel in self.frame_bases:
            folder = root if rel == "." else self.folders.path(root, *rel.split("/"))
            if folder is not None and folder.is_dir() and folder not in candidates:
                candidates.append(folder)
        sample = rows[:200]
        hits = [c for c in candidates
                if any(self.folders.path(c, *parts) for row in sample for parts in self.probes(row))]
        if len(hits) > 1:
            names = ", ".join(relative(root, h) or "." for h in hits)
            raise AdapterError(f"{self.name}: several frame trees under {root} ({names}); pass --root "
                               "pointing at the one to use (e.g. raw or cropped frames)")
        self.base = hits[0] if hits else root

    def locate(self, root: Path, row: SheetRow) -> str:
        """The clip's frame folder relative to root, or RowError."""
        parts = self.clip_parts(row)
        folder = self.folders.path(self.base or root, *parts)
        if folder is None:
            shown = "/".join(p for p in (relative(root, self.base or root), *parts) if p not in ("", "."))
            raise RowError(f"frame folder {shown} does not exist under {root}")
        return relative(root, folder)
