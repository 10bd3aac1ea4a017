"""The rows of one corpus on their way to the manifest: read the sheet, identify each row's subject
and clip, apply the fixes, map the emotion through the protocol, find and check the frames, and drop
duplicates. Every row read ends kept, excluded (outside the protocol) or skipped (invalid), each
listed with its reason; the counts reconcile.

Frames missing inside onset..offset (real videos drop frames) keep the clip: the row's `notes` name
them and the sampler takes the nearest frame on disk. The clip fails only when the onset or apex
frame itself is missing, or when more than MAX_MISSING_SHARE of onset..offset is missing.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

from fdpkit.data.frames import FRAME_EXTENSIONS, unindexed_files
from fdpkit.data.protocols import Protocol, ProtocolError
from fdpkit.io import sha256_file

from .common import Adapter, Collector, clip_key, path_problem, tidy_id
from .discovery import ADAPTERS, find_annotations, get_adapter
from .fixes import apply_fixes
from .sheets import AdapterError, RowError, SheetRow, parse_frame

MAX_MISSING_SHARE = Fraction(1, 4)   # more of onset..offset missing than this fails the clip
log = logging.getLogger("fdpkit.adapters")


def collect(dataset, root, annotations, protocol: Protocol, lenient, sheet_name: str | None = None):
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
    live, fix_counts = apply_fixes(dataset, live, sheet.name, coll)
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
    """Subject and file name must each name one folder under the root: an absolute path, '..' or
    no folder at all ('.') is a row error naming the sheet row; 'EP01_01/.' is tidied to 'EP01_01'."""
    for what, attribute in (("Subject", "subject"), ("Filename", "clip")):
        problem = path_problem(getattr(row, attribute), what)
        if problem:
            raise RowError(problem)
        setattr(row, attribute, tidy_id(getattr(row, attribute)))
    if "filename" in row.extra:
        row.extra["filename"] = tidy_id(row.extra["filename"])


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
