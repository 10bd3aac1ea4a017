"""Static figures of the data, the training and the results: every function returns a matplotlib
Figure (no pyplot state, nothing shown).

Jupyter displays a returned Figure once; headless runs (papermill, nbconvert) keep it in the
output. The widgets in `fdpkit.viz.widgets` redraw these same figures when a control changes.
Attribution figures are in `fdpkit.viz.attribution_figures`.

Clip records (`clip_view`, `clip_grid`) are dicts with: clip_uid, frames uint8 (T, H, W),
frame_numbers (T,), and optionally onset/apex/offset, dynamic_image (target, [0, 1]),
pred_dynamic_image, rank_scores (K, T), probs (C,), classes, label, pred (indices).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fdpkit.metrics import METRIC_NAMES
from fdpkit.viz.panels import add_colorbar, image_panel, new_figure

DI_UNITS = "dynamic image (0-1, min-max scaled)"


def _di(ax, image, title: str = ""):
    """A dynamic image on the fixed 0..1 scale (the target's range), so panels compare."""
    return image_panel(ax, image, title, cmap="magma", vmin=0, vmax=1)


def apex_position(record: dict) -> int:
    """The sampled position nearest to the annotated apex (the middle one without an apex)."""
    numbers = np.asarray(record["frame_numbers"])
    if record.get("apex") is None:
        return len(numbers) // 2
    return int(np.abs(numbers - int(record["apex"])).argmin())


def key_frame_marks(frame_numbers, onset=None, apex=None, offset=None) -> dict[int, str]:
    """Sampled position -> 'onset' / 'apex' / 'offset' (the sampled frame nearest to each)."""
    numbers = np.asarray(frame_numbers)
    marks: dict[int, list[str]] = {}
    for name, value in (("onset", onset), ("apex", apex), ("offset", offset)):
        if value is not None and len(numbers):
            marks.setdefault(int(np.abs(numbers - int(value)).argmin()), []).append(name)
    return {k: "/".join(v) for k, v in marks.items()}


# ------------------------------------------------------------------------ data
def class_counts(per_subject: pd.DataFrame, title: str = "clips per subject and class") -> Figure:
    """Stacked bars from a subject x class table (`fdpkit.nb.notebook.manifest_tables`)."""
    table = per_subject.drop(columns=["total"], errors="ignore")
    fig = new_figure(max(6, 0.35 * len(table) + 2), 3.2)
    ax = fig.add_subplot()
    bottom = np.zeros(len(table))
    for name in table.columns:
        ax.bar(range(len(table)), table[name].to_numpy(), bottom=bottom, label=str(name))
        bottom += table[name].to_numpy()
    ax.set_xticks(range(len(table)), [str(s).split("/")[-1] for s in table.index], rotation=90, fontsize=7)
    ax.set_xlabel("subject")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(fontsize=7, title="class", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def clip_grid(clips: Sequence[dict], show_dynamic_image: bool = True) -> Figure:
    """One row per clip: its T aligned frames (onset/apex/offset marked) and its dynamic image."""
    t = max(len(c["frames"]) for c in clips)
    cols = t + int(show_dynamic_image)
    fig = new_figure(1.1 * cols, 1.3 * len(clips))
    axes = np.atleast_2d(fig.subplots(len(clips), cols, squeeze=False))
    for row, clip in zip(axes, clips):
        marks = key_frame_marks(clip["frame_numbers"], clip.get("onset"), clip.get("apex"), clip.get("offset"))
        for i, ax in enumerate(row[:t]):
            if i >= len(clip["frames"]):
                ax.axis("off")
                continue
            label = f"#{int(clip['frame_numbers'][i])}" + (f" {marks[i]}" if i in marks else "")
            image_panel(ax, clip["frames"][i], label, vmin=0, vmax=255)
            if i in marks:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
        row[0].set_ylabel(f"{clip.get('clip_uid', '')}\n{clip.get('label_name', '')}", fontsize=7)
        if show_dynamic_image:
            shown = _di(row[-1], clip["dynamic_image"], "dynamic image")
    if show_dynamic_image:
        add_colorbar(fig, shown, axes[:, -1], DI_UNITS)
    return fig


# ------------------------------------------------------------------------ training
def loss_curves(log: pd.DataFrame, title: str = "training loss") -> Figure:
    """Total loss and its unweighted parts (CE, dynamic-image MSE, rank) over steps."""
    fig = new_figure(7, 3)
    axes = fig.subplots(1, 2)
    axes[0].plot(log["step"], log["loss"], label="total (weighted)")
    axes[0].set_title(title, fontsize=9)
    for part in ("ce", "di", "rank"):
        if part in log and np.nanmax(np.abs(log[part].to_numpy(dtype=float))) > 0:
            axes[1].plot(log["step"], log[part], label=part)
    axes[1].set_title("parts (unweighted)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        values = np.concatenate([line.get_ydata() for line in ax.lines]) if ax.lines else np.ones(1)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and values.max() / values.min() > 20:  # log scale only when it helps
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    return fig


def dynamic_images(clips: Sequence[dict]) -> Figure:
    """Target (top) vs predicted (bottom) dynamic image of each clip."""
    fig = new_figure(1.6 * len(clips), 3.4)
    axes = fig.subplots(2, len(clips), squeeze=False)
    for i, clip in enumerate(clips):
        shown = _di(axes[0, i], clip["dynamic_image"], f"target\n{clip.get('clip_uid', '')}")
        pred = clip.get("pred_dynamic_image")
        if pred is None:
            axes[1, i].axis("off")
        else:
            _di(axes[1, i], pred, "predicted")
    add_colorbar(fig, shown, axes, DI_UNITS)
    return fig


def _rank_axes(ax, scores, frame: int | None = None, numbers=None):
    scores = np.atleast_2d(np.asarray(scores))
    x = np.arange(scores.shape[-1])
    for k, row in enumerate(scores):
        ax.plot(x, row, marker="o", ms=3, label=f"k={k}")
    if frame is not None:
        ax.axvline(frame, color="red", lw=1)
    ax.set_xlabel("sampled frame")
    ax.set_ylabel("rank score")
    if numbers is not None:
        ax.set_xticks(x, [str(int(n)) for n in numbers], fontsize=6)
    ax.legend(fontsize=6, ncols=2)


def rank_scores(clips: Sequence[dict]) -> Figure:
    """Rank scores s[k, t] over the sampled frames, one panel per clip."""
    fig = new_figure(3 * len(clips), 2.6)
    axes = np.atleast_1d(fig.subplots(1, len(clips)))
    for ax, clip in zip(axes, clips):
        _rank_axes(ax, clip["rank_scores"], numbers=clip.get("frame_numbers"))
        ax.set_title(clip.get("clip_uid", ""), fontsize=8)
    return fig


# ------------------------------------------------------------------------ results
def confusion(matrix, labels, normalize: bool = True, title: str = "pooled confusion matrix") -> Figure:
    """Seaborn heatmap, rows = true class; ``normalize``: each row as shares (counts annotated)."""
    counts = np.asarray(matrix, dtype=float)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    annot = np.array([[f"{int(c)}" for c in row] for row in counts])
    fig = new_figure(1.0 * len(labels) + 2, 0.8 * len(labels) + 1.5)
    ax = fig.add_subplot()
    sns.heatmap(shown, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1 if normalize else None,
                xticklabels=labels, yticklabels=labels, ax=ax, cbar_kws={"label": "share of row" if normalize else "clips"})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return fig


def per_subject_bars(table: pd.DataFrame, metrics: Sequence[str] = ("uf1", "accuracy"),
                     title: str = "per-fold (one subject each): not comparable with pooled") -> Figure:
    """Grouped bars of per-fold metrics (`results.csv` / `per_subject_table`)."""
    names = table["subject"].astype(str) if "subject" in table else table.iloc[:, 0].astype(str)
    fig = new_figure(max(6, 0.4 * len(table) + 2), 3)
    ax = fig.add_subplot()
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        ax.bar(np.arange(len(table)) + j * width, table[metric], width, label=METRIC_NAMES.get(metric, metric))
    ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2, names, rotation=90, fontsize=7)
    ax.set_xlabel("held-out subject (one fold each)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def metric_bars(table: pd.DataFrame, metrics: Sequence[str] = ("uf1", "uar"), name_col: str = "name",
                title: str = "pooled metrics, 95% bootstrap-over-subjects intervals", chance=None) -> Figure:
    """Bars with interval whiskers from a table with columns <metric>, <metric>_low, <metric>_high;
    ``chance``: one value (drawn as UF1's chance) or {metric: value} (one line per metric)."""
    fig = new_figure(max(5, 0.9 * len(table) * len(metrics) / 2 + 2), 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(metrics)
    x = np.arange(len(table))
    for j, metric in enumerate(metrics):
        value = table[metric].to_numpy(dtype=float)
        err = np.vstack([value - table[f"{metric}_low"].to_numpy(dtype=float),
                         table[f"{metric}_high"].to_numpy(dtype=float) - value])
        ax.bar(x + j * width, value, width, yerr=np.clip(err, 0, None), capsize=3,
               label=METRIC_NAMES.get(metric, metric))
    if isinstance(chance, dict):  # one chance line per metric, in the metric's colour
        for j, metric in enumerate(metrics):
            if chance.get(metric) is not None:
                ax.axhline(chance[metric], color=f"C{j}", ls="--", lw=1,
                           label=f"chance ({METRIC_NAMES.get(metric, metric)}, uniform)")
    elif chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label="chance (UF1, uniform)")
    ax.set_xticks(x + 0.4 - width / 2, table[name_col].astype(str), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("pooled score")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# ------------------------------------------------------------------------ widget views
def clip_view(clip: dict, frame: int = 0) -> Figure:
    """Clip inspector view: the frame, rank scores (frame marked), target vs predicted dynamic
    image, and class probabilities with the true and predicted class."""
    fig = new_figure(11, 2.6)
    axes = fig.subplots(1, 5, width_ratios=[1, 2, 1, 1, 1.6])
    frame = int(np.clip(frame, 0, len(clip["frames"]) - 1))
    marks = key_frame_marks(clip["frame_numbers"], clip.get("onset"), clip.get("apex"), clip.get("offset"))
    image_panel(axes[0], clip["frames"][frame], f"frame #{int(clip['frame_numbers'][frame])} {marks.get(frame, '')}",
           vmin=0, vmax=255)
    _rank_axes(axes[1], clip["rank_scores"], frame, clip["frame_numbers"])
    axes[1].set_title("rank scores", fontsize=8)
    shown = _di(axes[2], clip["dynamic_image"], "target DI")
    if clip.get("pred_dynamic_image") is not None:
        _di(axes[3], clip["pred_dynamic_image"], "predicted DI")
    else:
        axes[3].axis("off")
    add_colorbar(fig, shown, axes[2:4], DI_UNITS)
    _class_bars(axes[4], clip)
    fig.suptitle(clip.get("clip_uid", ""), fontsize=9)
    return fig


def _class_bars(ax, clip: dict) -> None:
    """Class probabilities: the true class green, the predicted one outlined, with a legend."""
    classes, probs = clip["classes"], np.asarray(clip["probs"])
    colors = ["tab:green" if i == clip["label"] else "tab:gray" for i in range(len(classes))]
    edges = ["black" if i == clip["pred"] else "none" for i in range(len(classes))]
    ax.barh(range(len(classes)), probs, color=colors, edgecolor=edges, linewidth=1.5)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=7)
    ax.invert_yaxis()
    ax.set_title(f"true {classes[clip['label']]} / predicted {classes[clip['pred']]}", fontsize=8)
    ax.legend(handles=[Patch(color="tab:green", label="true class"), Patch(color="tab:gray", label="other"),
                       Patch(facecolor="white", edgecolor="black", label="predicted")],
              fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))


__all__ = ["DI_UNITS", "apex_position", "key_frame_marks", "class_counts", "clip_grid", "loss_curves",
           "dynamic_images", "rank_scores", "confusion", "per_subject_bars", "metric_bars", "clip_view"]
