"""Static figures: every function returns a matplotlib Figure (no pyplot state, nothing shown).

Jupyter displays a returned Figure once; headless runs (papermill, nbconvert) keep it in the
output. The widgets in `fdpkit.viz.widgets` redraw these same figures when a control changes.

Clip records (`clip_view`, `clip_grid`) are dicts with: clip_uid, frames uint8 (T, H, W),
frame_numbers (T,), and optionally onset/apex/offset, dynamic_image (target, [0, 1]),
pred_dynamic_image, rank_scores (K, T), probs (C,), classes, label, pred (indices).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fdpkit.metrics import METRIC_NAMES



def _register_ipython() -> None:
    """In a Jupyter kernel, show returned Figures as PNG even when pyplot was never imported."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and Figure not in shell.display_formatter.formatters["image/png"].type_printers:
        select_figure_formats(shell, {"png"}, bbox_inches="tight", dpi=90)


_register_ipython()


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _image(ax, image, title: str = "", cmap: str = "gray", vmin=None, vmax=None):
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


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
    """Stacked bars from a subject x class table (`fdpkit.notebook.manifest_tables`)."""
    table = per_subject.drop(columns=["total"], errors="ignore")
    fig = _figure(max(6, 0.35 * len(table) + 2), 3.2)
    ax = fig.add_subplot()
    bottom = np.zeros(len(table))
    for name in table.columns:
        ax.bar(range(len(table)), table[name].to_numpy(), bottom=bottom, label=str(name))
        bottom += table[name].to_numpy()
    ax.set_xticks(range(len(table)), [str(s).split("/")[-1] for s in table.index], rotation=90, fontsize=7)
    ax.set_xlabel("subject")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=min(5, len(table.columns)))
    return fig


def clip_grid(clips: Sequence[dict], show_dynamic_image: bool = True) -> Figure:
    """One row per clip: its T aligned frames (onset/apex/offset marked) and its dynamic image."""
    t = max(len(c["frames"]) for c in clips)
    cols = t + int(show_dynamic_image)
    fig = _figure(1.1 * cols, 1.3 * len(clips))
    axes = np.atleast_2d(fig.subplots(len(clips), cols, squeeze=False))
    for row, clip in zip(axes, clips):
        marks = key_frame_marks(clip["frame_numbers"], clip.get("onset"), clip.get("apex"), clip.get("offset"))
        for i, ax in enumerate(row[:t]):
            if i >= len(clip["frames"]):
                ax.axis("off")
                continue
            label = f"#{int(clip['frame_numbers'][i])}" + (f" {marks[i]}" if i in marks else "")
            _image(ax, clip["frames"][i], label, vmin=0, vmax=255)
            if i in marks:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
        row[0].set_ylabel(f"{clip.get('clip_uid', '')}\n{clip.get('label_name', '')}", fontsize=7)
        if show_dynamic_image:
            _image(row[-1], clip["dynamic_image"], "dynamic image", cmap="magma")
    return fig


# ------------------------------------------------------------------------ training
def loss_curves(log: pd.DataFrame, title: str = "training loss") -> Figure:
    """Total loss and its unweighted parts (CE, dynamic-image MSE, rank) over steps."""
    fig = _figure(7, 3)
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
    fig = _figure(1.6 * len(clips), 3.4)
    axes = fig.subplots(2, len(clips), squeeze=False)
    for i, clip in enumerate(clips):
        _image(axes[0, i], clip["dynamic_image"], f"target\n{clip.get('clip_uid', '')}", cmap="magma")
        pred = clip.get("pred_dynamic_image")
        if pred is None:
            axes[1, i].axis("off")
        else:
            _image(axes[1, i], pred, "predicted", cmap="magma")
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
    fig = _figure(3 * len(clips), 2.6)
    axes = np.atleast_1d(fig.subplots(1, len(clips)))
    for ax, clip in zip(axes, clips):
        _rank_axes(ax, clip["rank_scores"], numbers=clip.get("frame_numbers"))
        ax.set_title(clip.get("clip_uid", ""), fontsize=8)
    return fig


