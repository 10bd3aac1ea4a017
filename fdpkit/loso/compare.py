"""Paired comparison of two LOSO runs on the same folds (`fdpkit compare RUN_A RUN_B [RUN_C ...]`).

Run A is the reference; every other run B is compared with it, clip by clip (paired by
``clip_uid``), on the *pooled* UF1, UAR and accuracy of `fdpkit.metrics`. The definitions are
in docs/metrics.md ("Paired comparison of two runs"); in short, with the subject (the pair (dataset,
subject) with a ``dataset`` column) as the unit of every resampling:

* **difference** ``d = M(B) - M(A)`` on the pooled predictions (positive: B is better);
* **bootstrap interval** of d: `fdpkit.loso.bootstrap.subject_bootstrap` with both runs pooled over
  the *same* drawn subjects in each replicate, ``d_r = M(B_r) - M(A_r)``, percentile interval;
* **sign-flip permutation p-value** (two-sided): A's and B's predictions swapped for all clips of a
  subset S of subjects, the pooled difference ``d_S`` recomputed; exact over all 2^G subsets when
  ``2^G <= n_perm`` (p = #{|d_S| >= |d|} / 2^G), else Monte Carlo with the +1 correction
  (p = (1 + #{|d_S| >= |d|}) / (n_perm + 1)); ties within 1e-12 count.

Deterministic for a seed; the runs' ``summary.json`` files are only read. Runs are refused
(`BadInput`, exit 2) unless they have the same classes, protocol, manifest (``manifest_sha256``),
folds and clip_uid set, and each clip has the same subject and true label in both.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fdpkit.errors import BadInput
from fdpkit.io import read_json, write_json
from fdpkit.loso.bootstrap import subject_bootstrap
from fdpkit.metrics import from_confusion, group_confusions, pooled_metrics
from fdpkit.loso.outputs import PREDICTIONS, SUMMARY, read_predictions

COMPARED = ("uf1", "uar", "accuracy")
GROUP_COL, DATASET_COL = "subject", "dataset"
TIE_TOLERANCE = 1e-12
PERMUTATION_CHUNK = 4096  # flips scored at once
NEEDED_COLUMNS = ("clip_uid", "subject", "label", "pred")
PERMUTATION_NOTE = ("sign-flip permutation over subjects (A and B predictions swapped for all clips of "
                    "a subset of subjects, pooled metric recomputed), two-sided")
BOOTSTRAP_NOTE = ("percentile bootstrap over subjects of the difference B - A (same subject draws for "
                  "both runs in each replicate, pooled metrics recomputed)")


# ----------------------------------------------------------------------------- reading runs
def load_run(run_dir) -> tuple[pd.DataFrame, dict]:
    """A finished run folder's predictions.csv and summary.json, or BadInput naming what is missing."""
    run_dir = Path(run_dir)
    for name in (PREDICTIONS, SUMMARY):
        if not (run_dir / name).is_file():
            raise BadInput(f"{run_dir / name} not found: give the folder of a finished `fdpkit loso` run "
                           "(it holds predictions.csv and summary.json once every fold is done)")
    predictions = read_predictions(run_dir / PREDICTIONS)
    missing = [c for c in NEEDED_COLUMNS if c not in predictions.columns]
    if missing:
        raise BadInput(f"{run_dir / PREDICTIONS} has no column(s) {', '.join(missing)}: "
                       "is it a predictions.csv written by `fdpkit loso`?")
    if predictions.empty:
        raise BadInput(f"{run_dir / PREDICTIONS} has no rows: re-run `fdpkit loso` into {run_dir}")
    duplicated = predictions["clip_uid"][predictions["clip_uid"].duplicated()]
    if len(duplicated):
        raise BadInput(f"{run_dir / PREDICTIONS}: clip_uid {duplicated.iloc[0]} occurs more than once "
                       "(a run predicts each clip once): re-pool the run with `fdpkit loso`")
    summary = read_json(run_dir / SUMMARY)
    if not isinstance(summary, dict) or not isinstance(summary.get("classes"), list):
        raise BadInput(f"{run_dir / SUMMARY} has no class list: is it a summary.json written by `fdpkit loso`?")
    return predictions, summary


