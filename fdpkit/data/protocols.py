"""Protocols (class maps) and annotation fixes: data under the repository's `data_manifests/`.

Nothing here knows a corpus' file layout; the adapters (`fdpkit.data.adapters`) ask this module
which class an annotated emotion belongs to and which cells of a spreadsheet must be corrected.

* `data_manifests/protocols/<name>.json` -- one protocol: its classes (the order is the label
  index), per dataset a map `emotion (lower case) -> class` where `null` means "known emotion, not
  in this protocol" (the row is excluded and counted), optional per-clip exclusions with a reason,
  and `default_for` (the datasets that use it when `--protocol` is not given).
* `data_manifests/fixes/<dataset>.csv` -- corrections of the vendor spreadsheet, one per line:
  `subject, clip, data_index, field, old, new, reason, sheet`. A fix finds its row by subject + clip
  (manifest spelling) or, with both empty, by `data_index` (the row's pandas index under the header,
  the index public loaders patch by); `old` must equal the sheet's cell (`missing` = empty cell,
  `*` = not recorded by the source: applied unverified); `sheet` ties a fix to one edition's file
  name. Lines starting with '#' are comments. Details: data_manifests/README.md.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import fdpkit

ENV_VAR = "FDPKIT_DATA_MANIFESTS"
FIX_COLUMNS = ("subject", "clip", "data_index", "field", "old", "new", "reason", "sheet")
FIX_FIELDS = ("onset", "apex", "offset", "emotion", "aus")
# Cell contents that mean "not annotated" (CASME II writes '/', other sheets leave the cell empty).
MISSING_TOKENS = frozenset({"", "/", "-", "--", "n/a", "na", "nan", "none", "null"})
UNVERIFIED = "*"   # `old` value not recorded by the source of a fix: applied with a warning
MISSING = "missing"  # `old` value meaning "the cell is empty / '/' / not annotated"


class ProtocolError(ValueError):
    """A protocol or fixes file is missing or malformed; the message names the file."""


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


def is_missing(value, frame: bool = False) -> bool:
    """True for an empty cell, NaN, '/', '-', 'n/a'...; with `frame=True` also for negative numbers."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    text = str(value).strip().lower()
    if text in MISSING_TOKENS:
        return True
    if frame:
        try:
            return float(text) < 0
        except ValueError:
            return False
    return False


# --------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    name: str
    classes: tuple[str, ...]
    maps: dict            # dataset -> {emotion key: class name or None}
    exclude: dict         # dataset -> {(subject, clip): reason}
    default_for: tuple[str, ...] = ()
    description: str = ""

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


def protocol_path(name: str) -> Path:
    return data_manifests_dir() / "protocols" / f"{name}.json"


def list_protocols() -> list[str]:
    return sorted(p.stem for p in (data_manifests_dir() / "protocols").glob("*.json"))


def load_protocol(name: str) -> Protocol:
    path = protocol_path(name)
    if not path.exists():
        raise ProtocolError(f"unknown protocol {name!r}: no {path}; available: {', '.join(list_protocols())}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ProtocolError(f"{path}: cannot read protocol ({error})") from None
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
                    default_for=default_for, description=str(raw.get("description", "")))


def default_protocol(dataset: str) -> Protocol:
    found = [p for p in map(load_protocol, list_protocols()) if dataset in p.default_for]
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ProtocolError(f"dataset {dataset}: expected exactly one default protocol in "
                            f"data_manifests/protocols/ (found {names}); pass --protocol")
    return found[0]


# ------------------------------------------------------------------------------------------- fixes
@dataclass(frozen=True)
class Fix:
    """One correction of one spreadsheet cell; `line` is its line in the fixes CSV."""
    line: int
    subject: str
    clip: str
    data_index: int | None
    field: str
    old: str
    new: str
    reason: str
    sheet: str = ""

    def applies_to(self, sheet_file: str) -> bool:
        """A fix may be tied to one edition of the spreadsheet by a file-name pattern (`sheet`)."""
        return not self.sheet or fnmatch.fnmatch(sheet_file.lower(), self.sheet.lower())

    def matches(self, subject: str, clip: str, data_index: int) -> bool:
        if self.subject or self.clip:
            return self.subject == subject and self.clip == clip
        return self.data_index == data_index

    def old_matches(self, value) -> bool:
        """Does the sheet's cell hold `old`? ('missing' = not annotated, '*' = not verifiable)."""
        if self.old == UNVERIFIED:
            return True
        if self.old.lower() == MISSING:
            return is_missing(value, frame=self.field in ("onset", "apex", "offset"))
        if is_missing(value):
            return False
        try:
            return float(str(value).strip()) == float(self.old)
        except ValueError:
            return str(value).strip() == self.old.strip()

    @property
    def where(self) -> str:
        if self.subject or self.clip:
            return f"subject {self.subject} clip {self.clip}"
        return f"data row index {self.data_index}"

    def describe(self, value) -> str:
        return f"{self.field} {_show(value)}->{self.new} ({self.reason})"


def _show(value) -> str:
    if is_missing(value):
        return "missing"
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def fixes_path(dataset: str) -> Path:
    return data_manifests_dir() / "fixes" / f"{dataset}.csv"


def load_fixes(dataset: str) -> list[Fix]:
    """The fixes for one dataset (none when the file is absent); malformed lines raise ProtocolError."""
    path = fixes_path(dataset)
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(line for line in handle if not line.lstrip().startswith("#"))
        header = reader.fieldnames or []
        missing = [c for c in ("subject", "clip", "field", "old", "new", "reason") if c not in header]
        if missing:
            raise ProtocolError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FIX_COLUMNS)}")
        fixes = []
        for number, record in enumerate(reader, start=2):
            record = {k: (v or "").strip() for k, v in record.items() if k}
            fixes.append(_parse_fix(record, number, path))
    return fixes


def _parse_fix(record: dict, line: int, path: Path) -> Fix:
    def fail(message):
        raise ProtocolError(f"{path} line {line}: {message}")

    field = record.get("field", "")
    if field not in FIX_FIELDS:
        fail(f"field {field!r} is not one of {', '.join(FIX_FIELDS)}")
    index = record.get("data_index", "")
    if bool(record["subject"]) != bool(record["clip"]):
        fail("give both subject and clip, or neither (then data_index)")
    if not record["subject"] and not index.isdigit():
        fail("a fix needs subject + clip or a data_index")
    if not record["reason"]:
        fail("every fix needs a reason")
    if field in ("onset", "apex", "offset") and not record["new"].isdigit():
        fail(f"new value {record['new']!r} for {field} must be a whole frame number")
    if record["old"] == "":
        fail(f"'old' is empty: write the sheet's value, '{MISSING}' for an empty cell or '{UNVERIFIED}'")
    return Fix(line=line, subject=record["subject"], clip=record["clip"],
               data_index=int(index) if index.isdigit() else None, field=field, old=record["old"],
               new=record["new"], reason=record["reason"], sheet=record.get("sheet", ""))
