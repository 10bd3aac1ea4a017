"""The three registries: presets, models and datasets. Plain data, no torch.

Everything that lists presets, models or datasets derives the list from here: the CLI's choices,
the notebooks' parameter checks (`fdpkit.nb.params`), the report's headline runs, `build_model`'s
preset table (`fdpkit.model.config.PRESETS`) and the training defaults
(`fdpkit.train.config.TRAIN_PRESETS`). Builders and adapters are named as ``"module:attribute"``
and imported only when used, so reading a registry (e.g. for ``fdpkit --help``) loads no torch.

* Add a preset: one `Preset` entry (model fields of `FDPConfig` + fields of `TrainConfig`).
* Add a model: write its builder ``build_x(preset, num_classes, **overrides) -> nn.Module`` returning
  `FDPOutput`s, and add one `ModelEntry`.
* Add a dataset: write its adapter (``fdpkit/data/adapters/<name>.py``) and add one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named size of FDP with the training settings that go with it."""

    summary: str
    model: dict[str, Any] = field(default_factory=dict)  # FDPConfig fields over its defaults
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields over its defaults


PRESETS: dict[str, Preset] = {
    "paper": Preset("the paper's description at full size (Next-ViT LGFAT, 64x64 map per frame, K = 8); "
                    "training as released (Adam 1e-4, batch 36, 500 steps)"),
    "official": Preset("the released code's computation (85,304,206 parameters at C = 5)",
                       model={"variant": "official", "encoder": "cnn"}),
    "tiny": Preset(
        "paper family, small enough to train a SynthME LOSO fold on 2 CPU cores in well under a minute",
        model={
            "stem_chs": (8,),  # 1 -> 8 (stride 2) -> 8 (stride 2)
            "depths": (1, 2, 2, 1),
            "widths": (16, 32, 48, 64),
            "sr_ratios": (4, 2, 1, 1),
            "head_dim": 8,
            "mlp_ratio": 2.0,
            "gra_mlp_ratio": 2.0,
            "mlp_divisor": 8,
            "drop_path": 0.0,
            "feature_size": 16,
            "rank_channels": 4,
            "rank_init": "arp",  # measured on SynthME: UF1 0.44 vs 0.22 with random init (docs/synthme.md)
            "mer_hidden": 64,
            "segnet_widths": (8, 16, 16),
            "segnet_depths": (1, 1, 1),
        },
        # SynthME on 2 CPU cores. Measured (16-subject SynthME, folds 01-02, 300 steps): with the
        # released di_weight=100 the tiny model's CE stays at ln(5) (the dynamic-image term swamps
        # it); with di_weight 10 (or 0) and class-balanced sampling the CE falls.
        train={"lr": 1e-3, "batch_size": 16, "steps": 300, "sampler": "balanced", "di_weight": 10.0},
    ),
}


@dataclass(frozen=True)
class ModelEntry:
    """A model the LOSO runner trains. ``input``: what the dataset feeds it, ``"frames"`` (the T
    sampled aligned frames, (B, T, 1, H, W)) or ``"flow"`` (onset->apex u, v, optical strain,
    (B, 3, S, S), cached by ``fdpkit preprocess --flow``)."""

    builder: str  # "module:function", called as function(preset, num_classes, **overrides)
    input: str
    summary: str
    dynamic_image: bool = False  # trained against the dynamic-image target (CE + weight x MSE)


MODELS: dict[str, ModelEntry] = {
    "fdp": ModelEntry("fdpkit.model.fdp:build_model", "frames",
                      "FDP: frame encoder, rank scorer, emotion head and dynamic-image decoder",
                      dynamic_image=True),
    "apex-frame": ModelEntry("fdpkit.model.baselines:build_apex_frame", "frames",
                             "the middle sampled frame through FDP's frame encoder, linear head"),
    "difference": ModelEntry("fdpkit.model.baselines:build_difference", "frames",
                             "middle minus first sampled frame through FDP's frame encoder, linear head"),
    "ststnet": ModelEntry("fdpkit.model.flownets:build_ststnet", "flow",
                          "STSTNet (Liong et al. 2019): three shallow conv streams on onset->apex u, v, strain"),
    "off-apexnet": ModelEntry("fdpkit.model.flownets:build_off_apexnet", "flow",
                              "OFF-ApexNet (Gan et al. 2019): two conv streams on onset->apex u and v"),
}

DATASETS: dict[str, str] = {  # name -> "module:Adapter class"
    "casme2": "fdpkit.data.adapters.casme2:Casme2",
    "samm": "fdpkit.data.adapters.samm:Samm",
    "casme_sq": "fdpkit.data.adapters.casme_sq:CasmeSq",
    "casme3": "fdpkit.data.adapters.casme3:Casme3",
    "synthme": "fdpkit.data.adapters.synthme:SynthME",
}


def resolve(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute (imports the module)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def choices(registry: dict) -> str:
    """``"a | b | c"`` for help texts and messages."""
    return " | ".join(registry)


__all__ = ["Preset", "PRESETS", "ModelEntry", "MODELS", "DATASETS", "resolve", "choices"]
