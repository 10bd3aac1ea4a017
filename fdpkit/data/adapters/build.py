"""One corpus, or several under one protocol, into a validated `Manifest` with the listing of the
rows left out and the counts that reconcile them (see the package doc)."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from fdpkit.data.manifest import Manifest, validate
from fdpkit.data.protocols import Protocol, default_protocol, load_protocol

from .collect import collect
from .sheets import AdapterError

SKIPPED_COLUMNS = ("dataset", "sheet_row", "subject", "clip", "emotion", "status", "reason")


def build_manifest(dataset: str, root, annotations=None, protocol=None, lenient: bool = False,
                   sheet: str | None = None):
    """One corpus -> (Manifest, skipped rows, summary). `protocol` is a name, a path to a JSON file
    or a Protocol (default: the dataset's default protocol); `sheet` chooses the worksheet when the
    workbook has several annotation tables. Strict mode raises AdapterError on bad rows."""
    protocol = _protocol(protocol, dataset)
    rows, skipped, summary = collect(dataset, root, annotations, protocol, lenient, sheet)
    return _finish([rows], [skipped], {dataset: summary}, protocol, lenient)


def build_composite(sources, protocol="composite_3class", lenient: bool = False):
    """Several corpora under one protocol (default `composite_3class`, MEGC 2019 style):
    `sources` = [(dataset, root, annotations or None[, sheet or None]), ...]. Subjects stay apart
    through `subject_uid` = `<dataset>/<subject>`; the summary also counts per dataset."""
    protocol = _protocol(protocol, None)
    datasets = [source[0] for source in sources]
    if len(set(datasets)) != len(datasets):
        raise AdapterError(f"composite: each dataset may appear once (got {', '.join(datasets)})")
    parts = [collect(source[0], source[1], source[2] if len(source) > 2 else None, protocol, lenient,
                      source[3] if len(source) > 3 else None)
             for source in sources]
    return _finish([p[0] for p in parts], [p[1] for p in parts],
                   {d: p[2] for d, p in zip(datasets, parts)}, protocol, lenient)


def _protocol(protocol, dataset) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol is None and dataset is None:
        raise AdapterError("a protocol is needed")
    return default_protocol(dataset) if protocol is None else load_protocol(protocol)


def _finish(row_lists, skipped_lists, per_dataset: dict, protocol: Protocol, lenient: bool):
    rows = pd.DataFrame([r for rows in row_lists for r in rows])
    skipped = pd.DataFrame([s for lst in skipped_lists for s in lst], columns=list(SKIPPED_COLUMNS))
    if rows.empty:
        raise AdapterError(f"no clips left for protocol {protocol.name}: "
                           f"{skipped['reason'].value_counts().head(5).to_dict()}")
    rows = validate(rows, list(protocol.classes))
    totals = {k: sum(s[k] for s in per_dataset.values())
              for k in ("rows_read", "rows_kept", "rows_excluded", "rows_skipped", "fixes_applied",
                        "hidden_rows_read", "rows_with_missing_frames")}
    excluded = skipped[skipped["status"] == "excluded"]
    summary = {**totals, "lenient": lenient, "protocol": protocol.name,
               "protocol_source": protocol.source, "protocol_sha256": protocol.sha256, "sources": per_dataset,
               "excluded_by_reason": {d: dict(Counter(excluded.loc[excluded["dataset"] == d, "reason"]))
                                      for d in per_dataset}}
    manifest = Manifest(rows=rows, protocol=protocol.name, classes=list(protocol.classes), summary=summary)
    return manifest, skipped, summary
