"""Annotation fixes: `data_manifests/fixes/<dataset>.csv`, corrections of a vendor spreadsheet, read
and applied to the sheet's rows.

One fix per line: `subject, clip, onset, field, old, new, reason, source, sheet`. A fix finds its row
by its natural key: subject + clip as the sheet spells them (compared as `clip_key` compares ids),
plus `onset` (as written in the sheet, before fixes) where one file name holds several expressions
(CAS(ME)^3). `old` must equal the sheet's cell (`missing` = empty / '/' cell); there is no wildcard.
A fix whose row is not in the sheet is a logged note; one whose row holds another value is an error
naming both. `sheet` optionally ties a fix to one edition's file name. Lines starting with '#' are
comments. Details: data_manifests/README.md.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

from fdpkit.data.protocols import ProtocolError, plain_name
from fdpkit.paths import data_manifests_dir

from .common import Collector, clip_key
from .sheets import ASCII_WHOLE, AdapterError, RowError, SheetRow, is_missing

FIX_COLUMNS = ("subject", "clip", "onset", "field", "old", "new", "reason", "source", "sheet")
FIX_REQUIRED = ("subject", "clip", "field", "old", "new", "reason", "source")
FIX_FIELDS = ("onset", "apex", "offset", "emotion", "aus")
MISSING = "missing"  # `old` value meaning "the cell is empty / '/' / not annotated"
log = logging.getLogger("fdpkit.adapters")


@dataclass(frozen=True)
class Fix:
    """One correction of one spreadsheet cell, keyed by its natural key; `line` is its CSV line."""
    line: int
    subject: str
    clip: str
    onset: str          # the sheet's onset (before fixes), '' when subject + clip identify the row
    field: str
    old: str
    new: str
    reason: str
    source: str
    sheet: str = ""

    def applies_to(self, sheet_file: str) -> bool:
        """A fix may be tied to one edition of the spreadsheet by a file-name pattern (`sheet`)."""
        return not self.sheet or fnmatch.fnmatch(sheet_file.lower(), self.sheet.lower())

    def matches(self, subject: str, clip: str, sheet_onset: str) -> bool:
        if clip_key(self.subject) != clip_key(subject) or clip_key(self.clip) != clip_key(clip):
            return False
        return not self.onset or _same_number(self.onset, sheet_onset)

    def old_matches(self, value) -> bool:
        """Does the sheet's cell hold `old`? (`missing` = not annotated)"""
        if self.old.lower() == MISSING:
            return is_missing(value)
        if is_missing(value):
            return False
        return _same_number(self.old, value) or str(value).strip() == self.old.strip()

    @property
    def where(self) -> str:
        return f"{self.subject}/{self.clip}" + (f" onset {self.onset}" if self.onset else "")

    def describe(self, value) -> str:
        return f"{self.field} {_show(value)}->{self.new} ({self.reason})"


def _same_number(a, b) -> bool:
    text_a, text_b = str(a).strip(), str(b).strip()
    if ASCII_WHOLE.fullmatch(text_a) and ASCII_WHOLE.fullmatch(text_b):
        return float(text_a) == float(text_b)
    return text_a == text_b


def _show(value) -> str:
    if is_missing(value):
        return "missing"
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def fixes_path(dataset: str) -> Path:
    return data_manifests_dir() / "fixes" / f"{plain_name(dataset, 'fixes name')}.csv"


def load_fixes(dataset: str) -> list[Fix]:
    """The fixes for one dataset (none when the file is absent); malformed lines raise ProtocolError."""
    path = fixes_path(dataset)
    if not path.exists():
        return []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            lines = [(n, line) for n, line in enumerate(handle, start=1) if not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise ProtocolError(f"{path}: cannot read fixes ({error})") from None
    reader = csv.DictReader(line for _, line in lines)
    header = reader.fieldnames or []
    if "data_index" in header:
        raise ProtocolError(f"{path}: fixes keyed by 'data_index' (a row position) are not accepted: a sheet "
                            "ordered differently would be patched on the wrong clips. Key each fix by "
                            f"subject + clip (+ onset); columns: {', '.join(FIX_COLUMNS)}")
    missing = [c for c in FIX_REQUIRED if c not in header]
    if missing:
        raise ProtocolError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FIX_COLUMNS)}")
    fixes = []
    for (number, _), record in zip(lines[1:], reader):
        record = {k: (v or "").strip() for k, v in record.items() if k}
        fixes.append(_parse_fix(record, number, path))
    return fixes


