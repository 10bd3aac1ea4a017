"""Protocols (class maps) and annotation fixes: data under the repository's `data_manifests/`.

Nothing here knows a corpus' file layout; the adapters (`fdpkit.data.adapters`) ask this module
which class an annotated emotion belongs to and which cells of a spreadsheet must be corrected.

* `data_manifests/protocols/<name>.json` -- one protocol: its classes (the order is the label
  index), per dataset a map `emotion (lower case) -> class` where `null` means "known emotion, not
  in this protocol" (the row is excluded and counted), optional per-clip exclusions with a reason,
  and `default_for` (the datasets that use it when `--protocol` is not given).
* `data_manifests/fixes/<dataset>.csv` -- corrections of the vendor spreadsheet, one per line:
  `subject, clip, onset, field, old, new, reason, source, sheet`. A fix finds its row by its natural
  key: subject + clip as the sheet spells them (compared case-insensitively), plus `onset` (as
  written in the sheet, before fixes) where one file name holds several expressions (CAS(ME)^3).
  `old` must equal the sheet's cell (`missing` = empty / '/' cell); there is no wildcard. A fix
  whose row is not in the sheet is a logged note; one whose row holds another value is an error
  naming both. `sheet` optionally ties a fix to one edition's file name. Lines starting with '#'
  are comments. Details: data_manifests/README.md.

`--protocol` is a plain name (`casme2_5class`: `data_manifests/protocols/<name>.json`) or a path to a
JSON file given as a path (it contains a `/` or ends in `.json`): the manifest then records the
whole resolved path and its sha256 (`protocol_source`), never a bare name for a file from elsewhere.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import re

import fdpkit
from fdpkit.errors import BadInput
from fdpkit.io import sha256_file

ENV_VAR = "FDPKIT_DATA_MANIFESTS"
FIX_COLUMNS = ("subject", "clip", "onset", "field", "old", "new", "reason", "source", "sheet")
FIX_REQUIRED = ("subject", "clip", "field", "old", "new", "reason", "source")
FIX_FIELDS = ("onset", "apex", "offset", "emotion", "aus")
# Cell contents that mean "not annotated" (CASME II writes '/', other sheets leave the cell empty).
MISSING_TOKENS = frozenset({"", "/", "-", "--", "n/a", "na", "nan", "none", "null"})
MISSING = "missing"  # `old` value meaning "the cell is empty / '/' / not annotated"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")   # a protocol or fixes name, not a path
ASCII_WHOLE = re.compile(r"[+-]?[0-9]+(\.0*)?")          # '12', '12.0', '-5': ASCII digits only


class ProtocolError(BadInput):
    """A protocol or fixes file is missing or malformed; the message names the file (exit 2)."""


def data_manifests_dir() -> Path:
    """The top-level `data_manifests/` folder next to the `fdpkit` package (or $FDPKIT_DATA_MANIFESTS)."""
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else Path(fdpkit.__file__).resolve().parent.parent / "data_manifests"
    if not (path / "protocols").is_dir():
        raise ProtocolError(
            f"data_manifests folder not found at {path} (it must hold protocols/ and fixes/). fdpkit "
            f"reads class maps and annotation fixes from the repository's top-level data_manifests/: "
            f"install fdpkit in editable mode from the repository (pip install -e .) or set {ENV_VAR}"
        )
    return path


def emotion_key(value) -> str:
    """How emotions are compared: stripped, lower case, inner whitespace collapsed."""
    return " ".join(str(value).strip().lower().split())


def is_missing(value) -> bool:
    """True for an empty cell, NaN, '/', '-', 'n/a'... (a negative number is not "missing": it is a
    bad frame number, reported as such)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


# --------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    name: str
    classes: tuple[str, ...]
    maps: dict            # dataset -> {emotion key: class name or None}
    exclude: dict         # dataset -> {(subject, clip): reason}
    default_for: tuple[str, ...] = ()
    description: str = ""
    source: str = ""      # the resolved protocol file (recorded whole in the manifest meta)
    sha256: str = ""      # its content hash

    @property
    def datasets(self) -> list[str]:
        return sorted(self.maps)

    def covers(self, dataset: str) -> bool:
        return dataset in self.maps

    def label(self, dataset: str, emotion) -> tuple[str, str]:
        """('label', class) | ('excluded', reason) | ('unknown', message) for one annotated emotion."""
        mapping = self.maps.get(dataset)
        if mapping is None:
            raise ProtocolError(f"protocol {self.name} has no class map for dataset {dataset} "
                                f"(it covers {', '.join(self.datasets)})")
        key = emotion_key(emotion)
        if key not in mapping:
            known = ", ".join(sorted(mapping))
            return "unknown", f"unknown emotion {str(emotion).strip()!r} (known for {dataset}: {known})"
        if mapping[key] is None:
            return "excluded", f"not in protocol ({self.name}: emotion {key!r} not used)"
        return "label", mapping[key]

    def excluded_clip(self, dataset: str, subject: str, clip: str) -> str | None:
        reason = self.exclude.get(dataset, {}).get((subject, clip))
        return None if reason is None else f"not in protocol ({self.name}: {reason})"


