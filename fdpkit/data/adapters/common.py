"""Shared pieces of the corpus adapters: reading spreadsheets as distributed, column aliases, subject
ids, frame-folder checks and the strict/lenient collection of row problems."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from fdpkit.data.frames import FRAME_EXTENSIONS, index_frames
from fdpkit.data.protocols import is_missing

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv")
log = logging.getLogger("fdpkit.adapters")

# Column spellings seen across spreadsheet editions -> the adapters' field names. Headers are
# compared after lower-casing and dropping everything but letters and digits ('Onset Frame' ==
# 'OnsetFrame' == 'onset_frame'); within one field the first spelling present wins.
ALIASES = {
    "subject": ("Subject", "Sub", "Subject ID", "sub_ID", "Participant", "Subjects"),
    "clip": ("Filename", "File name", "Filenames", "Clip", "Clip name", "fold_name", "Material",
             "Video name & expression number", "Video", "Video name", "Sequence", "seq"),
    "onset": ("OnsetFrame", "Onset Frame", "Onset", "OnsetF", "Onset frames"),
    "apex": ("ApexFrame", "Apex Frame", "Apex", "ApexF", "ApexF1", "Apex frames"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset", "OffsetF", "Offset frames"),
    "aus": ("Action Units", "Action Unit", "AUs", "AU"),
    "emotion": ("Estimated Emotion", "Estimated emotions", "Emotion", "Emotions"),
    "type": ("Expression type", "Type"),
}


def header_key(value) -> str:
    return re.sub(r"[^a-z0-9]", "", str(value).lower()) if value is not None else ""


class AdapterError(ValueError):
    """The corpus cannot be read into a manifest; the message names the file, row and problem."""


class RowError(ValueError):
    """One spreadsheet row is unusable (strict: fatal; lenient: the row goes to <out>.skipped.csv)."""


def cell_text(value) -> str:
    """A cell as text: '' for empty/NaN, whole floats without '.0', strings stripped."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ------------------------------------------------------------------------------------ spreadsheets
