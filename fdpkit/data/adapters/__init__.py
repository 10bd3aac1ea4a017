"""`fdpkit manifest`: read a corpus as distributed (annotation spreadsheet + frame folders) into the
common manifest (`fdpkit.data.manifest`).

    build_manifest(dataset, root, annotations=None, protocol=None, lenient=False)
        -> (Manifest, skipped DataFrame, summary dict)
    build_composite([(dataset, root, annotations), ...], protocol="composite_3class", lenient=False)

Every spreadsheet row is accounted for: rows read = kept + excluded (outside the protocol, always
listed) + skipped (invalid; strict mode stops on them instead). The listing goes to
`<out>.skipped.csv`; the counts go to the printed summary and the manifest's meta summary.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from fdpkit.data.frames import FRAME_EXTENSIONS, unindexed_files
from fdpkit.data.manifest import Manifest, ManifestError, validate, write_manifest
from fdpkit.data.protocols import (UNVERIFIED, Protocol, ProtocolError, default_protocol, is_missing,
                                   load_fixes, load_protocol)
from fdpkit.io import sha256_file, write_csv

from .casme2 import Casme2
from .casme3 import Casme3
from .casme_sq import CasmeSq
from .common import SPREADSHEET_SUFFIXES, Adapter, AdapterError, Collector, RowError, SheetRow, parse_frame
from .samm import Samm
from .synthme import SynthME

ADAPTERS = {cls.name: cls for cls in (Casme2, Samm, CasmeSq, Casme3, SynthME)}
SKIPPED_COLUMNS = ("dataset", "sheet_row", "subject", "clip", "emotion", "status", "reason")
log = logging.getLogger("fdpkit.adapters")

__all__ = ["ADAPTERS", "AdapterError", "build_manifest", "build_composite", "find_annotations",
           "run_cli", "skipped_path"]


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
                elif (Path(entry.name).suffix.lower() in SPREADSHEET_SUFFIXES[:-1]   # not .csv
                      and not entry.name.startswith(("~$", "."))):
                    found.append(Path(entry.path))
        level = below
    known = [p for p in found if any(fnmatch.fnmatch(p.name.lower(), pat) for pat in adapter.sheet_patterns)]
    pick = known or found
    if len(pick) == 1:
        return pick[0]
    if not pick:
        raise AdapterError(f"{dataset}: no annotation spreadsheet (*.xlsx, *.xls) under {root}; pass --annotations")
    names = ", ".join(str(p.relative_to(root)) for p in pick)
    raise AdapterError(f"{dataset}: several annotation spreadsheets under {root} ({names}); pass --annotations")


def build_manifest(dataset: str, root, annotations=None, protocol=None, lenient: bool = False):
    """One corpus -> (Manifest, skipped rows, summary). `protocol` is a name or a Protocol
    (default: the dataset's default protocol). Strict mode raises AdapterError on bad rows."""
    protocol = _protocol(protocol, dataset)
    rows, skipped, summary = _collect(dataset, root, annotations, protocol, lenient)
    return _finish([rows], [skipped], {dataset: summary}, protocol, lenient)


def build_composite(sources, protocol="composite_3class", lenient: bool = False):
    """Several corpora under one protocol (default `composite_3class`, MEGC 2019 style):
    `sources` = [(dataset, root, annotations or None), ...]. Subjects stay apart through
    `subject_uid` = `<dataset>/<subject>`; the summary also counts per dataset."""
    protocol = _protocol(protocol, None)
    datasets = [source[0] for source in sources]
    if len(set(datasets)) != len(datasets):
        raise AdapterError(f"composite: each dataset may appear once (got {', '.join(datasets)})")
    parts = [_collect(source[0], source[1], source[2] if len(source) > 2 else None, protocol, lenient)
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
              for k in ("rows_read", "rows_kept", "rows_excluded", "rows_skipped", "fixes_applied")}
    excluded = skipped[skipped["status"] == "excluded"]
    summary = {**totals, "lenient": lenient, "protocol": protocol.name, "sources": per_dataset,
               "excluded_by_reason": {d: dict(Counter(excluded.loc[excluded["dataset"] == d, "reason"]))
                                      for d in per_dataset}}
    manifest = Manifest(rows=rows, protocol=protocol.name, classes=list(protocol.classes), summary=summary)
    return manifest, skipped, summary


# --------------------------------------------------------------------------------------- pipeline
def _collect(dataset, root, annotations, protocol: Protocol, lenient):
    """Rows of one corpus -> (manifest row dicts, skipped/excluded records, summary)."""
    adapter = get_adapter(dataset)
    if not protocol.covers(dataset):
        raise ProtocolError(f"protocol {protocol.name} has no class map for {dataset} "
                            f"(it covers {', '.join(protocol.datasets)})")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise AdapterError(f"{dataset}: dataset root {root} is not a folder")
    sheet = Path(annotations).expanduser().resolve() if annotations else find_annotations(dataset, root)
    log.info("%s: reading %s", dataset, sheet)
    table = adapter.read(sheet)
    rows = [r for r in table if r.text("clip") or r.text("onset")]  # a row without both is a note, not data
    _check_origin(adapter, sheet, rows)
    notes = [r.sheet_row for r in table if not (r.text("clip") or r.text("onset"))]
    if notes:
        log.info("%s: ignored %d note row(s) without file name and onset (sheet rows %s)", dataset,
                 len(notes), ", ".join(map(str, notes[:20])) + (" ..." if len(notes) > 20 else ""))
    coll = Collector(dataset, sheet.name, lenient)
    live = []
    for row in rows:
        try:
            adapter.identify(row)
            live.append(row)
        except RowError as error:
            coll.invalid(row, str(error))
    adapter.assign(live)
    live, fix_counts = _apply_fixes(dataset, live, sheet.name, coll)
    adapter.pick_base(root, live)
    kept: list[tuple[SheetRow, dict]] = []
    for row in live:
        try:
            reason = adapter.pre_exclude(row)
            if reason is None:
                if not row.text("emotion"):
                    raise RowError("the emotion cell is empty")
                status, value = protocol.label(dataset, row.text("emotion"))
                if status == "unknown":
                    raise RowError(value)
                reason = value if status == "excluded" else protocol.excluded_clip(dataset, row.subject, row.clip)
            if reason is not None:
                coll.excluded(row, reason)
                continue
            adapter.adjust(row)
            kept.append((row, _manifest_row(adapter, root, row, value)))
        except RowError as error:
            coll.invalid(row, str(error))
    kept = _drop_duplicates(dataset, kept, coll)
    coll.raise_if_strict()
    summary = {"annotations": str(sheet), "annotations_sha256": sha256_file(sheet), "rows_read": len(rows),
               "rows_kept": len(kept), "rows_excluded": coll.count("excluded"),
               "rows_skipped": coll.count("skipped"), "note_rows_ignored": len(notes), **fix_counts}
    assert summary["rows_read"] == summary["rows_kept"] + summary["rows_excluded"] + summary["rows_skipped"]
    return [r for _, r in kept], coll.records, summary


def _check_origin(adapter: Adapter, sheet: Path, rows: list[SheetRow]) -> None:
    """Refuse a sheet whose ids look like another corpus' (a SAMM sheet given as CASME II's): row
    errors alone ("folder sub06/006_1_2 does not exist") would hide the real mistake."""
    sample = [(r.text("subject"), r.text("clip")) for r in rows if r.text("clip")][:500]
    if len(sample) < 3:
        return

    def share(other: Adapter) -> float | None:
        hits = [other.looks_like(subject, clip) for subject, clip in sample]
        return None if hits[0] is None else sum(map(bool, hits)) / len(hits)

    own = share(adapter)
    if own is None or own >= 0.5:
        return
    for name, cls in ADAPTERS.items():
        if isinstance(adapter, cls) or issubclass(cls, type(adapter)):
            continue   # SynthME is written in CASME II's layout on purpose
        theirs = share(cls())
        if theirs is not None and theirs >= 0.6:
            example = next(f"subject {s}, clip {c}" for s, c in sample if cls().looks_like(s, c))
            raise AdapterError(
                f"{adapter.name}: {sheet} looks like a {name} annotation sheet, not a {adapter.name} one: "
                f"{theirs:.0%} of its rows have {name}-style ids (e.g. {example}), {own:.0%} {adapter.name}-style; "
                f"pass the {adapter.name} spreadsheet with --annotations, or use --dataset {name}")


def _apply_fixes(dataset, rows, sheet_name, coll: Collector):
    """Apply data_manifests/fixes/<dataset>.csv: one log line per applied fix; an `old` that differs
    from the sheet makes the row bad; a fix that matches no row is an error (strict)."""
    fixes = load_fixes(dataset)
    active = [f for f in fixes if f.applies_to(sheet_name)]
    if len(active) < len(fixes):
        patterns = sorted({f.sheet for f in fixes if not f.applies_to(sheet_name)})
        log.info("%s: %d fix(es) are for another edition of the sheet (%s), not %s: not applied",
                 dataset, len(fixes) - len(active), ", ".join(patterns), sheet_name)
    used, out, applied, unverified = set(), [], 0, 0
    for row in rows:
        try:
            for fix in (f for f in active if f.matches(row.subject, row.clip, row.data_index)):
                used.add(fix.line)
                value = row.values.get(fix.field)
                if not fix.old_matches(value):
                    raise RowError(f"fixes/{dataset}.csv line {fix.line} expects {fix.field} {fix.old!r} but "
                                   f"the sheet has {'missing' if is_missing(value) else str(value).strip()!r} "
                                   "(another edition of the spreadsheet? correct or remove the fix)")
                if fix.field == "apex" and is_missing(value, frame=True):
                    row.apex_estimated = True
                row.values[fix.field] = fix.new
                row.fixes.append(fix.describe(value))
                applied += 1
                unverified += fix.old == UNVERIFIED
                level = logging.WARNING if fix.old == UNVERIFIED else logging.INFO
                log.log(level, "%s fix (fixes/%s.csv line %d) %s: %s%s", dataset, dataset, fix.line,
                        coll.name(row), row.fixes[-1],
                        " [old value not recorded by the source: not verified]" if fix.old == UNVERIFIED else "")
            out.append(row)
        except RowError as error:
            coll.invalid(row, str(error))
    for fix in active:
        if fix.line not in used:
            message = f"fixes/{dataset}.csv line {fix.line}: no row of {sheet_name} matches {fix.where}"
            coll.errors.append(message)
            if coll.lenient:
                log.warning("%s", message)
    return out, {"fixes_applied": applied, "fixes_unverified": unverified,
                 "fixes_other_edition": len(fixes) - len(active), "fixes_unmatched": len(active) - len(used)}


def _manifest_row(adapter: Adapter, root: Path, row: SheetRow, label: str) -> dict:
    onset = parse_frame(row.values.get("onset"), "onset")
    offset = parse_frame(row.values.get("offset"), "offset")
    for name, value in (("onset", onset), ("offset", offset)):
        if value is None:
            raise RowError(f"{name} is not annotated")
    apex = parse_frame(row.values.get("apex"), "apex")
    if apex is None:  # documented rule: the midpoint of onset and offset, rounded down
        if onset > offset:
            raise RowError(f"onset/apex/offset out of order: {onset}/missing/{offset}")
        apex = (onset + offset) // 2
        row.apex_estimated = True
        row.fixes.append(f"apex missing->{apex} (rule: floor((onset + offset) / 2))")
    if not onset <= apex <= offset:
        raise RowError(f"onset/apex/offset out of order: {onset}/{apex}/{offset}")
    frame_dir = adapter.locate(root, row)
    frames = adapter.frames(root, frame_dir)
    first, last = min(frames), max(frames)
    if onset < first or offset > last:
        raise RowError(f"onset..offset {onset}..{offset} outside the frames on disk {first}..{last} in {frame_dir}")
    gaps = [n for n in range(onset, offset + 1) if n not in frames]
    if gaps:
        shown = ", ".join(map(str, gaps[:5])) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        other = unindexed_files(root / frame_dir)
        odd = [other[n].name for n in gaps if n in other]
        why = (f" ({', '.join(odd[:3])}: not a frame extension, {', '.join(FRAME_EXTENSIONS)})" if odd else "")
        raise RowError(f"frame(s) {shown} between onset and offset are missing in {frame_dir}{why}")
    empty = [frames[n].name for n in range(onset, offset + 1) if frames[n].stat().st_size == 0]
    if empty:
        raise RowError(f"frame file(s) {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''} in {frame_dir} "
                       "are empty (0 bytes): an incomplete copy?")
    name = adapter.name
    return {"dataset": name, "subject": row.subject, "subject_uid": f"{name}/{row.subject}", "clip": row.clip,
            "clip_uid": f"{name}/{row.subject}/{row.clip}", "root": str(root), "frame_dir": frame_dir,
            "first_frame": first, "last_frame": last, "n_frames": len(frames), "onset": onset, "apex": apex,
            "offset": offset, "apex_estimated": row.apex_estimated, "emotion": row.text("emotion"),
            "label": label, "aus": row.text("aus"), "fixes": ";".join(row.fixes)}


def _drop_duplicates(dataset, kept, coll: Collector):
    """Two rows with one clip id: both are bad (picking one silently would change the data)."""
    sheet_rows: dict[tuple, list[int]] = {}
    for row, _ in kept:
        sheet_rows.setdefault((row.subject, row.clip), []).append(row.sheet_row)
    out = []
    for row, record in kept:
        where = sheet_rows[(row.subject, row.clip)]
        if len(where) > 1:
            coll.invalid(row, f"duplicate clip id {dataset}/{row.subject}/{row.clip} (sheet rows "
                              f"{', '.join(map(str, where))})")
        else:
            out.append((row, record))
    return out


# -------------------------------------------------------------------------------------------- CLI
def skipped_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".skipped.csv")


