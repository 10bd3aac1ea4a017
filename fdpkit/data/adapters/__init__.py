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

Frames missing inside onset..offset (real videos drop frames) keep the clip: the row's `notes` name
them and the sampler takes the nearest frame on disk. The clip fails only when the onset or apex
frame itself is missing, or when more than MAX_MISSING_SHARE of onset..offset is missing.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path, PurePosixPath

import pandas as pd

from fdpkit.data.frames import FRAME_EXTENSIONS, unindexed_files
from fdpkit.data.manifest import Manifest, validate, write_manifest
from fdpkit.data.protocols import (Protocol, ProtocolError, clip_key, default_protocol, is_missing, load_fixes,
                                   load_protocol)
from fdpkit.io import PathConflict, ensure_folder, sha256_file, write_csv
from fdpkit.registry import DATASETS, resolve

from .common import (SPREADSHEET_SUFFIXES, Adapter, AdapterError, Collector, RowError, SheetRow, parse_frame,
                     path_problem)

ADAPTERS = {name: resolve(target) for name, target in DATASETS.items()}  # fdpkit.registry.DATASETS
SKIPPED_COLUMNS = ("dataset", "sheet_row", "subject", "clip", "emotion", "status", "reason")
MAX_MISSING_SHARE = Fraction(1, 4)   # more of onset..offset missing than this fails the clip
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


def build_manifest(dataset: str, root, annotations=None, protocol=None, lenient: bool = False,
                   sheet: str | None = None):
    """One corpus -> (Manifest, skipped rows, summary). `protocol` is a name, a path to a JSON file
    or a Protocol (default: the dataset's default protocol); `sheet` chooses the worksheet when the
    workbook has several annotation tables. Strict mode raises AdapterError on bad rows."""
    protocol = _protocol(protocol, dataset)
    rows, skipped, summary = _collect(dataset, root, annotations, protocol, lenient, sheet)
    return _finish([rows], [skipped], {dataset: summary}, protocol, lenient)


