"""Static figures of what the model looks at (`fdpkit.explain`): attribution maps over the frames,
class-average maps, per-frame attribution shares, the rank scorer's attributions, the share inside
a ground-truth region, and the attribution explorer's view. Every function returns a matplotlib
Figure (no pyplot state). Maps are drawn on a colour scale that is never stretched: a map that is
all zero or constant is drawn as such, with a note (`map_kind`).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from fdpkit.viz.panels import add_colorbar, image_panel, new_figure

# What the colour of a map means, per attribution method (inputs are frames scaled to [-1, 1]).
MAP_UNITS = {
    "integrated_gradients": "|IG| per pixel (logit units)",
    "saliency": "|d logit / d pixel| (logit per input unit)",
    "occlusion": "|logit drop| per pixel (8x8 patch -> onset)",
    "attention": "share of rolled-out attention per pixel",
    "class_average": "share of the clip's |IG| per pixel",
}


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


# ------------------------------------------------------------------------ profiles and maps
def time_profiles(profiles: dict, ylabel: str = "share", title: str = "", uniform: bool = False) -> Figure:
    """Per name, the mean over clips (line) and min..max (band) of a per-frame profile (N, T)."""
    fig = new_figure(5.5, 3)
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


def frame_mass_profiles(mass: dict, title: str = "share of |attribution| per frame") -> Figure:
    """Per method, the per-frame attribution shares (N, T) of the clips (`fdpkit.explain.attribution.frame_mass`)."""
    return time_profiles(mass, "share", title, uniform=True)


def display_map(heat, smooth: float = 1.0) -> np.ndarray:
    """A map prepared for display: Gaussian-smoothed (sigma in pixels; pixel attributions are
    speckled). Only for drawing: every number in the notebooks uses the raw maps."""
    heat = np.asarray(heat, dtype=np.float64)
    if smooth:
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
    image_panel(ax, face, title, vmin=0, vmax=255)
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
    fig = new_figure(1.2 * t + 1.2, 1.9)
    axes = np.atleast_1d(fig.subplots(1, t))
    clip_note = map_note(raw)
    mappable = None
    for i, ax in enumerate(axes):
        label = f"#{int(numbers[i])}" if numbers is not None else f"t={i}"
        mappable = _overlay(ax, frames[i], raw[i] if map_kind(raw[i]) else shown[i], alpha, label, scale)
    if clip_note:
        fig.suptitle(f"{title}: {clip_note}; drawn without colours" if title else clip_note, fontsize=8)
    else:
        add_colorbar(fig, mappable, axes, units)
        if title:
            fig.suptitle(title, fontsize=8)
    return fig


def class_maps(maps: dict[str, np.ndarray], background=None, alpha: float = 0.7, smooth: float = 1.0,
               title: str = "class-average attribution maps", units: str = MAP_UNITS["class_average"]) -> Figure:
    """One panel per class on one shared colour scale, with a colorbar."""
    fig = new_figure(1.8 * len(maps) + 1.2, 2.3)
    axes = np.atleast_1d(fig.subplots(1, len(maps)))
    shown = {name: display_map(image, smooth) for name, image in maps.items()}
    scale = _scale(np.stack(list(shown.values())))
    mappable = None
    for ax, (name, image) in zip(axes, shown.items()):
        if background is None:
            mappable = image_panel(ax, image, name, cmap="turbo", vmin=scale[0], vmax=scale[1])
        else:
            mappable = _overlay(ax, background, image, alpha, name, scale)
    add_colorbar(fig, mappable, axes, units)
    fig.suptitle(title, fontsize=9)
    return fig


def rank_attribution_profiles(profiles: dict, title: str = "logit attributed to the rank scorer, per frame") -> Figure:
    """One panel per entry of `fdpkit.viz.records.rank_profiles` (each on its own y scale: they use
    different baselines), mean over clips with a min..max band; an all-zero profile says so."""
    names = [name for name, values in profiles.items() if len(values)]
    fig = new_figure(3.6 * max(1, len(names)), 2.8)
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
    ``*_face`` of `fdpkit.explain.regions.region_score_table` (else the whole-frame columns)."""
    suffix = "_face" if "attribution_share_face" in table else ""
    fig = new_figure(5.5, 3)
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


def attribution_view(record: dict, method: str, frame: int | None = None, alpha: float = 0.5) -> Figure:
    """Attribution explorer view: the chosen frame (default: :func:`default_frame`) with the
    method's map overlaid, the clip's time-summed map, and the per-frame attribution share (frame
    marked); colorbars in the method's units; a frame or clip whose map is all zero or constant
    is drawn as such with a note."""
    raw = np.abs(np.asarray(record["maps"][method], dtype=float))
    frame = default_frame(record, method) if frame is None else int(np.clip(frame, 0, len(raw) - 1))
    numbers = record.get("frame_numbers")
    name = f"#{int(numbers[frame])}" if numbers is not None else f"t={frame}"
    fig = new_figure(9, 2.8)
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.6])
    maps = display_map(raw)
    units = MAP_UNITS.get(method, "|attribution|")
    note = map_note(raw[frame])
    shown = _overlay(axes[0], record["frames"][frame], raw[frame] if note else maps[frame], alpha,
                     f"{method}, frame {name}" + (f"\n{map_kind(raw[frame])}" if note else ""), _scale(maps))
    add_colorbar(fig, shown, axes[0], units)
    summed = _overlay(axes[1], record["frames"][0], maps.sum(axis=0), alpha, "all frames (sum)")
    add_colorbar(fig, summed, axes[1], units)
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


__all__ = ["MAP_UNITS", "map_kind", "map_note", "default_frame", "time_profiles", "frame_mass_profiles",
           "display_map", "overlays", "class_maps", "rank_attribution_profiles", "region_shares", "attribution_view"]
