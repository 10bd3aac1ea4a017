"""Which adapter reads a dataset (`ADAPTERS`, built from `fdpkit.registry.DATASETS`) and where its
annotation spreadsheet is under the dataset root."""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path

from fdpkit.registry import DATASETS, resolve

from .common import Adapter
from .sheets import SPREADSHEET_SUFFIXES, AdapterError

ADAPTERS = {name: resolve(target) for name, target in DATASETS.items()}  # name -> Adapter class
log = logging.getLogger("fdpkit.adapters")


def get_adapter(dataset: str) -> Adapter:
    if dataset not in ADAPTERS:
        raise AdapterError(f"unknown dataset {dataset!r}; choose from {', '.join(ADAPTERS)}")
    return ADAPTERS[dataset]()


def find_annotations(dataset: str, root) -> Path:
    """The annotation spreadsheet under root (two levels deep) by the corpus' known file names;
    any single spreadsheet when none has a known name; an error when none or several are found."""
    root, adapter = Path(root), get_adapter(dataset)
    found, level = [], [root]
    for _ in range(3):  # root, its children, its grandchildren
        below = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir():
                    below.append(Path(entry.path))
                elif _spreadsheet(entry.name):
                    found.append(Path(entry.path))
        level = below
    known = [p for p in found if _known_sheet(adapter, p.name)]
    if not known:
        above = _sheet_above(adapter, root)
        if above is not None:
            log.info("%s: annotation spreadsheet %s found above the root (%s)", dataset, above.name, above.parent)
            return above
    pick = known or found
    if len(pick) == 1:
        return pick[0]
    if not pick:
        raise AdapterError(f"{dataset}: no annotation spreadsheet (*.xlsx, *.xls) under {root}; pass --annotations")
    names = ", ".join(str(p.relative_to(root)) for p in pick)
    raise AdapterError(f"{dataset}: several annotation spreadsheets under {root} ({names}); pass --annotations")


def _spreadsheet(name: str) -> bool:
    """An annotation workbook's file name (.xlsx/.xls..., not .csv; no Office lock or hidden file)."""
    return Path(name).suffix.lower() in SPREADSHEET_SUFFIXES[:-1] and not name.startswith(("~$", "."))


def _known_sheet(adapter: Adapter, name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in adapter.sheet_patterns)


def _sheet_above(adapter: Adapter, root: Path) -> Path | None:
    """A known-name sheet in an `annotation` folder of one of root's parents (CAS(ME)^3 read from
    the split frame tree `part_A/data/part_A_split/part_A` keeps its sheet in `part_A/annotation/`)."""
    for parent in list(root.parents)[:4]:
        for name in adapter.sheet_folders:
            folder = parent / name
            if not folder.is_dir():
                continue
            hits = sorted(p for p in folder.iterdir() if p.is_file() and _spreadsheet(p.name)
                          and _known_sheet(adapter, p.name))
            if len(hits) == 1:
                return hits[0]
    return None