def build_composite(sources, protocol="composite_3class", lenient: bool = False):
    """Several corpora under one protocol (default `composite_3class`, MEGC 2019 style):
    `sources` = [(dataset, root, annotations or None[, sheet or None]), ...]. Subjects stay apart
    through `subject_uid` = `<dataset>/<subject>`; the summary also counts per dataset."""
    protocol = _protocol(protocol, None)
    datasets = [source[0] for source in sources]
    if len(set(datasets)) != len(datasets):
        raise AdapterError(f"composite: each dataset may appear once (got {', '.join(datasets)})")
    parts = [_collect(source[0], source[1], source[2] if len(source) > 2 else None, protocol, lenient,
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


# --------------------------------------------------------------------------------------- pipeline
def _collect(dataset, root, annotations, protocol: Protocol, lenient, sheet_name: str | None = None):
    """Rows of one corpus -> (manifest row dicts, skipped/excluded records, summary)."""
    adapter = get_adapter(dataset)
    if not protocol.covers(dataset):
        raise ProtocolError(f"protocol {protocol.name} has no class map for {dataset} "
                            f"(it covers {', '.join(protocol.datasets)})")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise AdapterError(f"{dataset}: dataset root {root} is not a folder")
    sheet = Path(annotations).expanduser().resolve() if annotations else find_annotations(dataset, root)
    table = adapter.read(sheet, sheet_name)
    log.info("%s: reading %s, sheet %r", dataset, sheet, adapter.sheet_name)
    rows = [r for r in table if r.text("clip") or r.text("onset")]  # a row without both is a note, not data
    _check_origin(adapter, sheet, rows)
    notes = [r.sheet_row for r in table if not (r.text("clip") or r.text("onset"))]
    if notes:
        log.info("%s: ignored %d note row(s) without file name and onset (sheet rows %s)", dataset,
                 len(notes), ", ".join(map(str, notes[:20])) + (" ..." if len(notes) > 20 else ""))
    hidden = [r.sheet_row for r in rows if r.hidden]
    if hidden:
        log.warning("%s: %d row(s) of sheet %r are hidden in Excel and are read like the others (sheet rows %s)",
                    dataset, len(hidden), adapter.sheet_name,
                    ", ".join(map(str, hidden[:20])) + (" ..." if len(hidden) > 20 else ""))
    coll = Collector(dataset, sheet.name, lenient)
    live = []
    for row in rows:
        try:
            adapter.identify(row)
            _check_ids(row)
            live.append(row)
        except RowError as error:
            coll.invalid(row, str(error))
    adapter.assign(live)
    live, fix_counts = _apply_fixes(dataset, live, sheet.name, coll)
    adapter.pick_base(root, live)
    tree = os.path.relpath(adapter.base, root) if adapter.base is not None else "."
    log.info("%s: frames read from %s (frame tree %s)", dataset, adapter.base or root, tree)
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
    summary = {"annotations": str(sheet), "annotations_sha256": sha256_file(sheet), "sheet": adapter.sheet_name,
               "frame_tree": tree, "rows_read": len(rows), "rows_kept": len(kept),
               "rows_excluded": coll.count("excluded"), "rows_skipped": coll.count("skipped"),
               "note_rows_ignored": len(notes), "hidden_rows_read": len(hidden),
               "rows_with_missing_frames": sum(bool(r.get("notes")) for _, r in kept), **fix_counts}
    if summary["rows_read"] != summary["rows_kept"] + summary["rows_excluded"] + summary["rows_skipped"]:
        raise AssertionError(f"{dataset}: counts do not reconcile: {summary}")
    return [r for _, r in kept], coll.records, summary


def _check_ids(row: SheetRow) -> None:
    """Subject and file name must each name one folder under the root: an absolute path or '..'
    is a row error naming the sheet row; 'EP01_01/.' is tidied to 'EP01_01'."""
    for what, attribute in (("Subject", "subject"), ("Filename", "clip")):
        problem = path_problem(getattr(row, attribute), what)
        if problem:
            raise RowError(problem)
        setattr(row, attribute, _tidy(getattr(row, attribute)))
    if "filename" in row.extra:
        row.extra["filename"] = _tidy(row.extra["filename"])


def _tidy(text: str) -> str:
    return str(PurePosixPath(text.replace("\\", "/"))) if text else text


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
    _check_gaps(root, frame_dir, frames, onset, apex, offset, row)
    empty = [frames[n].name for n in range(onset, offset + 1) if n in frames and frames[n].stat().st_size == 0]
    if empty:
        raise RowError(f"frame file(s) {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''} in {frame_dir} "
                       "are empty (0 bytes): an incomplete copy?")
    name = adapter.name
    return {"dataset": name, "subject": row.subject, "subject_uid": f"{name}/{row.subject}", "clip": row.clip,
            "clip_uid": f"{name}/{row.subject}/{row.clip}", "root": str(root), "frame_dir": frame_dir,
            "first_frame": first, "last_frame": last, "n_frames": len(frames), "onset": onset, "apex": apex,
            "offset": offset, "apex_estimated": row.apex_estimated, "emotion": row.text("emotion"),
            "label": label, "aus": row.text("aus"), "fixes": ";".join(row.fixes), "notes": "; ".join(row.notes)}


def _check_gaps(root: Path, frame_dir: str, frames: dict, onset: int, apex: int, offset: int, row: SheetRow):
    """Frames missing inside onset..offset: a note on the row (the sampler takes the nearest frame);
    a RowError when the onset or apex frame itself is missing or more than MAX_MISSING_SHARE is."""
    gaps = [n for n in range(onset, offset + 1) if n not in frames]
    if not gaps:
        return
    span = offset - onset + 1
    shown = ", ".join(map(str, gaps[:8])) + (f" and {len(gaps) - 8} more" if len(gaps) > 8 else "")
    other = unindexed_files(root / frame_dir)
    odd = [other[n].name for n in gaps if n in other]
    why = (f" ({', '.join(odd[:3])}: not a frame extension, {', '.join(FRAME_EXTENSIONS)})" if odd else "")
    key = [f"{name} frame {n}" for name, n in (("onset", onset), ("apex", apex)) if n in gaps]
    if key:
        raise RowError(f"{' and '.join(key)} missing in {frame_dir}{why} (frame(s) {shown} of {onset}..{offset} "
                       "missing); the key frames must exist")
    if Fraction(len(gaps), span) > MAX_MISSING_SHARE:
        raise RowError(f"frame(s) {shown} between onset and offset are missing in {frame_dir}{why}: {len(gaps)} of "
                       f"{span}, more than {MAX_MISSING_SHARE.numerator}/{MAX_MISSING_SHARE.denominator} of the clip")
    row.notes.append(f"missing frames {shown} ({len(gaps)} of {span} in {onset}..{offset}{why}; "
                     "the sampler takes the nearest frame)")


def _drop_duplicates(dataset, kept, coll: Collector):
    """Two rows with one clip id: both are bad (picking one silently would change the data)."""
    sheet_rows: dict[tuple, list[int]] = {}
    key = (lambda row: (clip_key(row.subject), clip_key(row.clip)))   # case- and path-normalised
    spelled: dict[tuple, dict] = {}   # key -> the spellings met, in sheet order
    for row, _ in kept:
        sheet_rows.setdefault(key(row), []).append(row.sheet_row)
        spelled.setdefault(key(row), {}).setdefault(f"{dataset}/{row.subject}/{row.clip}", None)
    out = []
    for row, record in kept:
        where = sheet_rows[key(row)]
        if len(where) > 1:
            names = " = ".join(spelled[key(row)])
            case = "; ids are compared ignoring case" if len(spelled[key(row)]) > 1 else ""
            coll.invalid(row, f"duplicate clip id {names} (sheet rows {', '.join(map(str, where))}{case})")
        else:
            out.append((row, record))
    return out


# -------------------------------------------------------------------------------------------- CLI
def skipped_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".skipped.csv")


def run_cli(args) -> int:
    """`fdpkit manifest`. `--dataset/--root/--annotations/--sheet` may also arrive as lists
    (composite). Bad input raises AdapterError / ProtocolError / ManifestError (fdpkit.errors.BadInput:
    `fdpkit.cli.main` prints one line and exits 2)."""
    _log_to_stderr()
    as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) else [v])
    datasets, roots = as_list(args.dataset), as_list(args.root)
    annotations = as_list(args.annotations) if args.annotations else [None] * len(datasets)
    sheet = getattr(args, "sheet", None)
    sheets = as_list(sheet) if sheet else [None] * len(datasets)
    if not (len(datasets) == len(roots) == len(annotations) == len(sheets)):
        raise AdapterError("give one --root (and --annotations or --sheet, if any) per --dataset")
    out = check_out(args.out)
    if len(datasets) > 1:
        manifest, skipped, summary = build_composite(list(zip(datasets, roots, annotations, sheets)),
                                                     protocol=args.protocol or "composite_3class",
                                                     lenient=args.lenient)
    else:
        manifest, skipped, summary = build_manifest(datasets[0], roots[0], annotations[0], protocol=args.protocol,
                                                    lenient=args.lenient, sheet=sheets[0])
    write_manifest(manifest, out)
    write_csv(skipped_path(out), skipped)
    print(format_summary(manifest, summary, out))
    return 0