def _parse_fix(record: dict, line: int, path: Path) -> Fix:
    def fail(message):
        raise ProtocolError(f"{path} line {line}: {message}")

    field = record.get("field", "")
    if field not in FIX_FIELDS:
        fail(f"field {field!r} is not one of {', '.join(FIX_FIELDS)}")
    for column in ("subject", "clip", "reason", "source"):
        if not record.get(column):
            fail(f"'{column}' is empty: every fix names its row (subject, clip), a reason and its source")
    onset = record.get("onset", "")
    if onset and not onset.isascii() or onset and not onset.isdigit():
        fail(f"onset {onset!r} must be the sheet's onset frame number (ASCII digits) or empty")
    if field in ("onset", "apex", "offset") and not (record["new"].isascii() and record["new"].isdigit()):
        fail(f"new value {record['new']!r} for {field} must be a whole frame number")
    old = record.get("old", "")
    if old == "" or old == "*":
        fail(f"'old' is {old!r}: write the value the sheet holds (or '{MISSING}' for an empty cell); "
             "a fix that cannot be verified against the sheet is not applied")
    return Fix(line=line, subject=record["subject"], clip=record["clip"], onset=onset, field=field,
               old=old, new=record["new"], reason=record["reason"], source=record["source"],
               sheet=record.get("sheet", ""))


# --------------------------------------------------------------------------------------- applying
def apply_fixes(dataset: str, rows: list[SheetRow], sheet_name: str, coll: Collector):
    """Apply data_manifests/fixes/<dataset>.csv by natural key (subject, file name, and the sheet's
    onset where given): one log line per applied fix; a row holding another `old` value is bad
    (the message names both values); a fix whose row is not in this sheet is a logged note."""
    fixes = load_fixes(dataset)
    active = [f for f in fixes if f.applies_to(sheet_name)]
    if len(active) < len(fixes):
        patterns = sorted({f.sheet for f in fixes if not f.applies_to(sheet_name)})
        log.info("%s: %d fix(es) are for another edition of the sheet (%s), not %s: not applied",
                 dataset, len(fixes) - len(active), ", ".join(patterns), sheet_name)
    targets = {fix.line: [r for r in rows if fix.matches(r.subject, r.extra.get("filename", r.clip), r.sheet_onset)]
               for fix in active}
    for fix in active:
        if len(targets[fix.line]) > 1:
            where = ", ".join(str(r.sheet_row) for r in targets[fix.line])
            raise AdapterError(f"fixes/{dataset}.csv line {fix.line}: {fix.where} matches {len(targets[fix.line])} "
                               f"rows of {sheet_name} (sheet rows {where}); add the row's onset to the fix")
    by_row = {id(r[0]): [] for r in targets.values() if r}
    for fix in active:
        if targets[fix.line]:
            by_row[id(targets[fix.line][0])].append(fix)
    out, applied = [], 0
    for row in rows:
        try:
            for fix in by_row.get(id(row), []):
                value = row.values.get(fix.field)
                if not fix.old_matches(value):
                    shown = "missing" if is_missing(value) else repr(str(value).strip())
                    raise RowError(f"fixes/{dataset}.csv line {fix.line} expects {fix.field} {fix.old!r} but the "
                                   f"sheet has {shown} (another edition of the spreadsheet? correct or remove the fix)")
                if fix.field == "apex" and is_missing(value):
                    row.apex_estimated = True
                row.values[fix.field] = fix.new
                row.fixes.append(fix.describe(value))
                applied += 1
                log.info("%s fix (fixes/%s.csv line %d) %s: %s [source: %s]", dataset, dataset, fix.line,
                         coll.name(row), row.fixes[-1], fix.source)
            out.append(row)
        except RowError as error:
            coll.invalid(row, str(error))
    absent = [fix for fix in active if not targets[fix.line]]
    for fix in absent:
        log.info("fix for %s/%s not applied: row not in this sheet (%s; fixes/%s.csv line %d)",
                 dataset, fix.where, sheet_name, dataset, fix.line)
    return out, {"fixes_applied": applied, "fixes_other_edition": len(fixes) - len(active),
                 "fixes_not_in_sheet": len(absent)}
