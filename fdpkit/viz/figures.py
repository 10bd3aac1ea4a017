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

from fdpkit.loso.metrics import METRIC_NAMES

# What the colour of a map means, per attribution method (inputs are frames scaled to [-1, 1]).
MAP_UNITS = {
    "integrated_gradients": "|IG| per pixel (logit units)",
    "saliency": "|d logit / d pixel| (logit per input unit)",
    "occlusion": "|logit drop| per pixel (8x8 patch -> onset)",
    "attention": "share of rolled-out attention per pixel",
    "class_average": "share of the clip's |IG| per pixel",
}
DI_UNITS = "dynamic image (0-1, min-max scaled)"


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
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def _colorbar(fig, mappable, axes, label: str):
    bar = fig.colorbar(mappable, ax=axes, shrink=0.85, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return bar


def _di(ax, image, title: str = ""):
    """A dynamic image on the fixed 0..1 scale (the target's range), so panels compare."""
    return _image(ax, image, title, cmap="magma", vmin=0, vmax=1)


def map_kind(heat, rtol: float = 1e-3) -> str | None:
    """'all zero' when a map is 0 everywhere, 'constant' when its spread is below ``rtol`` of its
    largest magnitude (a map that says nothing about where), else None. Such maps are drawn as a
    note, never with their colours stretched."""
    heat = np.asarray(heat, dtype=float)
    high = float(np.abs(heat).max()) if heat.size else 0.0
    if high == 0:
        return "all zero"
    if float(heat.max() - heat.min()) <= rtol * high:
        return "constant"
    return None


def map_note(heat) -> str:
    """One sentence on a map that :func:`map_kind` flags ('' for a map with a spatial pattern)."""
    kind = map_kind(heat)
    if kind == "all zero":
        return "all zero: the method gives no attribution here"
    if kind == "constant":
        return f"constant ({float(np.mean(heat)):.3g} at every pixel): no region is preferred"
    return ""


def default_frame(record: dict, method: str) -> int:
    """The sampled frame with the most attribution for ``method`` (where the method is defined:
    Integrated Gradients is 0 on the onset frame, which is its own baseline)."""
    maps = np.abs(np.asarray(record["maps"][method], dtype=float))
    return int(maps.reshape(len(maps), -1).sum(axis=1).argmax())


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
    ax.legend(fontsize=7, title="class", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
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
            shown = _di(row[-1], clip["dynamic_image"], "dynamic image")
    if show_dynamic_image:
        _colorbar(fig, shown, axes[:, -1], DI_UNITS)
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
        shown = _di(axes[0, i], clip["dynamic_image"], f"target\n{clip.get('clip_uid', '')}")
        pred = clip.get("pred_dynamic_image")
        if pred is None:
            axes[1, i].axis("off")
        else:
            _di(axes[1, i], pred, "predicted")
    _colorbar(fig, shown, axes, DI_UNITS)
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
    ax.set_xlabel("held-out subject (one fold each)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def metric_bars(table: pd.DataFrame, metrics: Sequence[str] = ("uf1", "uar"), name_col: str = "name",
                title: str = "pooled metrics, 95% bootstrap-over-subjects intervals", chance=None) -> Figure:
    """Bars with interval whiskers from a table with columns <metric>, <metric>_low, <metric>_high;
    ``chance``: one value (drawn as UF1's chance) or {metric: value} (one line per metric)."""
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


def _scale(heat) -> tuple[float, float]:
    """(low, high) of a map's colour scale: 0 .. 99.5th percentile of |map| (never stretched)."""
    high = float(np.percentile(np.abs(np.asarray(heat, dtype=float)), 99.5))
    return 0.0, high if high > 0 else 1.0


def _overlay(ax, face, heat, alpha: float, title: str = "", scale=None):
    """The face in grey, the map in colour with opacity rising with its value (low = transparent).
    A map flagged by :func:`map_kind` is not coloured: the face is drawn with the note instead.
    Returns the ScalarMappable of the colour scale (for a colorbar)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    _image(ax, face, title, vmin=0, vmax=255)
    heat = np.abs(np.asarray(heat, dtype=float))
    low, high = scale if scale is not None else _scale(heat)
    mappable = ScalarMappable(Normalize(low, high), cmap="turbo")
    kind = map_kind(heat)
    if kind:
        ax.text(0.5, 0.5, kind, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
        return mappable
    level = np.clip((heat - low) / max(high - low, 1e-12), 0, 1)
    rgba = colormaps["turbo"](level)
    rgba[..., 3] = alpha * np.sqrt(level)
    ax.imshow(rgba, interpolation="bilinear")
    return mappable


def overlays(frames, maps, alpha: float = 0.6, title: str = "", numbers=None, smooth: float = 1.0,
             units: str = "|attribution|") -> Figure:
    """Each frame (T, H, W) with its map (T, H, W) overlaid on one colour scale for the clip
    (0 .. 99.5th percentile), with a colorbar in ``units``. A map that is constant or all zero
    (over the clip, or on one frame) is drawn as such with a note, never stretched into colours."""
    t = len(frames)
    raw = np.abs(np.asarray(maps, dtype=float))
    shown = display_map(raw, smooth)
    scale = _scale(shown)
    fig = _figure(1.2 * t + 1.2, 1.9)
    axes = np.atleast_1d(fig.subplots(1, t))
    clip_note = map_note(raw)
    mappable = None
    for i, ax in enumerate(axes):
        label = f"#{int(numbers[i])}" if numbers is not None else f"t={i}"
        mappable = _overlay(ax, frames[i], raw[i] if map_kind(raw[i]) else shown[i], alpha, label, scale)
    if clip_note:
        fig.suptitle(f"{title}: {clip_note}; drawn without colours" if title else clip_note, fontsize=8)
    else:
        _colorbar(fig, mappable, axes, units)
        if title:
            fig.suptitle(title, fontsize=8)
    return fig


def class_maps(maps: dict[str, np.ndarray], background=None, alpha: float = 0.7, smooth: float = 1.0,
               title: str = "class-average attribution maps", units: str = MAP_UNITS["class_average"]) -> Figure:
    """One panel per class on one shared colour scale, with a colorbar."""
    fig = _figure(1.8 * len(maps) + 1.2, 2.3)
    axes = np.atleast_1d(fig.subplots(1, len(maps)))
    shown = {name: display_map(image, smooth) for name, image in maps.items()}
    scale = _scale(np.stack(list(shown.values())))
    mappable = None
    for ax, (name, image) in zip(axes, shown.items()):
        if background is None:
            mappable = _image(ax, image, name, cmap="turbo", vmin=scale[0], vmax=scale[1])
        else:
            mappable = _overlay(ax, background, image, alpha, name, scale)
    _colorbar(fig, mappable, axes, units)
    fig.suptitle(title, fontsize=9)
    return fig


def rank_attribution(profiles: dict, title: str = "logit attributed to the rank scorer, per frame") -> Figure:
    """One panel per entry of `fdpkit.nb.notebook.rank_profiles` (each on its own y scale: they use
    different baselines), mean over clips with a min..max band; an all-zero profile says so."""
    names = [name for name, values in profiles.items() if len(values)]
    fig = _figure(3.6 * max(1, len(names)), 2.8)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names))))
    for ax, name in zip(axes, names):
        values = np.atleast_2d(np.asarray(profiles[name], dtype=float))
        x = np.arange(values.shape[-1])
        ax.plot(x, values.mean(axis=0), marker="o")
        if len(values) > 1:
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.15)
        ax.axhline(0, color="gray", lw=0.5)
        note = map_note(values)
        ax.set_title(name + (f"\n{note}" if note else ""), fontsize=8)
        ax.set_xlabel("sampled frame (onset -> offset)")
        ax.set_ylabel("attribution (logit units)")
    fig.suptitle(title, fontsize=9)
    return fig


def region_shares(table: pd.DataFrame, title: str = "attribution inside the moving region, within the face") -> Figure:
    """Bars per method: share of |attribution| inside the ground-truth region, with the region's
    share of the face as the chance line of each method (what a uniform map scores); columns
    ``*_face`` of `fdpkit.explain.attribution.region_table` (else the whole-frame columns)."""
    suffix = "_face" if "attribution_share_face" in table else ""
    fig = _figure(5.5, 3)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x, table["attribution_share" + suffix], 0.6, label="share of |attribution| in the region")
    ax.hlines(table["area_share" + suffix], x - 0.4, x + 0.4, colors="black", linestyles="--",
              label="chance: the region's share of the area")
    ax.set_xticks(x, table["method"], fontsize=8, rotation=15)
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
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
    shown = _di(axes[2], clip["dynamic_image"], "target DI")
    if clip.get("pred_dynamic_image") is not None:
        _di(axes[3], clip["pred_dynamic_image"], "predicted DI")
    else:
        axes[3].axis("off")
    _colorbar(fig, shown, axes[2:4], DI_UNITS)
    _class_bars(axes[4], clip)
    fig.suptitle(clip.get("clip_uid", ""), fontsize=9)
    return fig


def _class_bars(ax, clip: dict) -> None:
    """Class probabilities: the true class green, the predicted one outlined, with a legend."""
    from matplotlib.patches import Patch

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


def attribution_view(record: dict, method: str, frame: int | None = None, alpha: float = 0.5) -> Figure:
    """Attribution explorer view: the chosen frame (default: :func:`default_frame`) with the
    method's map overlaid, the clip's time-summed map, and the per-frame attribution share (frame
    marked); colorbars in the method's units; a frame or clip whose map is all zero or constant
    is drawn as such with a note."""
    raw = np.abs(np.asarray(record["maps"][method], dtype=float))
    frame = default_frame(record, method) if frame is None else int(np.clip(frame, 0, len(raw) - 1))
    numbers = record.get("frame_numbers")
    name = f"#{int(numbers[frame])}" if numbers is not None else f"t={frame}"
    fig = _figure(9, 2.8)
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.6])
    maps = display_map(raw)
    units = MAP_UNITS.get(method, "|attribution|")
    note = map_note(raw[frame])
    shown = _overlay(axes[0], record["frames"][frame], raw[frame] if note else maps[frame], alpha,
                     f"{method}, frame {name}" + (f"\n{map_kind(raw[frame])}" if note else ""), _scale(maps))
    _colorbar(fig, shown, axes[0], units)
    summed = _overlay(axes[1], record["frames"][0], maps.sum(axis=0), alpha, "all frames (sum)")
    _colorbar(fig, summed, axes[1], units)
    mass = raw.sum(axis=(-2, -1))
    mass = mass / mass.sum() if mass.sum() > 0 else mass
    axes[2].bar(range(len(mass)), mass, color=["tab:red" if i == frame else "tab:blue" for i in range(len(mass))])
    if numbers is not None:
        axes[2].set_xticks(range(len(mass)), [str(int(n)) for n in numbers], fontsize=6)
    axes[2].set_xlabel("sampled frame (original number)")
    axes[2].set_ylabel("share", fontsize=7)
    axes[2].set_title("share of |attribution| per frame", fontsize=8)
    classes = record.get("classes")
    if classes is not None:
        fig.suptitle(f"{record.get('clip_uid', '')}: true {classes[record['label']]}, "
                     f"predicted {classes[record['pred']]}", fontsize=9)
    return fig
