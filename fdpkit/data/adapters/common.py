"""Shared pieces of the corpus adapters: reading spreadsheets as distributed, column aliases, subject
ids, frame-folder checks and the strict/lenient collection of row problems."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from fdpkit.data.frames import FRAME_EXTENSIONS, index_frames, links_outside
from fdpkit.data.protocols import ASCII_WHOLE, is_missing
from fdpkit.errors import BadInput

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


class AdapterError(BadInput):
    """The corpus cannot be read into a manifest; the message names the file, row and problem (exit 2)."""


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
class Sheet(list):
    """One worksheet: [(spreadsheet row number, [cell values])], rows numbered as Excel shows them;
    `hidden` holds the numbers of rows hidden in Excel (read like the others, counted in the summary)."""

    def __init__(self, rows=(), hidden=()):
        super().__init__(rows)
        self.hidden = frozenset(hidden)


def _hidden_rows(ws) -> set[int]:
    return {number for number, dim in ws.row_dimensions.items() if getattr(dim, "hidden", False)}


def read_workbook(path: Path) -> dict[str, Sheet]:
    """Every sheet as a `Sheet`, in workbook order."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"annotation spreadsheet {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            import openpyxl

            book = openpyxl.load_workbook(path, data_only=True)
            return {ws.title: Sheet([(i, list(r)) for i, r in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)],
                                    _hidden_rows(ws))
                    for ws in book.worksheets}
        import pandas as pd

        if suffix == ".csv":
            frames = {path.stem: pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                                             skip_blank_lines=False)}
        elif suffix == ".xls":
            frames = pd.read_excel(path, sheet_name=None, header=None, dtype=object, engine="xlrd")
        else:
            raise AdapterError(f"{path}: not a spreadsheet ({', '.join(SPREADSHEET_SUFFIXES)})")
        return {name: Sheet([(i + 1, list(row)) for i, row in enumerate(frame.itertuples(index=False))])
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


def duplicate_headers(values) -> dict[str, list[str]]:
    """Fields named by two or more columns of a header row (two `OnsetFrame`, or `Onset` beside
    `OnsetFrame`): field -> the column letters and headers, for the error."""
    out = {}
    for name, spellings in ALIASES.items():
        wanted = {header_key(s) for s in spellings}
        hits = [f"{_column_letter(i)} ({cell_text(v)!r})" for i, v in enumerate(values) if header_key(v) in wanted]
        if len(hits) > 1:
            out[name] = hits
    return out


def _column_letter(index: int) -> str:
    letters, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


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
    values: dict                  # field -> raw cell value
    subject: str = ""
    clip: str = ""
    fixes: list = field(default_factory=list)
    notes: list = field(default_factory=list)     # what the manifest's `notes` column says of the row
    apex_estimated: bool = False
    hidden: bool = False          # the row is hidden in Excel (read, and counted in the summary)
    sheet_onset: str = ""         # the onset as written in the sheet, before fixes (a natural-key part)
    extra: dict = field(default_factory=dict)

    def text(self, name: str) -> str:
        return cell_text(self.values.get(name))


def records(rows, header_position: int, columns: dict[str, int]) -> list[SheetRow]:
    """Non-blank rows below the header (header_position -1: a sheet without header row)."""
    hidden = getattr(rows, "hidden", frozenset())
    out = []
    for sheet_row, values in rows[header_position + 1:]:
        if is_blank(values):
            continue
        picked = {name: (values[i] if i < len(values) else None) for name, i in columns.items()}
        out.append(SheetRow(sheet_row=sheet_row, values=picked, hidden=sheet_row in hidden,
                            sheet_onset=cell_text(picked.get("onset"))))
    return out


def table_from_sheet(path: Path, sheet: str, rows, needed) -> list[SheetRow]:
    """Header-detected table of one sheet; missing required columns and a field named by two
    columns are file-level errors."""
    position = find_header(rows)
    if position is None:
        raise AdapterError(f"{path} sheet {sheet!r}: no header row with a subject and a file name column "
                           f"(looked for {', '.join(ALIASES['subject'])} / {', '.join(ALIASES['clip'])})")
    twice = duplicate_headers(rows[position][1])
    if twice:
        detail = "; ".join(f"{name}: columns {', '.join(cols)}" for name, cols in twice.items())
        raise AdapterError(f"{path} sheet {sheet!r}: header row {rows[position][0]} names a field in more than "
                           f"one column ({detail}); which one holds the annotation is not guessed: rename or "
                           "delete the extra column in a copy of the sheet and pass it with --annotations")
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


def parse_frame(value, what: str) -> int | None:
    """A frame-number cell -> int; None when not annotated; RowError for anything else. Only ASCII
    digits are numbers ('1e1', '1_0', Arabic-Indic digits are not); a negative or fractional number
    gets its own message (it is not "not annotated")."""
    if is_missing(value):
        return None
    if isinstance(value, bool):
        raise RowError(f"{what} {value!r} is not a frame number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = cell_text(value)
        if ASCII_WHOLE.fullmatch(text):
            number = float(text)
        elif re.fullmatch(r"[+-]?[0-9]*\.[0-9]+", text):
            raise RowError(f"{what} {text!r} is not a whole frame number")
        else:
            raise RowError(f"{what} {text!r} is not a frame number (ASCII digits only)")
    if not number.is_integer():
        raise RowError(f"{what} {cell_text(value)!r} is not a whole frame number")
    if number < 0:
        raise RowError(f"{what} {cell_text(value)!r} is negative: frame numbers start at 0")
    return int(number)


def path_problem(text: str, what: str) -> str | None:
    """Why a sheet id cannot name a folder under the root: absolute, a drive, or a '..' part."""
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).is_absolute():
        return f"{what} {text!r} is an absolute path; the sheet must name a folder under the dataset root"
    if ".." in posix.parts:
        return f"{what} {text!r} contains '..'; the sheet must name a folder under the dataset root"
    if len([p for p in posix.parts if p != "."]) > 1:
        return f"{what} {text!r} is a path, not one folder name"
    return None


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


def choose_sheet(path: Path, book: dict, wanted: str | None, candidates: list[str]) -> str:
    """The worksheet to read: `wanted` (must exist), else the only candidate; several candidates
    without `--sheet` is an error listing them (an old edition's sheet before the current one must
    not silently relabel everything)."""
    if wanted is not None:
        if wanted not in book:
            raise AdapterError(f"{path}: no sheet named {wanted!r} (--sheet); its sheets: "
                               f"{', '.join(repr(n) for n in book)}")
        return wanted
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise AdapterError(f"{path}: no sheet has a header row with a subject and a file name column "
                           f"(looked for {', '.join(ALIASES['subject'])} / {', '.join(ALIASES['clip'])})")
    raise AdapterError(f"{path}: several sheets hold an annotation table ({', '.join(repr(n) for n in candidates)}); "
                       "choose one with --sheet NAME")


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
