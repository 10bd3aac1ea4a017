"""Ablation grids: each (name, overrides) entry as one LOSO run, and a table of their pooled metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fdpkit.io import write_csv
from fdpkit.loso.config import RUN_KEYS
from fdpkit.metrics import METRICS
from fdpkit.loso.run import run_loso


def run_grid(manifest, cache_dir, out_dir, grid: list[tuple[str, dict]], **kwargs) -> pd.DataFrame:
    """Each (name, overrides) as one LOSO run into out_dir/<name>/; a table of pooled metrics + CIs.

    Overrides may also set the run arguments `model`, `preset`, `selection`, `seed`, `shuffle_labels`.
    """

    rows = []
    for name, overrides in grid:
        run_args, rest = {}, {}
        for key, value in (overrides or {}).items():
            (run_args if key in RUN_KEYS else rest)[key] = value
        args = {**kwargs, **run_args}
        merged = {**(args.pop("overrides", None) or {}), **rest}
        summary = run_loso(manifest, cache_dir, Path(out_dir) / name, overrides=merged, **args)
        row = {"name": name, "model": summary["model"], "selection": summary["selection"],
               "n": summary["n"], "n_subjects": summary["n_subjects"]}
        for metric in METRICS:
            low, high = summary["ci"]["intervals"][metric]
            row.update({metric: summary["pooled"][metric], f"{metric}_low": low, f"{metric}_high": high})
        row["overrides"] = json.dumps(overrides or {}, sort_keys=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(Path(out_dir) / "grid.csv", table)
    return table


__all__ = ["run_grid"]
