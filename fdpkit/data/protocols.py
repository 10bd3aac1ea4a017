"""Protocols (class maps): `data_manifests/protocols/<name>.json` (the folder: `fdpkit.paths.data_manifests_dir`).

Nothing here knows a corpus' file layout; the adapters (`fdpkit.data.adapters`) ask this module
which class an annotated emotion belongs to (the annotation fixes are `fdpkit.data.adapters.fixes`).

A protocol holds its classes (the order is the label index), per dataset a map `emotion (lower
case) -> class` where `null` means "known emotion, not in this protocol" (the row is excluded and
counted), optional per-clip exclusions with a reason, and `default_for` (the datasets that use it
when `--protocol` is not given).

`--protocol` is a plain name (`casme2_5class`: `data_manifests/protocols/<name>.json`) or a path to a
JSON file given as a path (it contains a `/` or ends in `.json`): the manifest then records the
whole resolved path and its sha256 (`protocol_source`), never a bare name for a file from elsewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from fdpkit.errors import BadInput
from fdpkit.io import sha256_file
from fdpkit.paths import data_manifests_dir

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")   # a protocol or fixes name, not a path


class ProtocolError(BadInput):
    """A protocol or fixes file is missing or malformed; the message names the file (exit 2)."""


def emotion_key(value) -> str:
    """How emotions are compared: stripped, lower case, inner whitespace collapsed."""
    return " ".join(str(value).strip().lower().split())


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
