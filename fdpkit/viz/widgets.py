"""Interactive views (ipywidgets) built on the static figures of `fdpkit.viz.figures` and
`fdpkit.viz.attribution_figures`.

Widget state does not survive papermill, so notebooks run headless show the static counterpart
(`figures.clip_view`, `attribution_figures.attribution_view`); these classes redraw the same figures when a
control changes. Each keeps the figure it drew last in ``.figure`` and its current selection in
``.state`` so that tests can drive it: ``inspector.frame.value = 3`` -> ``inspector.state["frame"]``.

    inspector = ClipInspector(records)        # records: fdpkit.viz.records clip records
    inspector                                  # shows the controls and the view in Jupyter
    explorer = AttributionExplorer(records)    # records with "maps": {method: (T, H, W)}

The frame slider is labelled with the original frame numbers (``#19``, as the panel titles); its
value is the sampled position. The inspector opens on the frame nearest the apex, the explorer on
the frame where the method attributes most.

Notebooks call ``interactive(ClipInspector, records)``: the widget in a live Jupyter session, a
short note when run headless (papermill/nbclient, nbval, FDPKIT_SMOKE or FDPKIT_HEADLESS set),
where widget state would not survive and widget messages can stall the runner (jupyter/nbclient
issue 312: execution sometimes blocks on a cell that displays a widget).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import ipywidgets as w
from IPython import get_ipython
from IPython.display import display

from fdpkit.viz import attribution_figures, figures


def headless() -> bool:
    """True when no person is looking: FDPKIT_HEADLESS / FDPKIT_SMOKE set, or a kernel started by
    nbclient (papermill, nbconvert), which keeps IPython's history in memory."""
    for name in ("FDPKIT_HEADLESS", "FDPKIT_SMOKE"):
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no"):
            return True
    shell = get_ipython()
    return shell is None or str(getattr(shell.history_manager, "hist_file", "")) == ":memory:"


class _Note:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def interactive(view, *args, **kwargs):
    """``view(*args, **kwargs)`` (a widget class) in a live session; a note when headless."""
    if headless():
        return _Note(f"{view.__name__}: interactive view, shown when the notebook is opened in "
                     "JupyterLab (run headless here; the static figure above shows the same view)")
    return view(*args, **kwargs)


class _View:
    """Controls + an Output holding the current figure; `.widget` is the whole box."""

    def __init__(self, controls: list):
        self.output = w.Output()
        self.controls = controls
        self.widget = w.VBox([w.HBox(controls), self.output])
        self.figure = None
        self.state: dict = {}
        for control in controls:
            control.observe(self._changed, names="value")

    _quiet = False  # True while a view updates its own controls (one redraw, not one per control)
    clip = None  # the clip Dropdown of a view that has one (with ``frame``, the frame slider, and ``_get``)

    def _changed(self, change=None) -> None:
        """Redraw once per change; a new clip first relabels the frame slider for that clip and moves it
        to the view's opening frame (`_opening_frame`)."""
        if self._quiet:
            return
        if self.clip is not None and change is not None and change.get("owner") is self.clip:
            record = self._get(self.clip.value)
            _set_frames(self, self.frame, record, self._opening_frame(record))
        self.redraw()

    def _opening_frame(self, record: dict) -> int:
        return 0

    def draw(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def redraw(self):
        self.figure = self.draw()
        self.output.clear_output(wait=True)
        with self.output:
            display(self.figure)
        return self.figure

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = (f"{type(self).__name__}: interactive view (open the notebook in JupyterLab); "
                                "the static figure above shows the same view")
        return bundle


def frame_slider(record: dict, value: int = 0):
    """A slider over the sampled positions labelled with the original frame numbers (as the
    panel titles: ``#19``); its ``.value`` is the position 0..T-1."""
    return w.SelectionSlider(options=frame_options(record), value=value, description="frame",
                             continuous_update=False)


def frame_options(record: dict) -> list[tuple[str, int]]:
    numbers = record.get("frame_numbers")
    n = len(record["frames"])
    return [(f"#{int(numbers[i])}" if numbers is not None else str(i), i) for i in range(n)]


def _set_frames(view: "_View", slider, record: dict, value: int) -> None:
    """Relabel ``slider`` for ``record`` and move it to ``value`` without intermediate redraws."""
    view._quiet = True
    try:
        slider.options = frame_options(record)
        slider.value = int(min(value, len(record["frames"]) - 1))
    finally:
        view._quiet = False


class ClipInspector(_View):
    """Pick a clip and a frame: rank scores, target vs predicted dynamic image, class probabilities.

    ``records``: a list of clip records, or ``(n, get)`` with ``get(i) -> record`` computed on demand
    (and cached)."""

    def __init__(self, records: Sequence[dict] | tuple[int, Callable[[int], dict]], labels=None):
        self._get, n = _source(records)
        labels = labels or [self._label(i) for i in range(n)]
        self.clip = w.Dropdown(options=[(label, i) for i, label in enumerate(labels)], value=0,
                               description="clip")
        first = self._get(0)
        self.frame = frame_slider(first, figures.apex_position(first))
        super().__init__([self.clip, self.frame])
        self.redraw()

    def _label(self, i: int) -> str:
        return str(i)

    def _opening_frame(self, record: dict) -> int:
        return figures.apex_position(record)

    def draw(self):
        record = self._get(self.clip.value)
        self.state = {"clip": self.clip.value, "clip_uid": record.get("clip_uid"), "frame": self.frame.value}
        return figures.clip_view(record, self.frame.value)


class AttributionExplorer(_View):
    """Pick a clip and a method, a frame and the overlay strength."""

    def __init__(self, records: Sequence[dict] | tuple[int, Callable[[int], dict]], methods=None, labels=None):
        self._get, n = _source(records)
        first = self._get(0)
        methods = list(methods or first["maps"])
        labels = labels or [str(i) for i in range(n)]
        self.clip = w.Dropdown(options=[(label, i) for i, label in enumerate(labels)], value=0,
                               description="clip")
        self.method = w.Dropdown(options=methods, value=methods[0], description="method")
        self.frame = frame_slider(first, attribution_figures.default_frame(first, methods[0]))
        self.alpha = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="overlay")
        super().__init__([self.clip, self.method, self.frame, self.alpha])
        self.redraw()

    def _opening_frame(self, record: dict) -> int:
        """The frame where the method attributes most (never IG's all-zero baseline frame)."""
        return attribution_figures.default_frame(record, self.method.value)

    def draw(self):
        record = self._get(self.clip.value)
        self.state = {"clip": self.clip.value, "clip_uid": record.get("clip_uid"), "method": self.method.value,
                      "frame": self.frame.value, "alpha": self.alpha.value}
        return attribution_figures.attribution_view(record, self.method.value, self.frame.value, self.alpha.value)


def _source(records):
    """-> (get(i), n) with memoisation for on-demand records."""
    if isinstance(records, tuple) and len(records) == 2 and callable(records[1]):
        n, compute = records
        cache: dict[int, dict] = {}

        def get(i: int) -> dict:
            if i not in cache:
                cache[i] = compute(i)
            return cache[i]

        return get, int(n)
    records = list(records)
    if not records:
        raise ValueError("no clips to show")
    return records.__getitem__, len(records)
