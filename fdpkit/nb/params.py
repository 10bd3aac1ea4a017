"""Notebook parameters: the `Params` dataclass and ``check_parameters``.

Every notebook's first cell (tagged ``parameters``) holds primitives; the next cell calls
``p = check_parameters(dataset=dataset, root=root, ..., notebook="03_loso")``. Each field of
`Params` declares its type and, where it has them, its choices (from `fdpkit.registry` and the
modules that own them) or its range; one generic check (`_check`) reads those and raises
``ParameterError`` naming the bad parameter. ``check_parameters`` then fills in the defaults
(``root=""`` -> the default SynthME under ``fdpkit_home()/synthme``, generated if absent;
``work_dir=""`` -> ``fdpkit_home()/work/<dataset>``) and, when the environment variable
``FDPKIT_SMOKE=1`` is set, scales the run down for testing (a 4-subject x 4-clip SynthME, few steps,
2 folds, a small grid) and prints a loud line saying so.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tqdm.auto
import tqdm.std

from fdpkit.data.preprocess.flow import METHODS as FLOW_METHODS
from fdpkit.data.preprocess.keys import ALIGN_MODES
from fdpkit.data.preprocess.sampling import METHODS as SAMPLINGS
from fdpkit.data.protocols import list_protocols, load_protocol
from fdpkit.errors import BadInput
from fdpkit.explain.attribution import METHODS as ATTRIBUTION_METHODS
from fdpkit.paths import fdpkit_home
from fdpkit.registry import DATASETS, MODELS, PRESETS
from fdpkit.synthme.corpus import generate_synthme
from fdpkit.train.config import SELECTIONS
from fdpkit.viz.widgets import headless

SMOKE_ENV = "FDPKIT_SMOKE"
SMOKE_BANNER = f"SMOKE MODE ({SMOKE_ENV}=1): scaled down for testing"
SMOKE_SYNTHME = {"subjects": 4, "clips_per_subject": 4}
SMOKE_LIMITS = {"steps": 4, "max_folds": 2, "n_clips": 2, "ig_steps": 4}
SMOKE_ABLATIONS = ("fdp", "rank-mean", "frames-4")
EXECUTORS = ("local", "ray")  # what fdpkit.loso.executors.run_tasks runs folds with

# The values of the `ablations` parameter, name -> overrides for a LOSO run (`fdpkit.nb.ablations`
# turns them into runs; a `frames` entry needs a cache with another frame count)
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
DEFAULT_ABLATIONS = ",".join(ABLATIONS)


class ParameterError(BadInput):
    """A notebook parameter is invalid; the message names it and what it must be (exit 2 in the CLI)."""


def smoke_mode() -> bool:
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _param(default, *, choices=None, low=None, high=None, internal=False):
    """A `Params` field with its rule: ``choices`` (names), ``low``/``high`` (whole numbers)."""
    rule = {"choices": None if choices is None else tuple(choices), "low": low, "high": high, "internal": internal}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rule)
    return field(default=default, metadata=rule)


@dataclass(frozen=True)
class Params:
    """A notebook's checked parameters; a notebook reads those it declares, the rest keep these
    defaults (0 steps / batch size / folds: the preset's value, every subject)."""

    dataset: str = _param("synthme", choices=DATASETS)
    root: str = ""  # the corpus folder (resolved); '' -> the default SynthME
    annotations: str = ""  # '' -> found under root
    protocol: str = ""  # '' -> the dataset's default
    work_dir: str = ""  # '' -> fdpkit_home()/work/<dataset>
    preset: str = _param("tiny", choices=PRESETS)
    seed: int = _param(0, low=0)
    steps: int = _param(0, low=0)
    batch_size: int = _param(0, low=0)
    frames: int = _param(8, low=2, high=64)
    size: int = _param(64, low=16, high=512)
    align: str = _param("once", choices=ALIGN_MODES)
    sampling: str = _param("onset-offset", choices=SAMPLINGS)
    workers: int = _param(1, low=1, high=64)
    flow: str = _param("tvl1", choices=(*FLOW_METHODS, ""))  # optical flow for the flow baselines; "": none
    lenient: bool = False
    n_clips: int = _param(4, low=1, high=64)
    fold: str = ""
    executor: str = _param("local", choices=EXECUTORS)
    jobs: int = _param(0, low=0, high=256)
    selection: str = _param("fixed_steps", choices=SELECTIONS)
    max_folds: int = _param(0, low=0)
    include_official: bool = False
    baselines: list[str] = _param([], choices=[m for m in MODELS if m != "fdp"])
    ablations: list[str] = _param(list(ABLATIONS), choices=ABLATIONS)
    ig_steps: int = _param(32, low=2, high=1024)
    method2: str = _param("saliency", choices=[m for m in ATTRIBUTION_METHODS if m != "integrated_gradients"])
    run: str = ""
    smoke: bool = _param(False, internal=True)  # FDPKIT_SMOKE was set
    notebook: str = _param("", internal=True)  # the notebook that checked them


FIELDS = {f.name: f for f in dataclasses.fields(Params)}
TYPES = typing.get_type_hints(Params)
PARAMETERS = tuple(name for name, f in FIELDS.items() if not f.metadata.get("internal"))


def _fail(name, value, rule) -> typing.NoReturn:
    raise ParameterError(f"parameter {name!r} = {value!r}: {rule}")


def _whole(name, value) -> int:
    number = isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not number or not float(value).is_integer():
        _fail(name, value, "must be a whole number")
    return int(value)


def _text(name, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, os.PathLike)):
        _fail(name, value, "must be a string ('' for the default)")
    return str(value)


