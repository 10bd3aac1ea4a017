"""A LOSO run's result files (layout: `fdpkit.loso.run`), written by the driver only.

`write_fold` writes a finished fold's files, metrics.json last (its presence marks the fold
finished); `pool_run` pools the finished folds into predictions.csv, results.csv and summary.json;
`read_predictions` reads a predictions.csv back exactly; `format_summary` is the printed summary line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fdpkit.io import read_json, write_csv, write_json
from fdpkit.loso.folds import Fold, fold_dirname
from fdpkit.metrics import constant_predictor_folds, per_subject_table
from fdpkit.loso.summary import summarize_predictions
from fdpkit.train.config import OPTIMISTIC_WARNING, TrainConfig

SUMMARY = "summary.json"
RESULTS = "results.csv"
PREDICTIONS = "predictions.csv"
FOLD_METRICS = "metrics.json"


def read_predictions(path) -> pd.DataFrame:
    """A predictions.csv with ids as strings (subject `01` stays `01`) and exact floats."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        if column.startswith("p_"):
            frame[column] = frame[column].map(float)
    if "selected_step" in frame:
        frame["selected_step"] = frame["selected_step"].astype(int)
    if "optimistic" in frame:
        frame["optimistic"] = frame["optimistic"] == "True"
    return frame


def write_fold(result: dict[str, Any], classes: list[str]) -> None:
    """Driver side: a fold's files, metrics.json last (its presence marks the fold finished)."""
    fold_dir = Path(result["fold_dir"])
    write_csv(fold_dir / PREDICTIONS, result["predictions"])
    write_csv(fold_dir / "train_log.csv", result["log"])
    row = per_subject_table(result["predictions"], classes).iloc[0]
    metrics = {**result["metrics"], **{k: float(row[k]) for k in ("accuracy", "uf1", "uar", "weighted_f1")},
               "fold_metric_note": "this subject's clips alone (classes present in truth or predictions)"}
    write_json(fold_dir / FOLD_METRICS, metrics)


def pooled_summary(out_dir: Path, fold_list: list[Fold]) -> dict[str, Any] | None:
    """The summary.json already pooled from exactly these folds, or None (a finished run re-run
    only reads: its folder may be read-only)."""
    path = Path(out_dir) / SUMMARY
    if not (path.exists() and (Path(out_dir) / PREDICTIONS).exists() and (Path(out_dir) / RESULTS).exists()):
        return None
    summary = read_json(path)
    pooled_folds = set(summary.get("seeds", {}).get("folds", {}))
    return summary if pooled_folds == {f.subject_uid for f in fold_list} else None


def pool_run(out_dir: Path, config: dict, fold_list: list[Fold]) -> dict[str, Any]:
    """Pool the finished folds' predictions into predictions.csv, results.csv, summary.json."""
    out_dir, classes = Path(out_dir), config["manifest"]["classes"]
    frames, fold_rows = [], []
    for fold in fold_list:
        fold_dir = out_dir / "folds" / fold_dirname(fold.subject_uid)
        frames.append(read_predictions(fold_dir / PREDICTIONS))
        fold_rows.append(read_json(fold_dir / FOLD_METRICS))
    predictions = pd.concat(frames, ignore_index=True)
    write_csv(out_dir / PREDICTIONS, predictions)
    selection = config["selection"]
    summary = summarize_predictions(predictions, classes, seed=config["seed"])
    meta = {
        "selection": selection, "preset": config["preset"], "model": config["model"],
        "protocol": config["manifest"]["protocol"], "manifest_sha256": config["manifest"]["sha256"],
        "seeds": {"base": config["seed"], "folds": config["fold_seeds"]},
        "holdout": config.get("holdout", "subject"),
        "shuffle_labels": config["shuffle_labels"], "train": TrainConfig(**config["train"]).fingerprint(),
        "model_overrides": config["model_overrides"], "fdpkit_version": config["fdpkit_version"],
    }
    if config["shuffle_labels"]:
        meta["control"] = "label-shuffled training labels (test labels true): expect chance level"
    if selection == "test_best":
        meta["warning"] = OPTIMISTIC_WARNING
    summary = {**meta, **summary, "constant_predictor": constant_predictor_folds(predictions)}
    table = per_subject_table(predictions, classes)
    info = pd.DataFrame([{"fold": m["subject_uid"], "fold_seed": m["fold_seed"],
                          "selected_step": m["selected_step"], "n_train": m["n_train"],
                          "n_inner_val": m["n_inner_val"]} for m in fold_rows])
    table.insert(0, "subject_uid", table["dataset"].astype(str) + "/" + table["subject"].astype(str)
                 if "dataset" in table else table["subject"])
    # a subject's fold: itself under LOSO, its corpus under the cross-dataset protocol
    fold_of = predictions.drop_duplicates("subject_uid").set_index("subject_uid")["fold"]
    table["fold"] = table["subject_uid"].map(fold_of)
    table = table.merge(info, on="fold", how="left").drop(columns="fold")
    table["selection"] = selection
    if selection == "test_best":
        table["warning"] = OPTIMISTIC_WARNING
    write_csv(out_dir / RESULTS, table)
    write_json(out_dir / SUMMARY, summary)
    return summary


def constant_predictor_warning(summary: dict) -> str | None:
    """The sentence for a run whose model gave some folds' clips all the same probabilities (None
    when no fold did): printed by the CLI and shown in the report."""
    constant = summary.get("constant_predictor") or {}
    folds = constant.get("folds") or []
    if not folds:
        return None
    shown = ", ".join(folds[:5]) + (" ..." if len(folds) > 5 else "")
    return (f"constant predictor in {len(folds)} of {constant['n_judged']} folds ({shown}): those models "
            f"gave every test clip the same probabilities (spread < {constant['tolerance']:g}); they "
            "learned nothing: train longer or check the data")


def format_summary(summary: dict) -> str:
    ci = summary["ci"]["intervals"]
    p = summary["pooled"]
    text = (f"pooled UF1 {p['uf1']:.3f} [95% {ci['uf1'][0]:.3f}, {ci['uf1'][1]:.3f}]  "
            f"UAR {p['uar']:.3f} [{ci['uar'][0]:.3f}, {ci['uar'][1]:.3f}]  "
            f"accuracy {p['accuracy']:.3f}  ({summary['n']} clips, {summary['n_subjects']} subjects)  "
            f"selection: {summary['selection']}")
    for name, d in (summary.get("per_dataset") or {}).items():   # composite / cross-dataset runs
        text += (f"\n  {name}: UF1 {d['uf1']:.3f} [{d['ci']['uf1'][0]:.3f}, {d['ci']['uf1'][1]:.3f}]  "
                 f"UAR {d['uar']:.3f} [{d['ci']['uar'][0]:.3f}, {d['ci']['uar'][1]:.3f}]  "
                 f"({d['n']} clips, {d['n_subjects']} subjects)")
    if summary.get("warning"):
        text += f"\nWARNING: {summary['warning']}"
    constant = constant_predictor_warning(summary)
    if constant:
        text += f"\nWARNING: {constant}"
    if summary.get("shuffle_labels"):
        text += "\n(label-shuffled control)"
    return text


__all__ = ["SUMMARY", "RESULTS", "PREDICTIONS", "FOLD_METRICS", "read_predictions", "write_fold",
           "pool_run", "pooled_summary", "format_summary", "constant_predictor_warning"]