def _folds(summary: dict) -> set[str] | None:
    folds = (summary.get("seeds") or {}).get("folds")
    return None if folds is None else set(folds)


def _examples(values) -> str:
    values = sorted(values)
    return ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def check_same_folds(a: tuple[pd.DataFrame, dict], b: tuple[pd.DataFrame, dict], name_a: str,
                     name_b: str) -> None:
    """Refuse (BadInput) two runs that were not made on the same folds, clips, classes and protocol."""
    (pa, sa), (pb, sb) = a, b
    what = f"runs {name_a} and {name_b}"
    if list(sa["classes"]) != list(sb["classes"]):
        raise BadInput(f"{what} have different classes ({sa['classes']} vs {sb['classes']}): "
                       "compare runs of the same manifest and protocol")
    for key in ("protocol", "manifest_sha256"):
        if sa.get(key) != sb.get(key):
            raise BadInput(f"{what} have different {key} in summary.json ({sa.get(key)} vs {sb.get(key)}): "
                           "compare runs made from the same manifest")
    folds_a, folds_b = _folds(sa), _folds(sb)
    if folds_a is not None and folds_b is not None and folds_a != folds_b:
        raise BadInput(f"{what} were run on different folds (only in {name_a}: "
                       f"{_examples(folds_a - folds_b) or '-'}; only in {name_b}: "
                       f"{_examples(folds_b - folds_a) or '-'}): run both on the same --folds")
    clips_a, clips_b = set(pa["clip_uid"]), set(pb["clip_uid"])
    if clips_a != clips_b:
        raise BadInput(f"{what} predicted different clips ({len(clips_a - clips_b)} only in {name_a}, e.g. "
                       f"{_examples(clips_a - clips_b) or '-'}; {len(clips_b - clips_a)} only in {name_b}, "
                       f"e.g. {_examples(clips_b - clips_a) or '-'}): compare runs on the same manifest, "
                       "cache and folds")
    keys = [c for c in (DATASET_COL, GROUP_COL, "label") if c in pa.columns and c in pb.columns]
    left = pa.set_index("clip_uid")[keys]
    right = pb.set_index("clip_uid")[keys].loc[left.index]
    differs = (left.astype(str) != right.astype(str)).any(axis=1)
    if differs.any():
        clip = differs.index[differs.to_numpy()][0]
        raise BadInput(f"{what}: clip {clip} has {dict(left.loc[clip])} in {name_a} but "
                       f"{dict(right.loc[clip])} in {name_b} ({int(differs.sum())} clip(s) differ): "
                       "compare runs made from the same manifest")


def _check_summary_matches(predictions: pd.DataFrame, summary: dict, name: str) -> dict[str, float]:
    """Pooled metrics recomputed from predictions.csv; BadInput if summary.json says otherwise."""
    try:
        pooled = pooled_metrics(predictions["label"], predictions["pred"], summary["classes"])
    except ValueError as error:
        raise BadInput(f"{Path(name) / PREDICTIONS}: {error}") from None
    stated = summary.get("pooled") or {}
    for k in COMPARED:
        if k in stated and stated[k] is not None and abs(stated[k] - pooled[k]) > 1e-9:
            raise BadInput(f"{name}: summary.json says pooled {k} {stated[k]:.6f} but predictions.csv gives "
                           f"{pooled[k]:.6f}: the files are from different runs; re-pool with `fdpkit loso`")
    return {k: pooled[k] for k in COMPARED}


# ----------------------------------------------------------------------------- statistics
def _metrics_of(cms: np.ndarray) -> dict[str, np.ndarray]:
    """COMPARED metrics of a stack (..., C, C) of pooled confusion matrices (fdpkit.metrics rules)."""
    m = from_confusion(cms)
    return {k: m[k] for k in COMPARED}


def flip_matrix(n_subjects: int, n_perm: int, seed: int) -> tuple[np.ndarray, str]:
    """(K, G) 0/1 flips: all 2^G subsets when 2^G <= n_perm ('exact'), else n_perm random ones."""
    if n_perm < 1:
        raise BadInput(f"--n-perm must be >= 1, got {n_perm}")
    if n_subjects < 63 and 2 ** n_subjects <= n_perm:
        codes = np.arange(2 ** n_subjects, dtype=np.int64)[:, None]
        return ((codes >> np.arange(n_subjects, dtype=np.int64)) & 1).astype(np.int8), "exact"
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n_perm, n_subjects), dtype=np.int8), "monte_carlo"