def _names(name, value) -> list[str]:
    """A comma-separated string (or a list) of names; '' -> []."""
    items = value if isinstance(value, (list, tuple)) else _text(name, value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def _check(name: str, value):
    """The one check: the field's type, then its choices or range; returns the clean value."""
    kind, rule = TYPES[name], FIELDS[name].metadata
    choices, low, high = rule.get("choices"), rule.get("low"), rule.get("high")
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            _fail(name, value, "must be True or False")
        return bool(value)
    if kind is int:
        value = _whole(name, value)
        if low is not None and value < low:
            _fail(name, value, f"must be >= {low}")
        if high is not None and value > high:
            _fail(name, value, f"must be <= {high}")
        return value
    if kind == list[str]:
        items = _names(name, value)
        for item in items:
            if choices is not None and item not in choices:
                _fail(name, value, f"{item!r} is not one of {', '.join(choices)}")
        return items
    text = _text(name, value)
    if choices is not None and text not in choices:
        _fail(name, value, f"must be one of {', '.join(choices)}")
    return text


def _root(p: Params, smoke: bool) -> str:
    if p.root:
        path = Path(p.root).expanduser().resolve()
        if not path.is_dir():
            _fail("root", p.root, "is not a folder")
        return str(path)
    if p.dataset != "synthme":
        _fail("root", p.root, f"the {p.dataset} corpus is licensed and cannot be generated: pass its folder")
    return str(fdpkit_home() / ("synthme-smoke" if smoke else "synthme"))


def _check_files(p: Params) -> None:
    if p.annotations and not Path(p.annotations).expanduser().is_file():
        _fail("annotations", p.annotations, "is not a file")
    if p.protocol:
        if p.protocol not in list_protocols():
            _fail("protocol", p.protocol, f"unknown; known protocols: {', '.join(list_protocols())}")
        if not load_protocol(p.protocol).covers(p.dataset):
            _fail("protocol", p.protocol, f"has no class map for {p.dataset}")


def _smoke_scaled(p: Params) -> dict:
    """The changes smoke mode makes: capped counts, few steps and folds, one process, a small grid."""
    changes = {name: min(getattr(p, name), limit) or limit for name, limit in SMOKE_LIMITS.items()}
    ablations = [a for a in p.ablations if a in SMOKE_ABLATIONS] or p.ablations[:2]
    return {**changes, "jobs": 1, "ablations": ablations}  # no process pool for a few steps


def check_parameters(notebook: str = "", quiet: bool = False, **given) -> Params:
    """Validate and complete a notebook's parameters; raise ParameterError naming the bad one."""
    for name in given:
        if name not in PARAMETERS:
            raise ParameterError(f"parameter {name!r}: unknown (known: {', '.join(sorted(PARAMETERS))})")
    smoke = smoke_mode()
    p = Params(**{name: _check(name, value) for name, value in given.items()}, smoke=smoke, notebook=notebook)
    root = _root(p, smoke)
    _check_files(p)
    work = (Path(p.work_dir).expanduser().resolve() if p.work_dir
            else fdpkit_home() / "work" / (p.dataset + ("-smoke" if smoke else "")))
    p = dataclasses.replace(p, root=root, work_dir=str(work), **(_smoke_scaled(p) if smoke else {}))
    text_progress_when_headless()
    if smoke and not quiet:
        print("#" * len(SMOKE_BANNER) + "\n" + SMOKE_BANNER + "\n" + "#" * len(SMOKE_BANNER))
    if p.dataset == "synthme" and not given.get("root"):
        ensure_synthme(Path(root), smoke, quiet)
    work.mkdir(parents=True, exist_ok=True)
    if not quiet:
        shown = ("dataset", "root", "annotations", "protocol", "work_dir", *given)
        print("parameters: " + ", ".join(f"{k}={getattr(p, k)!r}" for k in dict.fromkeys(shown)))
    return p


def text_progress_when_headless() -> bool:
    """In a kernel nobody watches (papermill, nbval, FDPKIT_SMOKE / FDPKIT_HEADLESS), make
    ``tqdm.auto`` the plain text bar: a widget bar would be saved as its first frame ("0%") in the
    executed notebook and its widget messages can stall the runner. Returns True when switched."""
    if not headless():
        return False
    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
    return True


def ensure_synthme(root: Path, smoke: bool = False, quiet: bool = False) -> Path:
    """Generate the default SynthME into ``root`` unless it is already there."""
    kwargs = dict(SMOKE_SYNTHME) if smoke else {}
    summary = generate_synthme(root, progress=not quiet, **kwargs)
    if not quiet and summary["status"] != "already present":
        print(f"SynthME was generated in {summary['seconds']:.1f} s: {summary['n_clips']} clips in {root}.")
    return Path(root)


__all__ = ["Params", "ParameterError", "check_parameters", "smoke_mode", "text_progress_when_headless",
           "ensure_synthme", "PARAMETERS", "ABLATIONS", "DEFAULT_ABLATIONS", "SMOKE_ABLATIONS", "SMOKE_BANNER",
           "SMOKE_LIMITS", "SMOKE_ENV", "EXECUTORS"]
