"""Reading an annotation spreadsheet as distributed: workbooks (.xlsx, .xls, .csv), the header row
found by the column-alias table, one `SheetRow` per data row, and what a cell means (empty or '/'
is "not annotated", frame numbers are ASCII digits, subject numbers are zero-padded)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd

from fdpkit.errors import BadInput, EnvironmentFault

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv")
# Cell contents that mean "not annotated" (CASME II writes '/', other sheets leave the cell empty).
MISSING_TOKENS = frozenset({"", "/", "-", "--", "n/a", "na", "nan", "none", "null"})
ASCII_WHOLE = re.compile(r"[+-]?[0-9]+(\.0*)?")          # '12', '12.0', '-5': ASCII digits only

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


def is_missing(value) -> bool:
    """True for an empty cell, NaN, '/', '-', 'n/a'... (a negative number is not "missing": it is a
    bad frame number, reported as such)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


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
    if path.is_dir():
        raise AdapterError(f"annotation spreadsheet {path} is a folder; give the spreadsheet file (--annotations)")
    if not path.is_file():
        raise AdapterError(f"annotation spreadsheet {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            book = openpyxl.load_workbook(path, data_only=True)
            return {ws.title: Sheet([(i, list(r)) for i, r in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)],
                                    _hidden_rows(ws))
                    for ws in book.worksheets}
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
    except OSError as error:  # the file system, not the sheet: permission denied, I/O error (exit 7)
        raise EnvironmentFault(f"{path}: cannot read the annotation spreadsheet ({error.strerror or error}); "
                               "make it readable, or copy it somewhere readable and pass --annotations") from None
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


# ------------------------------------------------------------------------------------------ cells
def number_id(value, width: int, what: str) -> str:
    """1, 1.0, '1', '01', 'sub01', 's1' -> zero-padded digits ('01' for width 2, '006' for width 3)."""
    match = re.fullmatch(r"[A-Za-z_ .]*?(\d+)", cell_text(value))
    if not match:
        raise RowError(f"{what} {cell_text(value)!r} is not a subject number")
    return str(int(match.group(1))).zfill(width)


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