def permutation_p(cms_a: np.ndarray, cms_b: np.ndarray, n_perm: int, seed: int
                  ) -> tuple[dict[str, float], str, int]:
    """Sign-flip p-value per metric from per-subject confusion matrices (G, C, C) of A and B."""
    flips, kind = flip_matrix(len(cms_a), n_perm, seed)
    cms_a, cms_b = cms_a.astype(np.float64), cms_b.astype(np.float64)
    observed_a, observed_b = _metrics_of(cms_a.sum(axis=0)), _metrics_of(cms_b.sum(axis=0))
    observed = {k: abs(float(observed_b[k] - observed_a[k])) for k in COMPARED}
    extreme = dict.fromkeys(COMPARED, 0)
    for start in range(0, len(flips), PERMUTATION_CHUNK):  # bounded memory for any n_perm
        flip = flips[start:start + PERMUTATION_CHUNK].astype(np.float64)
        keep = 1.0 - flip
        perm_a = np.tensordot(keep, cms_a, axes=(1, 0)) + np.tensordot(flip, cms_b, axes=(1, 0))
        perm_b = np.tensordot(keep, cms_b, axes=(1, 0)) + np.tensordot(flip, cms_a, axes=(1, 0))
        ma, mb = _metrics_of(perm_a), _metrics_of(perm_b)
        for k in COMPARED:
            extreme[k] += int((np.abs(mb[k] - ma[k]) >= observed[k] - TIE_TOLERANCE).sum())
    n = len(flips)
    p = {k: extreme[k] / n if kind == "exact" else (extreme[k] + 1) / (n + 1) for k in COMPARED}
    return p, kind, n


