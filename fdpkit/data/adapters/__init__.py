"""`fdpkit manifest`: read a corpus as distributed (annotation spreadsheet + frame folders) into the
common manifest (`fdpkit.data.manifest`).

    build_manifest(dataset, root, annotations=None, protocol=None, lenient=False)
        -> (Manifest, skipped DataFrame, summary dict)
    build_composite([(dataset, root, annotations), ...], protocol="composite_3class", lenient=False)

Every spreadsheet row is accounted for: rows read = kept + excluded (outside the protocol, always
listed) + skipped (invalid; strict mode stops on them instead). The listing goes to
`<out>.skipped.csv`; the counts go to the printed summary and the manifest's meta summary, with the
worksheet read, the rows hidden in Excel (read like the others), the frame tree chosen and the
protocol file with its sha256.

The package, in the order a row travels:

    discovery.py  ADAPTERS (from fdpkit.registry.DATASETS) and the annotation spreadsheet's place
    sheets.py     workbooks, header rows, SheetRow, what a cell means (frame numbers, "missing")
    common.py     the Adapter base class, ids as folder names (`id_parts`), frame folders, Collector
    <dataset>.py  one adapter per corpus (casme2, samm, casme_sq, casme3, synthme)
    fixes.py      data_manifests/fixes/<dataset>.csv, read and applied
    collect.py    one corpus' rows: identify, fix, label, frames, duplicates -> kept/excluded/skipped
    build.py      build_manifest / build_composite: rows -> validated Manifest and counts
    cli.py        the `fdpkit manifest` verb (run_cli) and the files it writes
"""

from __future__ import annotations

from .build import build_composite, build_manifest
from .cli import run_cli, skipped_path
from .discovery import ADAPTERS, find_annotations
from .sheets import AdapterError

__all__ = ["ADAPTERS", "AdapterError", "build_manifest", "build_composite", "find_annotations",
           "run_cli", "skipped_path"]