# ------------------------------------------------------------------------ results
def confusion(matrix, labels, normalize: bool = True, title: str = "pooled confusion matrix") -> Figure:
    """Seaborn heatmap, rows = true class; ``normalize``: each row as shares (counts annotated)."""
    import seaborn as sns

    counts = np.asarray(matrix, dtype=float)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    annot = np.array([[f"{int(c)}" for c in row] for row in counts])
    fig = _figure(1.0 * len(labels) + 2, 0.8 * len(labels) + 1.5)
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
    fig = _figure(max(6, 0.4 * len(table) + 2), 3)
    ax = fig.add_subplot()
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        ax.bar(np.arange(len(table)) + j * width, table[metric], width, label=METRIC_NAMES.get(metric, metric))
    ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2, names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def metric_bars(table: pd.DataFrame, metrics: Sequence[str] = ("uf1", "uar"), name_col: str = "name",
                title: str = "pooled metrics, 95% bootstrap-over-subjects intervals", chance=None) -> Figure:
    """Bars with interval whiskers from a table with columns <metric>, <metric>_low, <metric>_high."""
    fig = _figure(max(5, 0.9 * len(table) * len(metrics) / 2 + 2), 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(metrics)
    x = np.arange(len(table))
    for j, metric in enumerate(metrics):
        value = table[metric].to_numpy(dtype=float)
        err = np.vstack([value - table[f"{metric}_low"].to_numpy(dtype=float),
                         table[f"{metric}_high"].to_numpy(dtype=float) - value])
        ax.bar(x + j * width, value, width, yerr=np.clip(err, 0, None), capsize=3,
               label=METRIC_NAMES.get(metric, metric))
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label="chance (UF1, uniform)")
    ax.set_xticks(x + 0.4 - width / 2, table[name_col].astype(str), rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


# ------------------------------------------------------------------------ attribution
def time_profiles(profiles: dict, ylabel: str = "share", title: str = "", uniform: bool = False) -> Figure:
    """Per name, the mean over clips (line) and min..max (band) of a per-frame profile (N, T)."""
    fig = _figure(5.5, 3)
    ax = fig.add_subplot()
    t = 1
    for name, values in profiles.items():
        if len(values) == 0:
            continue
        values = np.atleast_2d(np.asarray(values, dtype=float))
        t = values.shape[-1]
        x = np.arange(t)
        ax.plot(x, values.mean(axis=0), marker="o", label=name)
        if len(values) > 1:
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.15)
    if uniform:
        ax.axhline(1 / t, color="gray", ls="--", lw=1, label="uniform")
    else:
        ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("sampled frame (onset -> offset)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def frame_mass(mass: dict, title: str = "share of |attribution| per frame") -> Figure:
    """Per method, the per-frame attribution shares (N, T) of the clips (`attribution.frame_mass`)."""
    return time_profiles(mass, "share", title, uniform=True)


def display_map(heat, smooth: float = 1.0) -> np.ndarray:
    """A map prepared for display: Gaussian-smoothed (sigma in pixels; pixel attributions are
    speckled). Only for drawing: every number in the notebooks uses the raw maps."""
    heat = np.asarray(heat, dtype=np.float64)
    if smooth:
        import cv2

        flat = heat.reshape(-1, *heat.shape[-2:])
        heat = np.stack([cv2.GaussianBlur(m, (0, 0), smooth) for m in flat]).reshape(heat.shape)
    return heat


def _scale(heat, stretch: bool = False) -> tuple[float, float]:
    """(low, high) of the colour scale: 0 .. 99.5th percentile, or min .. max with ``stretch``."""
    heat = np.asarray(heat, dtype=float)
    if stretch:
        return float(heat.min()), float(heat.max())
    return 0.0, float(np.percentile(heat, 99.5))


def _overlay(ax, face, heat, alpha: float, title: str = "", scale=None):
    """The face in grey, the map in colour with opacity rising with its value (low = transparent)."""
    from matplotlib import colormaps

    _image(ax, face, title, vmin=0, vmax=255)
    heat = np.asarray(heat, dtype=float)
    low, high = scale if scale is not None else _scale(heat)
    level = np.clip((heat - low) / max(high - low, 1e-12), 0, 1)
    rgba = colormaps["turbo"](level)
    rgba[..., 3] = alpha * np.sqrt(level)
    ax.imshow(rgba, interpolation="bilinear")


def overlays(frames, maps, alpha: float = 0.6, title: str = "", numbers=None, smooth: float = 1.0,
             stretch: bool = False) -> Figure:
    """Each frame (T, H, W) with its map (T, H, W) overlaid, one colour scale for the clip
    (0 .. 99.5th percentile; ``stretch``: min .. max, for nearly uniform maps such as attention)."""
    t = len(frames)
    maps = display_map(maps, smooth)
    scale = _scale(maps, stretch)
    fig = _figure(1.2 * t, 1.6)
    axes = np.atleast_1d(fig.subplots(1, t))
    for i, ax in enumerate(axes):
        label = f"#{int(numbers[i])}" if numbers is not None else f"t={i}"
        _overlay(ax, frames[i], maps[i], alpha, label, scale)
    if title:
        mean = float(np.mean(maps)) or 1.0
        note = f" (colour stretched: {scale[0] / mean:.4f} to {scale[1] / mean:.4f} x the mean)" if stretch else ""
        fig.suptitle(title + note, fontsize=8)
    return fig


def class_maps(maps: dict[str, np.ndarray], background=None, alpha: float = 0.7, smooth: float = 1.0,
               title: str = "class-average attribution maps") -> Figure:
    fig = _figure(1.8 * len(maps), 2.2)
    axes = np.atleast_1d(fig.subplots(1, len(maps)))
    for ax, (name, image) in zip(axes, maps.items()):
        if background is None:
            _image(ax, image, name, cmap="jet")
        else:
            _overlay(ax, background, display_map(image, smooth), alpha, name)
    fig.suptitle(title, fontsize=9)
    return fig


def region_shares(table: pd.DataFrame, title: str = "attribution inside the moving region, within the face") -> Figure:
    """Bars per method: share of |attribution| inside the ground-truth region vs the share of the
    face the region covers (columns ``*_face`` of `fdpkit.attribution.region_table`, else the
    whole-frame columns)."""
    suffix = "_face" if "attribution_share_face" in table else ""
    fig = _figure(5, 3)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["attribution_share" + suffix], 0.4, label="share of |attribution|")
    ax.bar(x + 0.2, table["area_share" + suffix], 0.4, label="share of area (uniform map)")
    ax.set_xticks(x, table["method"], fontsize=8, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


# ------------------------------------------------------------------------ widget views
def clip_view(clip: dict, frame: int = 0) -> Figure:
    """Clip inspector view: the frame, rank scores (frame marked), target vs predicted dynamic
    image, and class probabilities with the true and predicted class."""
    fig = _figure(11, 2.6)
    axes = fig.subplots(1, 5, width_ratios=[1, 2, 1, 1, 1.6])
    frame = int(np.clip(frame, 0, len(clip["frames"]) - 1))
    marks = key_frame_marks(clip["frame_numbers"], clip.get("onset"), clip.get("apex"), clip.get("offset"))
    _image(axes[0], clip["frames"][frame], f"frame #{int(clip['frame_numbers'][frame])} {marks.get(frame, '')}",
           vmin=0, vmax=255)
    _rank_axes(axes[1], clip["rank_scores"], frame, clip["frame_numbers"])
    axes[1].set_title("rank scores", fontsize=8)
    _image(axes[2], clip["dynamic_image"], "target DI", cmap="magma")
    if clip.get("pred_dynamic_image") is not None:
        _image(axes[3], clip["pred_dynamic_image"], "predicted DI", cmap="magma")
    else:
        axes[3].axis("off")
    classes, probs = clip["classes"], np.asarray(clip["probs"])
    colors = ["tab:green" if i == clip["label"] else "tab:gray" for i in range(len(classes))]
    axes[4].barh(range(len(classes)), probs, color=colors)
    axes[4].set_yticks(range(len(classes)), classes, fontsize=7)
    axes[4].set_xlim(0, 1)
    axes[4].invert_yaxis()
    axes[4].set_title(f"true {classes[clip['label']]} / predicted {classes[clip['pred']]}", fontsize=8)
    fig.suptitle(clip.get("clip_uid", ""), fontsize=9)
    return fig


def attribution_view(record: dict, method: str, frame: int = 0, alpha: float = 0.5) -> Figure:
    """Attribution explorer view: the chosen frame with the method's map overlaid, the clip's mean
    map, and the per-frame attribution share (frame marked)."""
    raw = np.asarray(record["maps"][method])
    frame = int(np.clip(frame, 0, len(raw) - 1))
    fig = _figure(8, 2.6)
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.6])
    maps = display_map(raw)
    _overlay(axes[0], record["frames"][frame], maps[frame], alpha, f"{method}, frame {frame}", _scale(maps))
    _overlay(axes[1], record["frames"][0], maps.sum(axis=0), alpha, "all frames")
    mass = raw.sum(axis=(-2, -1))
    mass = mass / mass.sum() if mass.sum() > 0 else mass
    axes[2].bar(range(len(mass)), mass, color=["tab:red" if i == frame else "tab:blue" for i in range(len(mass))])
    axes[2].set_xlabel("sampled frame")
    axes[2].set_title("share of |attribution|", fontsize=8)
    classes = record.get("classes")
    if classes is not None:
        fig.suptitle(f"{record.get('clip_uid', '')}: true {classes[record['label']]}, "
                     f"predicted {classes[record['pred']]}", fontsize=9)
    return fig