def run_cli(args) -> int:
    """`fdpkit manifest`. `--dataset/--root/--annotations` may also arrive as lists (composite)."""
    _log_to_stderr()
    as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) else [v])
    datasets, roots = as_list(args.dataset), as_list(args.root)
    annotations = as_list(args.annotations) if args.annotations else [None] * len(datasets)
    try:
        if not (len(datasets) == len(roots) == len(annotations)):
            raise AdapterError("give one --root (and --annotations, if any) per --dataset")
        if len(datasets) > 1:
            manifest, skipped, summary = build_composite(list(zip(datasets, roots, annotations)),
                                                         protocol=args.protocol or "composite_3class",
                                                         lenient=args.lenient)
        else:
            manifest, skipped, summary = build_manifest(datasets[0], roots[0], annotations[0],
                                                        protocol=args.protocol, lenient=args.lenient)
        write_manifest(manifest, args.out)
        write_csv(skipped_path(args.out), skipped)
    except (AdapterError, ProtocolError, ManifestError) as error:
        print(f"fdpkit manifest: error: {error}", file=sys.stderr)
        return 1
    print(format_summary(manifest, summary, args.out))
    return 0


def format_summary(manifest: Manifest, summary: dict, out) -> str:
    lines = [f"protocol {manifest.protocol}: classes {', '.join(manifest.classes)}"]
    for dataset, s in summary["sources"].items():
        lines.append(f"{dataset}: {Path(s['annotations']).name}: rows read {s['rows_read']} = kept {s['rows_kept']}"
                     f" + excluded {s['rows_excluded']} (not in protocol) + skipped {s['rows_skipped']} (invalid);"
                     f" fixes applied {s['fixes_applied']}")
    for dataset, reasons in summary["excluded_by_reason"].items():
        for reason, count in sorted(reasons.items()):
            lines.append(f"  {dataset} excluded {count:4d}: {reason}")
    counts = manifest.rows["label"].value_counts()
    lines.append("clips per class: " + ", ".join(f"{c} {int(counts.get(c, 0))}" for c in manifest.classes))
    lines.append(f"apex estimated: {int(manifest.rows['apex_estimated'].sum())}; "
                 f"subjects: {manifest.rows['subject_uid'].nunique()}")
    listed = summary["rows_excluded"] + summary["rows_skipped"]
    lines.append(f"wrote {out} (+ .meta.json) and {skipped_path(out)} ({listed} rows)")
    return "\n".join(lines)


class _StderrHandler(logging.Handler):
    """Log lines to whatever sys.stderr is at the time (the CLI's fix log)."""

    def emit(self, record):
        print(self.format(record), file=sys.stderr)


def _log_to_stderr():
    logger = logging.getLogger("fdpkit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