def read_workbook(path: Path) -> dict[str, list[tuple[int, list]]]:
    """Every sheet as [(spreadsheet row number, [cell values])], rows numbered as Excel shows them."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"annotation spreadsheet {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            import openpyxl

            book = openpyxl.load_workbook(path, data_only=True)
            return {ws.title: [(i, list(r)) for i, r in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)]
                    for ws in book.worksheets}
        import pandas as pd

        if suffix == ".csv":
            frames = {path.stem: pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                                             skip_blank_lines=False)}
        elif suffix == ".xls":
            frames = pd.read_excel(path, sheet_name=None, header=None, dtype=object, engine="xlrd")
        else:
            raise AdapterError(f"{path}: not a spreadsheet ({', '.join(SPREADSHEET_SUFFIXES)})")
        return {name: [(i + 1, list(row)) for i, row in enumerate(frame.itertuples(index=False))]
                for name, frame in frames.items()}
    except AdapterError:
        raise
    except ImportError as error:
        raise AdapterError(f"{path}: cannot read {suffix} files ({error}); save the sheet as .xlsx") from None
    except Exception as error:  # a corrupt or foreign file: say which and why
        raise AdapterError(f"{path}: unreadable annotation spreadsheet ({type(error).__name__}: {error})") from None


def is_blank(values) -> bool:
    return all(cell_text(v) == "" for v in values)


def header_columns(values) -> dict[str, int]:
    """Field name -> column index for a header row, by the alias table."""
    keys = [header_key(v) for v in values]
    found = {}
    for name, spellings in ALIASES.items():
        for spelling in spellings:
            if header_key(spelling) in keys:
                found[name] = keys.index(header_key(spelling))
                break
    return found


def find_header(rows, needed=("subject", "clip"), scan: int = 60) -> int | None:
    """Position in `rows` of the first row that holds a column for every needed field (SAMM's
    header sits below a block of descriptive text)."""
    for position, (_, values) in enumerate(rows[:scan]):
        if set(needed) <= set(header_columns(values)):
            return position
    return None


@dataclass
class SheetRow:
    """One data row of the annotation sheet on its way to the manifest."""
    sheet_row: int                # row number as Excel shows it (1-based)
    data_index: int               # pandas' row index when the sheet is read with its header row
                                  # (= sheet_row - header row - 1), the index public loaders patch by
    values: dict                  # field -> raw cell value
    subject: str = ""
    clip: str = ""
    fixes: list = field(default_factory=list)
    apex_estimated: bool = False
    extra: dict = field(default_factory=dict)

    def text(self, name: str) -> str:
        return cell_text(self.values.get(name))


def records(rows, header_position: int, columns: dict[str, int]) -> list[SheetRow]:
    """Non-blank rows below the header (header_position -1: a sheet without header row)."""
    header_row = rows[header_position][0] if header_position >= 0 else 0
    out = []
    for sheet_row, values in rows[header_position + 1:]:
        if is_blank(values):
            continue
        picked = {name: (values[i] if i < len(values) else None) for name, i in columns.items()}
        out.append(SheetRow(sheet_row=sheet_row, data_index=sheet_row - header_row - 1, values=picked))
    return out


def table_from_sheet(path: Path, sheet: str, rows, needed) -> list[SheetRow]:
    """Header-detected table of one sheet; missing required columns are a file-level error."""
    position = find_header(rows)
    if position is None:
        raise AdapterError(f"{path} sheet {sheet!r}: no header row with a subject and a file name column "
                           f"(looked for {', '.join(ALIASES['subject'])} / {', '.join(ALIASES['clip'])})")
    columns = header_columns(rows[position][1])
    absent = [name for name in needed if name not in columns]
    if absent:
        detail = "; ".join(f"{name}: {', '.join(ALIASES[name])}" for name in absent)
        raise AdapterError(f"{path} sheet {sheet!r}: header row {rows[position][0]} lacks column(s) "
                           f"{', '.join(absent)} (accepted spellings: {detail})")
    return records(rows, position, columns)


# -------------------------------------------------------------------------------- ids and folders
def number_id(value, width: int, what: str) -> str:
    """1, 1.0, '1', '01', 'sub01', 's1' -> zero-padded digits ('01' for width 2, '006' for width 3)."""
    match = re.fullmatch(r"[A-Za-z_ .]*?(\d+)", cell_text(value))
    if not match:
        raise RowError(f"{what} {cell_text(value)!r} is not a subject number")
    return str(int(match.group(1))).zfill(width)


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
    if not frames:
        others = sorted({p.suffix.lower() or p.name for p in folder.iterdir()
                         if p.is_file() and not p.name.startswith(".")})
        found = f"; it holds {', '.join(others[:8])} files" if others else " (it is empty)"
        raise RowError(f"frame folder {frame_dir} holds no frame images "
                       f"({', '.join(FRAME_EXTENSIONS)}){found}")
    return frames


def parse_frame(value, what: str) -> int | None:
    """A frame-number cell -> int; None when not annotated; RowError for anything else."""
    if is_missing(value, frame=True):
        return None
    try:
        number = float(cell_text(value))
    except ValueError:
        raise RowError(f"{what} {cell_text(value)!r} is not a frame number") from None
    if not number.is_integer():
        raise RowError(f"{what} {cell_text(value)!r} is not a whole frame number")
    return int(number)


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
    needed = ("subject", "clip", "onset", "offset", "emotion")
    # How this corpus spells its ids (full-match regexes; None: not checked). A sheet whose ids
    # mostly look like another corpus' is refused as "a sheet of the wrong dataset".
    subject_signature: str | None = None
    clip_signature: str | None = None

    def __init__(self):
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
    def read(self, path: Path) -> list[SheetRow]:
        """The first sheet with a recognisable header (column names by the alias table)."""
        book = read_workbook(path)
        for sheet, rows in self.sheet_order(book):
            if find_header(rows) is not None:
                return table_from_sheet(path, sheet, rows, self.needed)
        raise AdapterError(f"{path}: no sheet has a header row with a subject and a file name column "
                           f"(looked for {', '.join(ALIASES['subject'])} / {', '.join(ALIASES['clip'])})")

    def sheet_order(self, book: dict):
        return list(book.items())

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