def check_out(out) -> Path:
    """The manifest `--out` as a file path whose folder exists (created if needed): a folder, or a
    path through a file, is bad input (exit 2) named with what to do."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise AdapterError(f"--out {out} is a folder; give the manifest file to write, e.g. "
                           f"--out {path / 'manifest.csv'}")
    try:
        ensure_folder(path.parent)
    except PathConflict as error:
        raise AdapterError(f"--out {out}: {error}") from None
    for extra in (skipped_path(path), path.with_name(path.name + ".meta.json")):
        if extra.is_dir():
            raise AdapterError(f"--out {out}: {extra} is a folder and would be overwritten by the manifest's "
                               "companion file; move it away or choose another --out")
    return path


def format_summary(manifest: Manifest, summary: dict, out) -> str:
    lines = [f"protocol {manifest.protocol}: classes {', '.join(manifest.classes)}"]
    for dataset, s in summary["sources"].items():
        lines.append(f"{dataset}: {Path(s['annotations']).name}: rows read {s['rows_read']} = kept {s['rows_kept']}"
                     f" + excluded {s['rows_excluded']} (not in protocol) + skipped {s['rows_skipped']} (invalid);"
                     f" fixes applied {s['fixes_applied']}; sheet {s['sheet']!r}; hidden rows read"
                     f" {s['hidden_rows_read']}; kept with missing frames {s['rows_with_missing_frames']}")
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
