"""Metric definitions: pooled and per-fold scores, chance levels, constant-predictor folds (docs/metrics.md).

Predictions of all LOSO folds are *pooled* before scoring. With C the protocol classes and
TP_c, FP_c, FN_c, N_c counted over the pooled predictions:

* accuracy    = sum_c TP_c / N
* UF1         = mean over ALL c in C of 2 TP_c / (2 TP_c + FP_c + FN_c)
* UAR         = mean over ALL c in C of TP_c / N_c
* weighted F1 = sum_c N_c F1_c / N  (= sklearn ``f1_score(average="weighted")``)

Edge cases follow scikit-learn's ``zero_division=0``: a class that is absent from the truth
(N_c = 0) has recall 0 and *still counts* in the UAR mean; a class with 2TP+FP+FN = 0 (absent
and never predicted) has F1 0 and still counts in the UF1 mean; a never-predicted class has
precision 0. So UF1 == ``f1_score(y, p, average="macro", labels=C, zero_division=0)`` and
UAR == ``recall_score(y, p, average="macro", labels=C, zero_division=0)`` always, and a perfect
predictor scores UF1 = UAR = 1 only if every protocol class occurs.

Per-fold numbers (one LOSO fold = one subject) are reported separately and labelled as such.
Within a fold, UF1/UAR default to sklearn's default label set (classes present in the fold's
truth or predictions, ``macro_labels="present"``); ``macro_labels="all"`` uses all of C.

Groups: the per-fold unit (and the resampling unit of `fdpkit.loso.bootstrap`) is ``group_col``
(default ``subject``); when a ``dataset`` column is present the unit is the pair (dataset, subject),
so subject ids that repeat across corpora are never merged. The intervals are in
`fdpkit.loso.bootstrap`, the summary.json body in `fdpkit.loso.summary`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

METRICS = ("accuracy", "uf1", "uar", "weighted_f1")
METRIC_NAMES = {"uf1": "UF1", "uar": "UAR", "accuracy": "accuracy", "weighted_f1": "weighted F1"}  # for display

PER_FOLD_NOTE = (
    "per-fold: each LOSO fold (subject) scored on its own, then mean and sample sd (ddof=1) "
    "over folds; NOT comparable with the pooled numbers"
)


# ----------------------------------------------------------------------------- encoding
def _encode(y: Iterable, classes: Sequence) -> np.ndarray:
    """Map class names (or integer indices into ``classes``) to int indices.

    Values that are all class names are mapped by name (this wins if classes are themselves
    ints); otherwise integer values are taken as indices. Anything else raises ValueError.
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate class names in {classes}")
    arr = np.asarray(list(y) if not isinstance(y, (np.ndarray, pd.Series)) else y, dtype=object)
    arr = arr.ravel()
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        if all(v in lookup for v in arr):
            return np.fromiter((lookup[v] for v in arr), dtype=np.int64, count=len(arr))
    except TypeError:  # unhashable values
        pass
    ok_int = all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in arr
    )
    if ok_int:
        idx = arr.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(classes)):
            raise ValueError(f"label index out of range 0..{len(classes) - 1}")
        return idx
    unknown = sorted({repr(v) for v in arr if v not in lookup})[:5]
    raise ValueError(f"labels not in classes {classes}: {', '.join(unknown)}")


