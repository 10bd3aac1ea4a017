"""Figures (static, matplotlib/seaborn) and widgets (ipywidgets) built on them.

    from fdpkit.viz import attribution_figures, figures, widgets
    figures.confusion(matrix, labels)              # -> matplotlib Figure
    attribution_figures.overlays(frames, maps)     # what the model looks at
    widgets.ClipInspector(records)                 # interactive; figures.clip_view is its static twin

`records` reads what they draw from the work folder; `panels` holds the drawing primitives.
"""