def is_path_like(name: str) -> bool:
    """A `--protocol` given as a path (a separator, or a .json suffix) rather than a plain name."""
    text = str(name)
    return "/" in text or "\\" in text or text.lower().endswith(".json") or Path(text).is_absolute()


def plain_name(name: str, what: str) -> str:
    """`name` if it is a plain name under data_manifests/ (no separator, no '..'); ProtocolError otherwise."""
    text = str(name)
    if not PLAIN_NAME.fullmatch(text) or ".." in text:
        raise ProtocolError(f"{what} {text!r} is not a plain name under data_manifests/ (letters, digits, "
                            "'_', '-', '.'); give a file as a path ending in .json")
    return text


def protocol_path(name: str) -> Path:
    """The file a `--protocol` value names: data_manifests/protocols/<name>.json for a plain name,
    the resolved file itself for a path."""
    if is_path_like(name):
        return Path(name).expanduser().resolve()
    return data_manifests_dir() / "protocols" / f"{plain_name(name, 'protocol')}.json"


def list_protocols() -> list[str]:
    return sorted(p.stem for p in (data_manifests_dir() / "protocols").glob("*.json"))


def load_protocol(name: str) -> Protocol:
    """A protocol by plain name or by path (see the module doc); the result's `source` is the whole
    resolved file path and `sha256` its content hash, recorded in the manifest meta."""
    path = protocol_path(name)
    if not path.is_file():
        if is_path_like(name):
            raise ProtocolError(f"protocol file {name} ({path}) does not exist or is not a file")
        raise ProtocolError(f"unknown protocol {name!r}: no {path}; available: {', '.join(list_protocols())}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"{path}: cannot read protocol ({error})") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{path}: a protocol is a JSON object")
    return _parse_protocol(raw, path)


def _parse_protocol(raw: dict, path: Path) -> Protocol:
    def fail(message):
        raise ProtocolError(f"{path}: {message}")

    classes = raw.get("classes")
    if not isinstance(classes, list) or not classes or len(set(classes)) != len(classes):
        fail("'classes' must be a non-empty list of distinct names")
    maps = {}
    for dataset, mapping in (raw.get("maps") or {}).items():
        maps[dataset] = {}
        for emotion, label in mapping.items():
            if label is not None and label not in classes:
                fail(f"maps.{dataset}.{emotion} -> {label!r} is not one of the classes {classes}")
            maps[dataset][emotion_key(emotion)] = label
    if not maps:
        fail("'maps' is empty")
    exclude = {}
    for dataset, entries in (raw.get("exclude") or {}).items():
        exclude[dataset] = {}
        for entry in entries:
            if not {"subject", "clip", "reason"} <= set(entry):
                fail(f"exclude.{dataset} entries need subject, clip and reason: {entry}")
            exclude[dataset][(str(entry["subject"]), str(entry["clip"]))] = str(entry["reason"])
    default_for = tuple(raw.get("default_for") or ())
    if not set(default_for) <= set(maps):
        fail(f"default_for {list(default_for)} names datasets without a map")
    name = raw.get("name", path.stem)
    if name != path.stem:
        fail(f"'name' {name!r} differs from the file name {path.stem!r}")
    return Protocol(name=name, classes=tuple(classes), maps=maps, exclude=exclude,
                    default_for=default_for, description=str(raw.get("description", "")),
                    source=str(path), sha256=sha256_file(path))


def default_protocol(dataset: str) -> Protocol:
    found = [p for p in map(load_protocol, list_protocols()) if dataset in p.default_for]
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ProtocolError(f"dataset {dataset}: expected exactly one default protocol in "
                            f"data_manifests/protocols/ (found {names}); pass --protocol")
    return found[0]


# ------------------------------------------------------------------------------------------- fixes
def clip_key(text: str) -> str:
    """How clip and subject ids are compared (duplicates, fixes): case-folded, path-normalised
    ('EP01_01', 'ep01_01' and 'EP01_01/.' are one clip)."""
    parts = [p for p in str(text).strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts).casefold()


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