def confusion_matrix(y_true, y_pred, classes: Sequence) -> np.ndarray:
    """Confusion matrix (C, C) of counts: rows = true, cols = predicted, order = ``classes``."""
    t, p = _encode(y_true, classes), _encode(y_pred, classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items, y_pred {p.size}")
    k = len(classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


# ----------------------------------------------------------------------------- core
def from_confusion(cm: np.ndarray, labels_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Metrics from one (C, C) or a stack (..., C, C) of confusion matrices (vectorised).

    ``labels_mask`` (..., C) selects the classes that enter the UF1/UAR means (default: all).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)  # N_c (true)
    n_pred = cm.sum(axis=-2)  # TP + FP
    n = support.sum(axis=-1)
    denom = support + n_pred  # = 2TP + FP + FN
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        accuracy = np.where(n > 0, tp.sum(axis=-1) / n, np.nan)
        weighted_f1 = np.where(n > 0, (support * f1).sum(axis=-1) / n, np.nan)
    if labels_mask is None:
        uf1, uar = f1.mean(axis=-1), recall.mean(axis=-1)
    else:
        m = np.broadcast_to(np.asarray(labels_mask, dtype=np.float64), f1.shape)
        k = m.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            uf1 = np.where(k > 0, (f1 * m).sum(axis=-1) / k, np.nan)
            uar = np.where(k > 0, (recall * m).sum(axis=-1) / k, np.nan)
    return dict(accuracy=accuracy, uf1=uf1, uar=uar, weighted_f1=weighted_f1,
                precision=precision, recall=recall, f1=f1, support=support, n_pred=n_pred)


def pooled_metrics(y_true, y_pred, classes: Sequence) -> dict[str, Any]:
    """Pooled metrics over all predictions (see module doc for exact definitions).

    Returns ``{"n", "classes", "accuracy", "uf1", "uar", "weighted_f1",
    "per_class": {name: {"precision", "recall", "f1", "support", "n_pred"}},
    "confusion": [[...]] (rows = true, cols = pred, order = classes)}``.
    """
    classes = list(classes)
    cm = confusion_matrix(y_true, y_pred, classes)
    if cm.sum() == 0:
        raise ValueError("no predictions to score")
    m = from_confusion(cm)
    per_class = {
        str(c): {
            "precision": float(m["precision"][i]),
            "recall": float(m["recall"][i]),
            "f1": float(m["f1"][i]),
            "support": int(m["support"][i]),
            "n_pred": int(m["n_pred"][i]),
        }
        for i, c in enumerate(classes)
    }
    out: dict[str, Any] = {"n": int(cm.sum()), "classes": [str(c) for c in classes]}
    out.update({k: float(m[k]) for k in METRICS})
    out["per_class"] = per_class
    out["confusion"] = cm.astype(int).tolist()
    return out


# ----------------------------------------------------------------------------- grouping
def _group_cols(df: pd.DataFrame, group_col: str, dataset_col: str | None) -> list[str]:
    if group_col not in df.columns:
        raise KeyError(f"predictions have no column {group_col!r}")
    if dataset_col and dataset_col in df.columns and dataset_col != group_col:
        return [dataset_col, group_col]
    return [group_col]


def checked_classes(df: pd.DataFrame, classes: Sequence | None) -> list:
    """The class list to score ``df`` with (default: every label and prediction, sorted), after
    checking it has label/pred columns, rows, and no missing values (KeyError / ValueError)."""
    for col in ("label", "pred"):
        if col not in df.columns:
            raise KeyError(f"predictions have no column {col!r}")
    if len(df) == 0:
        raise ValueError("no predictions to score")
    if df[["label", "pred"]].isna().any().any():
        raise ValueError("missing values in label/pred")
    if classes is None:
        classes = sorted(set(df["label"]) | set(df["pred"]), key=str)
    return list(classes)


def group_confusions(df, classes, group_col, dataset_col):
    """Per-group confusion matrices (G, C, C) and the sorted group keys."""
    cols = _group_cols(df, group_col, dataset_col)
    k = len(classes)
    code = _encode(df["label"], classes) * k + _encode(df["pred"], classes)
    keys = df[cols].astype(str).apply(tuple, axis=1)
    uniq = sorted(set(keys))
    gidx = pd.Index(uniq).get_indexer(keys)
    cms = np.bincount(gidx * k * k + code, minlength=len(uniq) * k * k).reshape(len(uniq), k, k)
    return cms, uniq, cols


# ----------------------------------------------------------------------------- per-fold
def per_subject_table(df: pd.DataFrame, classes: Sequence | None = None, *,
                      group_col: str = "subject", dataset_col: str | None = "dataset",
                      macro_labels: str = "present") -> pd.DataFrame:
    """One row per fold (subject): group column(s), n, accuracy, uf1, uar, weighted_f1.

    ``macro_labels="present"``: a fold's UF1/UAR average over the classes occurring in its truth
    or predictions (sklearn's default ``labels``); ``"all"``: over all of ``classes``.
    """
    if macro_labels not in ("present", "all"):
        raise ValueError("macro_labels must be 'present' or 'all'")
    classes = checked_classes(df, classes)
    cms, keys, cols = group_confusions(df, classes, group_col, dataset_col)
    mask = None
    if macro_labels == "present":
        mask = (cms.sum(axis=-1) + cms.sum(axis=-2)) > 0
    m = from_confusion(cms, mask)
    table = pd.DataFrame(keys, columns=cols)
    table["n"] = cms.sum(axis=(1, 2)).astype(int)
    for k in METRICS:
        table[k] = m[k].astype(float)
    return table


def per_fold_summary(df: pd.DataFrame, classes: Sequence | None = None, **kw) -> dict[str, Any]:
    """Mean and sample sd (ddof=1; None for a single fold) of the per-fold metrics.

    Labelled as per-fold and kept apart from pooled numbers. ``kw`` go to per_subject_table.
    """
    table = per_subject_table(df, classes, **kw)
    sd = table[list(METRICS)].std(ddof=1)
    return {
        "kind": "per_fold",
        "note": PER_FOLD_NOTE,
        "macro_labels": kw.get("macro_labels", "present"),
        "n_folds": int(len(table)),
        "per_fold_mean": {k: float(table[k].mean()) for k in METRICS},
        "per_fold_sd": {k: (None if math.isnan(sd[k]) else float(sd[k])) for k in METRICS},
        "per_fold_min": {k: float(table[k].min()) for k in METRICS},
        "per_fold_max": {k: float(table[k].max()) for k in METRICS},
    }


# ----------------------------------------------------------------------------- chance
def _binom_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    with np.errstate(divide="ignore"):
        return np.exp(logc + k * np.log(p) + (n - k) * np.log1p(-p))


def chance_levels(y_true, classes: Sequence) -> dict[str, dict[str, float]]:
    """Chance baselines for reports, with the same metric definitions as pooled_metrics.

    ``majority``: the constant predictor of the most frequent true class (ties -> first in
    ``classes``). ``uniform_random``: exact expected values when every prediction is drawn
    independently and uniformly from ``classes`` (expectation of each metric, not a plug-in).
    """
    classes = list(classes)
    t = _encode(y_true, classes)
    if t.size == 0:
        raise ValueError("no labels")
    k, n = len(classes), int(t.size)
    support = np.bincount(t, minlength=k)
    maj = int(np.argmax(support))
    majority = pooled_metrics(t, np.full(n, maj), classes)
    p = 1.0 / k
    f1 = np.zeros(k)
    for c in range(k):
        nc = int(support[c])
        if nc == 0:
            continue  # TP = 0 always -> F1 = 0 (zero_division=0 when nothing is predicted)
        tp = np.arange(nc + 1)[:, None]
        fp = np.arange(n - nc + 1)[None, :]
        joint = _binom_pmf(nc, p)[:, None] * _binom_pmf(n - nc, p)[None, :]
        f1[c] = float((joint * (2 * tp / (nc + tp + fp))).sum())  # 2TP+FP+FN = N_c+TP+FP
    uniform = {
        "accuracy": p,
        "uf1": float(f1.mean()),
        "uar": float((support > 0).sum() * p / k),
        "weighted_f1": float((support * f1).sum() / n),
    }
    return {
        "majority": {"class": str(classes[maj]), **{m: majority[m] for m in METRICS}},
        "uniform_random": uniform,
    }


# ----------------------------------------------------------------------------- degenerate folds
CONSTANT_TOLERANCE = 1e-3  # probability units: a fold whose every class probability varies less
# than this over its test clips gives them all the same answer (after a few steps, eval activations
# can shrink ~10x per block until BatchNorm's running statistics settle: the model learned nothing)


def constant_predictor_folds(df: pd.DataFrame, tolerance: float = CONSTANT_TOLERANCE,
                             fold_col: str = "fold") -> dict[str, Any]:
    """Folds whose model gave (near-)identical class probabilities to every test clip.

    Needs the ``p_<class>`` columns and ``fold_col``. A fold's spread is the largest, over classes,
    of max - min of that class's probability over the fold's clips; a fold with at least 2 clips
    and a spread below ``tolerance`` is constant. Folds with a single clip cannot be judged and are
    counted apart. Returns ``{"tolerance", "n_folds", "n_judged", "folds": [...], "spread": {fold:
    spread}}``."""
    prob_cols = [c for c in df.columns if str(c).startswith("p_")]
    if not prob_cols or fold_col not in df.columns:
        raise KeyError(f"predictions need {fold_col!r} and p_<class> columns")
    spread, constant = {}, []
    for fold, part in df.groupby(fold_col, sort=True):
        if len(part) < 2:
            continue
        probs = part[prob_cols].to_numpy(dtype=np.float64)
        spread[str(fold)] = float((probs.max(axis=0) - probs.min(axis=0)).max())
        if spread[str(fold)] < tolerance:
            constant.append(str(fold))
    return {"tolerance": tolerance, "n_folds": int(df[fold_col].nunique()), "n_judged": len(spread),
            "folds": constant, "spread": spread}


__all__ = [
    "METRICS", "METRIC_NAMES", "PER_FOLD_NOTE", "confusion_matrix", "from_confusion", "pooled_metrics",
    "group_confusions", "checked_classes", "per_subject_table", "per_fold_summary", "chance_levels",
    "constant_predictor_folds", "CONSTANT_TOLERANCE",
]