def bootstrap_difference(cms_a: np.ndarray, cms_b: np.ndarray, *, n_boot: int, seed: int, level: float
                         ) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Replicates (n_boot,) of M(B) - M(A), both runs pooled over the same drawn subjects, and their
    percentile interval per metric, from per-subject confusion matrices (G, C, C) of A and B."""
    def score(pooled_a, pooled_b):
        ma, mb = _metrics_of(pooled_a), _metrics_of(pooled_b)
        return np.stack([mb[k] - ma[k] for k in COMPARED])

    replicates, low, high = subject_bootstrap([cms_a, cms_b], score, n_boot=n_boot, seed=seed, level=level)
    return (dict(zip(COMPARED, replicates)),
            {k: [float(lo), float(hi)] for k, lo, hi in zip(COMPARED, low, high)})


def _describe(summary: dict, run_dir) -> dict[str, Any]:
    return {"run": str(run_dir), "model": summary.get("model"), "preset": summary.get("preset"),
            "selection": summary.get("selection"), "shuffle_labels": summary.get("shuffle_labels"),
            "seed": (summary.get("seeds") or {}).get("base")}


def _warnings(desc_a: dict, desc_b: dict) -> list[str]:
    out = []
    if desc_a["selection"] != desc_b["selection"]:
        out.append(f"different selection rules ({desc_a['selection']} vs {desc_b['selection']})")
    for desc in (desc_a, desc_b):
        if desc["selection"] == "test_best":
            out.append(f"{desc['run']} picked its steps on the test fold (test_best): optimistic")
        if desc["shuffle_labels"]:
            out.append(f"{desc['run']} is a label-shuffled control")
    return out


def compare_runs(run_a, run_b, *, n_boot: int = 1000, n_perm: int = 10000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Any]:
    """Paired comparison of run B against run A (module doc): per metric in COMPARED, A, B, the
    difference B - A, its bootstrap-over-subjects interval and the sign-flip permutation p-value."""
    if not 0 < level < 1:
        raise BadInput(f"--level must be between 0 and 1, got {level}")
    if n_boot < 1:
        raise BadInput(f"--n-boot must be >= 1, got {n_boot}")
    a, b = load_run(run_a), load_run(run_b)
    check_same_folds(a, b, str(run_a), str(run_b))
    (pred_a, sum_a), (pred_b, sum_b) = a, b
    pred_b = pred_b.set_index("clip_uid").loc[pred_a["clip_uid"]].reset_index()  # paired row order
    classes = list(sum_a["classes"])
    pooled_a = _check_summary_matches(pred_a, sum_a, str(run_a))
    pooled_b = _check_summary_matches(pred_b, sum_b, str(run_b))
    cms_a, groups_a, _ = group_confusions(pred_a, classes, GROUP_COL, DATASET_COL)
    cms_b, groups_b, _ = group_confusions(pred_b, classes, GROUP_COL, DATASET_COL)
    assert groups_a == groups_b  # same clips with the same subjects (checked above)
    p, kind, n_flips = permutation_p(cms_a, cms_b, n_perm, seed)
    _, ci = bootstrap_difference(cms_a, cms_b, n_boot=n_boot, seed=seed, level=level)
    difference = {k: {"a": pooled_a[k], "b": pooled_b[k], "diff": pooled_b[k] - pooled_a[k], "ci": ci[k], "p": p[k]}
                  for k in COMPARED}
    desc_a, desc_b = _describe(sum_a, run_a), _describe(sum_b, run_b)
    return {
        "a": desc_a, "b": desc_b, "n_clips": int(len(pred_a)), "n_subjects": len(groups_a),
        "classes": classes, "difference": difference, "warnings": _warnings(desc_a, desc_b),
        "bootstrap": {"method": BOOTSTRAP_NOTE, "level": level, "n_boot": n_boot, "seed": seed},
        "permutation": {"method": PERMUTATION_NOTE, "kind": kind, "n": n_flips, "seed": seed},
        "definitions": "docs/metrics.md (paired comparison); fdpkit/loso/compare.py",
    }


def compare_many(reference, others: Sequence, **kw) -> dict[str, Any]:
    """The reference run against each of ``others`` (kw: compare_runs' options)."""
    if not others:
        raise BadInput("give at least two run folders: the reference first, then the runs to compare with it")
    return {"reference": str(reference), "comparisons": [compare_runs(reference, o, **kw) for o in others]}


# ----------------------------------------------------------------------------- CLI
def _label(desc: dict) -> str:
    return f"{desc.get('model') or '?'}/{desc.get('preset') or '?'}"


def format_table(result: dict[str, Any]) -> str:
    """One header about the reference and one row per compared run."""
    first = result["comparisons"][0]
    ref, level = first["a"], first["bootstrap"]["level"]
    lines = [f"reference: {ref['run']} ({_label(ref)}): UF1 {first['difference']['uf1']['a']:.3f}  "
             f"UAR {first['difference']['uar']['a']:.3f}  ({first['n_clips']} clips, "
             f"{first['n_subjects']} subjects)",
             f"{'run':<28} {'model/preset':<18} {'dUF1':>7} {f'[{level:.0%} CI]':<17} {'p':>6}  "
             f"{'dUAR':>7} {f'[{level:.0%} CI]':<17} {'p':>6}"]
    for c in result["comparisons"]:
        cells = []
        for k in ("uf1", "uar"):
            d = c["difference"][k]
            cells.append(f"{d['diff']:+7.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] {d['p']:6.4f}")
        lines.append(f"{c['b']['run']:<28} {_label(c['b']):<18} {cells[0]}  {cells[1]}")
        lines.extend(f"  note: {w}" for w in c["warnings"])
    perm = first["permutation"]
    lines.append(f"d = B - A (pooled); CI: {BOOTSTRAP_NOTE}, n_boot {first['bootstrap']['n_boot']}; "
                 f"p: {PERMUTATION_NOTE}, {perm['kind'].replace('_', ' ')} ({perm['n']} flips); "
                 f"seed {perm['seed']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders; the first is the reference")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result to this JSON file")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--n-perm", type=int, default=10000,
                        help="permutations; exact enumeration when 2^subjects <= this (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and permutations")
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")


def run_cli(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise BadInput("give at least two run folders: the reference first, then the runs to compare with it")
    result = compare_many(args.runs[0], args.runs[1:], n_boot=args.n_boot, n_perm=args.n_perm,
                          seed=args.seed, level=args.level)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


__all__ = ["COMPARED", "load_run", "check_same_folds", "flip_matrix", "permutation_p", "bootstrap_difference",
           "compare_runs", "compare_many", "format_table", "add_arguments", "run_cli"]
