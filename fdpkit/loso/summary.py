"""The body of a run's summary.json from its pooled predictions (definitions: docs/metrics.md).

Blocks: ``pooled`` (metrics of `fdpkit.metrics` over all folds' predictions) with ``ci``
(`fdpkit.loso.bootstrap`), ``per_class``, ``confusion``, ``per_fold`` (labelled, separate),
``chance``, and ``per_dataset`` for a composite run. `fdpkit.loso.outputs.pool_run` adds the run's
settings and the constant-predictor folds.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fdpkit.loso.bootstrap import METHOD, bootstrap_ci
from fdpkit.metrics import (METRICS, chance_levels, checked_classes, group_confusions, per_fold_summary,
                                 per_subject_table, pooled_metrics)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    return x


def _pooled_block(df, classes, seed, n_boot, level, group_col, dataset_col):
    pm = pooled_metrics(df["label"], df["pred"], classes)
    cms, _, _ = group_confusions(df, classes, group_col, dataset_col)
    ci = bootstrap_ci(df, classes, METRICS, n_boot=n_boot, seed=seed, level=level,
                      group_col=group_col, dataset_col=dataset_col)
    return pm, len(cms), {k: list(v) for k, v in ci.items()}


def summarize_predictions(predictions_df: pd.DataFrame, classes: Sequence, *, seed: int = 0,
              n_boot: int = 1000, level: float = 0.95, group_col: str = "subject",
              dataset_col: str = "dataset") -> dict[str, Any]:
    """JSON-serialisable summary of pooled LOSO predictions.

    Needs columns ``group_col`` (default ``subject``), ``label``, ``pred`` (class names or
    indices); ``dataset`` optional. Blocks: ``pooled`` (+ ``ci``), ``per_class``, ``confusion``,
    ``per_fold`` (labelled, separate), ``chance``, and ``per_dataset`` when more than one dataset.
    """
    df = predictions_df
    classes = checked_classes(df, classes)
    pm, n_groups, ci = _pooled_block(df, classes, seed, n_boot, level, group_col, dataset_col)
    boot = {"method": METHOD,
            "level": level, "n_boot": n_boot, "seed": seed, "intervals": ci}
    table = per_subject_table(df, classes, group_col=group_col, dataset_col=dataset_col)
    fold = per_fold_summary(df, classes, group_col=group_col, dataset_col=dataset_col)
    fold["table"] = table.to_dict(orient="records")
    out: dict[str, Any] = {
        "n": pm["n"],
        "n_subjects": n_groups,
        "classes": pm["classes"],
        "definitions": "docs/metrics.md; zero_division=0 (absent classes count as 0 in UF1/UAR)",
        "pooled": {k: pm[k] for k in METRICS},
        "ci": boot,
        "per_class": pm["per_class"],
        "confusion": {"rows": "true", "cols": "pred", "labels": pm["classes"],
                      "matrix": pm["confusion"]},
        "per_fold": fold,
        "chance": chance_levels(df["label"], classes),
    }
    if dataset_col in df.columns and df[dataset_col].nunique() > 1:
        per_ds = {}
        for ds, sub in df.groupby(dataset_col, sort=True):
            dpm, dn, dci = _pooled_block(sub, classes, seed, n_boot, level, group_col, dataset_col)
            per_ds[str(ds)] = {"n": dpm["n"], "n_subjects": dn,
                               **{k: dpm[k] for k in METRICS}, "ci": dci}
        out["per_dataset"] = per_ds
    return _jsonable(out)



__all__ = ["summarize_predictions"]
