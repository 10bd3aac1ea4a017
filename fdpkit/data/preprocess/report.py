"""What `fdpkit preprocess` tells: the report, the index and preprocess.json it writes, and its summary line.

``preprocess_report.csv``: one row per manifest row, in manifest order: clip_uid, status, reason,
notes, file, flow_file, cached (True when nothing had to be made: the existing files were reused).
``index.csv``: clip_uid, status, file (empty unless ok), row_key (hash of the row's fields, so a
reader can tell that a manifest row changed after preprocessing), flow_file (empty without
``--flow``). ``preprocess.json``: the parameters, the flow settings (null without ``--flow``), the
manifest hash, the counts and the time taken. All three describe the *last* run into the folder.
"""

from __future__ import annotations

import pandas as pd

from fdpkit import __version__
from fdpkit.data.manifest import manifest_hash
from fdpkit.data.preprocess.keys import CACHE_FORMAT_VERSION, FLOW_FORMAT_VERSION, FlowParams, PreprocessParams, row_key
from fdpkit.data.preprocess.lookup import (INDEX_COLUMNS, INDEX_FILE, META_FILE, REPORT_COLUMNS, REPORT_FILE,
                                           STATUSES)
from fdpkit.io import write_csv, write_json


def summary_line(report: pd.DataFrame) -> str:
    counts = {s: int((report["status"] == s).sum()) for s in STATUSES}
    reused = int(report["cached"].astype(bool).sum()) if "cached" in report else 0
    return (f"{len(report)} clips: {counts['ok']} ok ({reused} from cache), "
            f"{counts['skipped']} skipped, {counts['failed']} failed")


def build_report(rows: pd.DataFrame, results: dict[str, dict], files: dict[str, str],
                 flow_files: dict[str, str]) -> pd.DataFrame:
    """The report frame, in manifest order; file and flow_file are empty unless the row is ok."""
    records = []
    for uid in rows["clip_uid"]:
        result = results[uid]
        ok = result["status"] == "ok"
        records.append({**{k: result[k] for k in ("clip_uid", "status", "reason", "notes", "cached")},
                        "file": files[uid] if ok else "", "flow_file": flow_files.get(uid, "") if ok else ""})
    return pd.DataFrame(records, columns=list(REPORT_COLUMNS))


def write_outputs(cache_dir, rows: pd.DataFrame, report: pd.DataFrame, params: PreprocessParams,
                  flow: FlowParams | None, computed: int, workers: int, seconds: float) -> dict[str, int]:
    """Write index.csv, the report and preprocess.json (atomically, each); the status counts."""
    index = pd.DataFrame({
        "clip_uid": report["clip_uid"], "status": report["status"], "file": report["file"],
        "row_key": [row_key(row) for _, row in rows.iterrows()], "flow_file": report["flow_file"],
    }, columns=list(INDEX_COLUMNS))
    counts = {s: int((report["status"] == s).sum()) for s in STATUSES}
    write_csv(cache_dir / INDEX_FILE, index)
    write_csv(cache_dir / REPORT_FILE, report)
    write_json(cache_dir / META_FILE, {
        "cache_format_version": CACHE_FORMAT_VERSION, "params": params.as_dict(),
        "flow": None if flow is None else {**flow.as_dict(), "format_version": FLOW_FORMAT_VERSION},
        "manifest_sha256": manifest_hash(rows), "clips": int(len(rows)), "counts": counts,
        "computed": computed, "reused": int(report["cached"].sum()), "workers": int(workers),
        "seconds": round(seconds, 3), "fdpkit_version": __version__,
    })
    return counts
