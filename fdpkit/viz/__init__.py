"""Figures (static, matplotlib/seaborn) and widgets (ipywidgets) built on them.

    from fdpkit.viz import figures, widgets
    figures.confusion(matrix, labels)          # -> matplotlib Figure
    widgets.ClipInspector(records)             # interactive; figures.clip_view is its static twin
"""

from fdpkit.viz import figures

__all__ = ["figures", "widgets"]


def __getattr__(name):
    if name == "widgets":  # ipywidgets is imported only when the widgets are used
        import importlib

        return importlib.import_module("fdpkit.viz.widgets")
    raise AttributeError(name)
