"""Static figures and the widgets built on them (driven programmatically)."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from fdpkit.viz import attribution_figures, figures

CLASSES = ["happiness", "disgust", "others"]


def record(seed: int, t: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "clip_uid": f"synthme/0{seed}/EP0{seed}", "frames": rng.integers(0, 256, (t, 32, 32), dtype=np.uint8),
        "frame_numbers": np.arange(3, 3 + 4 * t, 4), "onset": 3, "apex": 15, "offset": 3 + 4 * (t - 1),
        "dynamic_image": rng.random((32, 32)), "pred_dynamic_image": rng.random((8, 8)),
        "rank_scores": rng.normal(size=(2, t)), "probs": np.array([0.2, 0.5, 0.3]), "classes": CLASSES,
        "label": seed % 3, "pred": 1, "label_name": CLASSES[seed % 3],
        "maps": {"integrated_gradients": rng.random((t, 32, 32)), "saliency": rng.random((t, 32, 32)) ** 4},
    }


def test_key_frame_marks():
    marks = figures.key_frame_marks([3, 7, 11, 15, 19], onset=3, apex=12, offset=19)
    assert marks == {0: "onset", 2: "apex", 4: "offset"}
    assert figures.key_frame_marks([5, 5, 5], onset=5, apex=5, offset=5) == {0: "onset/apex/offset"}


def test_static_figures_build():
    clips = [record(1), record(2)]
    per_subject = pd.DataFrame({"happiness": [1, 2], "disgust": [0, 3], "total": [1, 5]}, index=["s/01", "s/02"])
    log = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "ce": [1.6, 1.4, 1.2],
                        "di": [0.02, 0.01, 0.005], "rank": [0.0, 0.0, 0.0]})
    table = pd.DataFrame({"name": ["fdp", "apex-frame"], "uf1": [0.5, 0.3], "uf1_low": [0.4, 0.2],
                          "uf1_high": [0.6, 0.45], "uar": [0.5, 0.3], "uar_low": [0.4, 0.2], "uar_high": [0.6, 0.4]})
    results = pd.DataFrame({"subject": ["01", "02"], "uf1": [0.4, 0.6], "accuracy": [0.5, 0.7]})
    built = [
        figures.class_counts(per_subject), figures.clip_grid(clips), figures.loss_curves(log),
        figures.dynamic_images(clips), figures.rank_scores(clips),
        figures.confusion([[3, 1, 0], [0, 2, 2], [1, 0, 5]], CLASSES), figures.per_subject_bars(results),
        figures.metric_bars(table, chance=0.2),
        attribution_figures.frame_mass_profiles({"ig": [np.full(8, 1 / 8), np.linspace(0, 0.25, 8)]}),
        attribution_figures.overlays(clips[0]["frames"], clips[0]["maps"]["saliency"], numbers=clips[0]["frame_numbers"]),
        attribution_figures.class_maps({"a": np.ones((32, 32)), "b": np.eye(32)}, background=clips[0]["frames"][0]),
        attribution_figures.region_shares(pd.DataFrame({"method": ["ig"], "attribution_share": [0.4], "area_share": [0.1]})),
        figures.clip_view(clips[0], 3), attribution_figures.attribution_view(clips[0], "saliency", 2, 0.7),
    ]
    for fig in built:
        assert isinstance(fig, Figure) and fig.axes
        fig.canvas.draw()  # renders without error


def test_clip_view_marks_the_frame():
    fig = figures.clip_view(record(1), frame=5)
    line = [l for l in fig.axes[1].lines if l.get_color() == "red"][0]
    assert line.get_xdata()[0] == 5


def _red_line_x(fig):
    return [l for l in fig.axes[1].lines if l.get_color() == "red"][0].get_xdata()[0]


def test_clip_inspector_reacts_to_controls():
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    clips = [record(1), record(2, t=6)]
    inspector = widgets.ClipInspector(clips, labels=[c["clip_uid"] for c in clips])
    first = inspector.figure
    # opens on the sampled frame nearest the apex (15 -> position 3); slider labels = frame numbers
    assert inspector.state == {"clip": 0, "clip_uid": clips[0]["clip_uid"], "frame": 3}
    assert inspector.frame.label == "#15" and inspector.figure.axes[0].get_title().startswith("frame #15")
    inspector.frame.value = 4
    assert inspector.figure is not first and inspector.state["frame"] == 4
    assert _red_line_x(inspector.figure) == 4
    inspector.clip.value = 1
    assert inspector.state["clip_uid"] == clips[1]["clip_uid"]
    assert len(inspector.frame.options) == 6  # the second clip has 6 frames
    assert [label for label, _ in inspector.frame.options] == [f"#{n}" for n in clips[1]["frame_numbers"]]
    bars = [ax for ax in inspector.figure.axes if ax.get_title().startswith("true ")][0]
    assert bars.get_title().startswith("true others")
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["true class", "other", "predicted"]
    bundle = inspector._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "interactive" in bundle["text/plain"]


def test_clip_inspector_computes_records_on_demand():
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    calls = []

    def get(i):
        calls.append(i)
        return record(i + 1)

    inspector = widgets.ClipInspector((3, get))
    inspector.clip.value = 2
    inspector.frame.value = 1
    assert sorted(set(calls)) == [0, 2] and calls.count(2) == 1  # cached after the first call


def _overlay_alpha(fig):
    return fig.axes[0].images[1].get_array()[..., 3].max()


def test_attribution_explorer_reacts_to_controls():
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    clips = [record(1), record(2)]
    explorer = widgets.AttributionExplorer(clips, ["integrated_gradients", "saliency"])
    assert explorer.state["method"] == "integrated_gradients"
    before = explorer.figure.axes[0].images[1].get_array().copy()
    explorer.method.value = "saliency"
    after = explorer.figure.axes[0].images[1].get_array()
    assert explorer.state["method"] == "saliency" and not np.allclose(before, after)
    explorer.alpha.value = 1.0
    strong = _overlay_alpha(explorer.figure)
    explorer.alpha.value = 0.2
    assert _overlay_alpha(explorer.figure) == pytest.approx(0.2 * strong)
    explorer.frame.value = 6
    bars = explorer.figure.axes[2].patches
    assert bars[6].get_facecolor() != bars[0].get_facecolor()  # the chosen frame is highlighted
    explorer.clip.value = 1
    assert explorer.state["clip_uid"] == clips[1]["clip_uid"]


def test_interactive_is_a_note_when_headless(monkeypatch):
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    monkeypatch.setenv("FDPKIT_HEADLESS", "1")
    assert widgets.headless()
    note = widgets.interactive(widgets.ClipInspector, [record(1)])
    assert "ClipInspector" in repr(note) and "JupyterLab" in repr(note)


def _colorbar_labels(fig):
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.mark.parametrize("heat, word", [(np.full((8, 32, 32), 1 / 1024), "constant"),
                                        (np.zeros((8, 32, 32)), "all zero")])
def test_flat_maps_are_drawn_as_such_not_stretched(heat, word):
    frames = record(1)["frames"]
    fig = attribution_figures.overlays(frames, heat, title="attention roll-out", units=attribution_figures.MAP_UNITS["attention"])
    fig.canvas.draw()
    assert word in fig._suptitle.get_text()
    assert all(len(ax.images) == 1 for ax in fig.axes)  # the face only: no colour layer
    assert attribution_figures.map_kind(heat) == word and attribution_figures.map_kind(record(1)["maps"]["saliency"]) is None


def test_overlays_and_dynamic_images_have_colorbars_with_units():
    clip = record(2)
    maps = clip["maps"]["integrated_gradients"].copy()
    maps[0] = 0  # IG's baseline frame
    fig = attribution_figures.overlays(clip["frames"], maps, units=attribution_figures.MAP_UNITS["integrated_gradients"])
    assert _colorbar_labels(fig) == [attribution_figures.MAP_UNITS["integrated_gradients"]]
    assert len(fig.axes[0].images) == 1 and len(fig.axes[1].images) == 2  # frame 0 not coloured
    assert _colorbar_labels(figures.dynamic_images([clip])) == [figures.DI_UNITS]
    assert _colorbar_labels(figures.clip_view(clip, 2)) == [figures.DI_UNITS]
    assert _colorbar_labels(figures.clip_grid([clip])) == [figures.DI_UNITS]
    view = attribution_figures.attribution_view(clip, "saliency")
    assert _colorbar_labels(view) == [attribution_figures.MAP_UNITS["saliency"]] * 2
    assert _colorbar_labels(attribution_figures.class_maps({"a": np.eye(32)}, background=clip["frames"][0]))


def test_explorer_opens_where_the_method_is_defined():
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    clip = record(3)
    clip["maps"]["integrated_gradients"][0] = 0
    clip["maps"]["integrated_gradients"][5] *= 10
    explorer = widgets.AttributionExplorer([clip], ["integrated_gradients", "saliency"])
    assert explorer.state["frame"] == 5 and explorer.frame.label == f"#{clip['frame_numbers'][5]}"
    explorer.frame.value = 0
    assert "all zero" in explorer.figure.axes[0].get_title()


def test_legends_and_labels_do_not_hide_bars():
    per_subject = pd.DataFrame({"happiness": [5, 2], "disgust": [4, 3]}, index=["s/01", "s/02"])
    fig = figures.class_counts(per_subject)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the bars
    bars = figures.per_subject_bars(pd.DataFrame({"subject": ["01"], "uf1": [0.4], "accuracy": [0.5]}))
    assert "subject" in bars.axes[0].get_xlabel()


@pytest.mark.parametrize("view", ["ClipInspector", "AttributionExplorer"])
def test_a_new_clip_relabels_the_slider_and_opens_on_its_frame_with_one_redraw(view, monkeypatch):
    """One clip-change handler for both views: the slider takes the new clip's frame numbers and the
    view's opening frame (apex for the inspector, the most attributed frame for the explorer), and
    the view is drawn once, not once per control it moves."""
    widgets = pytest.importorskip("fdpkit.viz.widgets")
    clips = [record(1), record(2, t=6)]
    clips[1]["maps"]["saliency"] = clips[1]["maps"]["saliency"][:6]
    clips[1]["maps"]["integrated_gradients"] = clips[1]["maps"]["integrated_gradients"][:6]
    clips[1]["maps"]["integrated_gradients"][4] *= 10
    widget = getattr(widgets, view)(clips)
    drawn = []
    original = type(widget).draw
    monkeypatch.setattr(type(widget), "draw", lambda self: drawn.append(1) or original(self))
    widget.clip.value = 1
    expected = figures.apex_position(clips[1]) if view == "ClipInspector" else 4
    assert widget.state["frame"] == expected and len(drawn) == 1
    assert [label for label, _ in widget.frame.options] == [f"#{n}" for n in clips[1]["frame_numbers"]]
