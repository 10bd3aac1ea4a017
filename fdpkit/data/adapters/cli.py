"""`fdpkit manifest`: build the manifest, write it with its `.meta.json` and `.skipped.csv`, and print
the counts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from fdpkit.data.manifest import Manifest, write_manifest
from fdpkit.io import PathConflict, ensure_folder, write_csv

from .build import build_composite, build_manifest
from .sheets import AdapterError


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
    print(format_manifest_summary(manifest, summary, out))
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


def format_manifest_summary(manifest: Manifest, summary: dict, out) -> str:
    """The printed counts of `fdpkit manifest`: rows read = kept + excluded + skipped per dataset."""
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
