"""Drawing primitives shared by `fdpkit.viz.figures` and `fdpkit.viz.attribution_figures`: a Figure
without pyplot state, an image panel without ticks, a labelled colorbar. Importing this module makes a
Jupyter kernel show returned Figures as PNG (even when pyplot was never imported).
"""

from __future__ import annotations

from matplotlib.figure import Figure


def register_ipython() -> None:
    """In a Jupyter kernel, show returned Figures as PNG even when pyplot was never imported."""
    try:  # IPython only matters inside a kernel; a plain script has nothing to register
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and Figure not in shell.display_formatter.formatters["image/png"].type_printers:
        select_figure_formats(shell, {"png"}, bbox_inches="tight", dpi=90)


register_ipython()


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def image_panel(ax, image, title: str = "", cmap: str = "gray", vmin=None, vmax=None):
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def add_colorbar(fig, mappable, axes, label: str):
    bar = fig.colorbar(mappable, ax=axes, shrink=0.85, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return bar


__all__ = ["register_ipython", "new_figure", "image_panel", "add_colorbar"]
