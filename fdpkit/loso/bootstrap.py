"""Percentile bootstrap over subjects: `scipy.stats.bootstrap` resampling whole subjects (docs/metrics.md).

The clips of one subject are not independent and one LOSO fold is one subject, so the resampled
unit is the subject (the pair (dataset, subject) with a ``dataset`` column; see
`fdpkit.metrics.group_confusions`). scipy resamples the G subject indices (one replicate = G
draws with replacement from ``numpy.random.default_rng(seed)``); a replicate's score is the pooled
metric of the pooled confusion matrix of the drawn subjects (a subject drawn twice counts twice),
computed for all replicates at once from the per-subject confusion matrices. With more than one
run (`fdpkit.loso.compare`), every run is pooled over the *same* drawn subjects of a replicate.
The interval is scipy's percentile interval. One subject gives the degenerate interval (p, p)
(scipy refuses a one-observation sample; every replicate would be that subject).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from fdpkit.metrics import METRICS, checked_classes, from_confusion, group_confusions

METHOD = "percentile bootstrap over subjects (pooled metric recomputed)"  # the method line of summary.json


def _pooled(group_cms: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(n, C, C) pooled confusion matrices of the subjects drawn in each row of ``draws`` (n, G)."""
    n, g = draws.shape
    counts = np.bincount((draws + g * np.arange(n)[:, None]).ravel(), minlength=n * g).reshape(n, g)
    return np.tensordot(counts.astype(np.float64), group_cms, axes=(1, 0))


def subject_bootstrap(group_cms: Sequence[np.ndarray], score: Callable[..., np.ndarray], *, n_boot: int,
                      seed: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replicates (M, n_boot) and percentile interval ends low (M,), high (M,) of
    ``score(*pooled)`` -> (M, n), where ``pooled`` holds, per run in ``group_cms`` (each (G, C, C), the
    same G subjects in the same order), the (n, C, C) confusion matrices pooled over the same draws."""
    # scipy.stats takes ~1 s to import and the CLI imports this module's importers for every verb
    from scipy.stats import bootstrap

    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    group_cms = [np.asarray(c, dtype=np.float64) for c in group_cms]

    def statistic(draws: np.ndarray, axis: int = -1) -> np.ndarray:
        draws = np.atleast_2d(draws)
        return np.asarray(score(*(_pooled(c, draws) for c in group_cms)))

    g = len(group_cms[0])
    if g < 2:
        replicates = statistic(np.zeros((n_boot, g), dtype=np.int64))
        return replicates, replicates[:, 0].copy(), replicates[:, 0].copy()
    result = bootstrap((np.arange(g),), statistic, n_resamples=n_boot, vectorized=True, axis=-1,
                       confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return result.bootstrap_distribution, np.asarray(low), np.asarray(high)


def _bootstrap(df, classes, metrics, n_boot, seed, level, group_col, dataset_col):
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metrics {bad}; choose from {METRICS}")
    classes = checked_classes(df, classes)
    cms, _, _ = group_confusions(df, classes, group_col, dataset_col)

    def score(pooled):
        m = from_confusion(pooled)
        return np.stack([m[k] for k in metrics])

    return subject_bootstrap([cms], score, n_boot=n_boot, seed=seed, level=level)


def bootstrap_samples(df: pd.DataFrame, classes: Sequence, metrics: Sequence[str] = METRICS, *,
                      n_boot: int = 1000, seed: int = 0, group_col: str = "subject",
                      dataset_col: str | None = "dataset") -> dict[str, np.ndarray]:
    """Bootstrap distribution (n_boot,) of each pooled metric, resampling whole subjects."""
    replicates, _, _ = _bootstrap(df, classes, metrics, n_boot, seed, 0.95, group_col, dataset_col)
    return dict(zip(metrics, replicates))


def bootstrap_ci(df: pd.DataFrame, classes: Sequence, metrics: Sequence[str] = METRICS, *,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 group_col: str = "subject", dataset_col: str | None = "dataset",
                 ) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval over subjects: metric -> (low, high). Deterministic for a seed."""
    _, low, high = _bootstrap(df, classes, metrics, n_boot, seed, level, group_col, dataset_col)
    return {k: (float(lo), float(hi)) for k, lo, hi in zip(metrics, low, high)}


__all__ = ["METHOD", "subject_bootstrap", "bootstrap_samples", "bootstrap_ci"]
