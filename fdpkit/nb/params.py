"""Notebook parameter checks: ``check_parameters`` and the rules behind it.

Every notebook's first cell (tagged ``parameters``) holds primitives; the next cell calls
``p = check_parameters(dataset=dataset, root=root, ..., notebook="03_loso")``, which raises
``ParameterError`` naming the bad parameter, fills in the defaults (``root=""`` -> the default
SynthME under ``fdpkit_home()/synthme``, generated if absent; ``work_dir=""`` ->
``fdpkit_home()/work/<dataset>``) and, when the environment variable ``FDPKIT_SMOKE=1`` is set,
scales the run down for testing (a 4-subject x 4-clip SynthME, few steps, 2 folds, a small grid)
and prints a loud line saying so. `fdpkit.nb.notebook` re-exports these names for the notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fdpkit.paths import fdpkit_home
from fdpkit.registry import DATASETS, MODELS, PRESETS
from fdpkit.train.config import SELECTIONS

SMOKE_ENV = "FDPKIT_SMOKE"
SMOKE_BANNER = f"SMOKE MODE ({SMOKE_ENV}=1): scaled down for testing"
SMOKE_SYNTHME = {"subjects": 4, "clips_per_subject": 4}
SMOKE_LIMITS = {"steps": 4, "max_folds": 2, "n_clips": 2, "ig_steps": 4}
SMOKE_ABLATIONS = ("fdp", "rank-mean", "frames-4")
EXECUTORS = ("local", "ray")
METHODS2 = ("saliency", "occlusion")


class ParameterError(ValueError):
    """A notebook parameter is invalid; the message names it."""


def smoke_mode() -> bool:
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Params(dict):
    """The checked parameters (attribute access) plus derived paths."""

    __getattr__ = dict.__getitem__


def _fail(name, value, rule) -> None:
    raise ParameterError(f"parameter {name!r} = {value!r}: {rule}")


def _int(name, value, low=None, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value:
        _fail(name, value, "must be a whole number")
    value = int(value)
    if low is not None and value < low:
        _fail(name, value, f"must be >= {low}")
    if high is not None and value > high:
        _fail(name, value, f"must be <= {high}")
    return value


def _choice(name, value, choices) -> str:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(map(str, choices))}")
    return value


def _bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, value, "must be True or False")
    return bool(value)


def _str(name, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, os.PathLike)):
        _fail(name, value, "must be a string ('' for the default)")
    return str(value)


def _names(name, value, allowed=None) -> list[str]:
    """A comma-separated string (or a list) of names; '' -> []."""
    items = value if isinstance(value, (list, tuple)) else _str(name, value).split(",")
    items = [str(v).strip() for v in items if str(v).strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                _fail(name, value, f"{item!r} is not one of {', '.join(allowed)}")
    return items


def _rules() -> dict:
    """Notebook-specific parameter name -> check(name, value) returning the clean value."""
    def whole(low, high=None):
        return lambda n, v: _int(n, v, low, high)

    def one_of(*choices):
        return lambda n, v: _choice(n, v, choices)

    return {
        "preset": one_of(*PRESETS), "seed": whole(0), "steps": whole(0), "batch_size": whole(0),
        "frames": whole(2, 64), "size": whole(16, 512), "align": one_of("once", "per-frame"),
        "sampling": one_of("onset-offset", "official"), "workers": whole(1, 64), "lenient": _bool,
        "n_clips": whole(1, 64), "fold": _str, "executor": one_of(*EXECUTORS), "jobs": whole(0, 256),
        "selection": one_of(*SELECTIONS), "max_folds": whole(0), "include_official": _bool,
        "baselines": lambda n, v: _names(n, v, tuple(m for m in MODELS if m != "fdp")),
        "ablations": lambda n, v: _names(n, v, tuple(ABLATIONS)),
        "ig_steps": whole(2, 1024), "method2": one_of(*METHODS2), "run": _str,
    }


def check_parameters(dataset="synthme", root="", annotations="", protocol="", work_dir="",
                     notebook: str = "", quiet: bool = False, **extra) -> Params:
    """Validate and complete a notebook's parameters; raise ParameterError naming the bad one."""
    dataset = _str("dataset", dataset)
    _choice("dataset", dataset, DATASETS)
    smoke = smoke_mode()
    root, annotations = _str("root", root), _str("annotations", annotations)
    protocol, work_dir = _str("protocol", protocol), _str("work_dir", work_dir)
    rules = _rules()
    values = {}
    for name, value in extra.items():
        if name not in rules:
            raise ParameterError(f"parameter {name!r}: unknown (known: {', '.join(sorted(rules))})")
        values[name] = rules[name](name, value)

    if root:
        root_path = Path(root).expanduser().resolve()
        if not root_path.is_dir():
            _fail("root", root, "is not a folder")
    elif dataset == "synthme":
        root_path = fdpkit_home() / ("synthme-smoke" if smoke else "synthme")
    else:
        _fail("root", root, f"the {dataset} corpus is licensed and cannot be generated: pass its folder")
    if annotations and not Path(annotations).expanduser().is_file():
        _fail("annotations", annotations, "is not a file")
    if protocol:
        from fdpkit.data.protocols import list_protocols, load_protocol

        if protocol not in list_protocols():
            _fail("protocol", protocol, f"unknown; known protocols: {', '.join(list_protocols())}")
        if not load_protocol(protocol).covers(dataset):
            _fail("protocol", protocol, f"has no class map for {dataset}")
    if work_dir:
        work = Path(work_dir).expanduser().resolve()
    else:
        work = fdpkit_home() / "work" / (dataset + ("-smoke" if smoke else ""))

    if smoke:
        for name, limit in SMOKE_LIMITS.items():
            if name in values and values[name]:
                values[name] = min(values[name], limit)
        if "steps" in values and values["steps"] == 0:
            values["steps"] = SMOKE_LIMITS["steps"]
        if "max_folds" in values and values["max_folds"] == 0:
            values["max_folds"] = SMOKE_LIMITS["max_folds"]
        if "jobs" in values:
            values["jobs"] = 1  # no process pool for a few steps
        if "ablations" in values:
            values["ablations"] = [a for a in values["ablations"] if a in SMOKE_ABLATIONS] or values["ablations"][:2]
    text_progress_when_headless()
    p = Params(dataset=dataset, root=str(root_path), annotations=annotations or None,
               protocol=protocol or None, work_dir=str(work), smoke=smoke, notebook=notebook, **values)
    if smoke and not quiet:
        print("#" * len(SMOKE_BANNER) + "\n" + SMOKE_BANNER + "\n" + "#" * len(SMOKE_BANNER))
    if dataset == "synthme" and not root:
        ensure_synthme(root_path, smoke, quiet)
    work.mkdir(parents=True, exist_ok=True)
    if not quiet:
        shown = {k: v for k, v in p.items() if k not in ("smoke", "notebook")}
        print("parameters: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return p


def text_progress_when_headless() -> bool:
    """In a kernel nobody watches (papermill, nbval, FDPKIT_SMOKE / FDPKIT_HEADLESS), make
    ``tqdm.auto`` the plain text bar: a widget bar would be saved as its first frame ("0%") in the
    executed notebook and its widget messages can stall the runner. Returns True when switched."""
    from fdpkit.viz.widgets import headless

    if not headless():
        return False
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
    return True


def ensure_synthme(root: Path, smoke: bool = False, quiet: bool = False) -> Path:
    """Generate the default SynthME into ``root`` unless it is already there."""
    from fdpkit.synthme.corpus import generate_synthme

    kwargs = dict(SMOKE_SYNTHME) if smoke else {}
    summary = generate_synthme(root, progress=not quiet, **kwargs)
    if not quiet and summary["status"] != "already present":
        print(f"SynthME generated in {summary['seconds']:.1f} s: {root} ({summary['n_clips']} clips)")
    return Path(root)


# ------------------------------------------------------------------------ ablations
# The values of the `ablations` parameter, name -> overrides for run_grid (fdpkit.nb.notebook.ablation_grid
# and run_ablations turn them into runs; a `frames` entry needs a cache with another frame count)
ABLATIONS = {
    "fdp": {},
    "encoder-cnn": {"encoder": "cnn"},
    "encoder-vit": {"encoder": "vit"},
    "rank-mean": {"rank_scorer": "mean"},
    "di_weight-100": {"di_weight": 100.0},  # the released weighting (tiny trains with 10 by default)
    "di_weight-0": {"di_weight": 0.0},
    "variant-official": {"variant": "official"},
    "frames-4": {"frames": 4},
}
DEFAULT_ABLATIONS = "fdp,encoder-cnn,encoder-vit,rank-mean,di_weight-100,di_weight-0,variant-official,frames-4"
