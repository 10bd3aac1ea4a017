"""FDP model: `build_model`, `FDPOutput`, `fdp_loss` and the released-checkpoint bridge.

    from fdpkit.model import build_model, fdp_loss
    model = build_model("tiny", num_classes=5)  # or "paper", "official"; any FDPConfig field
    out = model(x)                                       # x (B, T, 1, H, W) -> FDPOutput
    loss, parts = fdp_loss(out, labels, di_target)
    baseline = build("apex-frame", "tiny", num_classes=5)  # any model in fdpkit.registry.MODELS
"""

from fdpkit.registry import MODELS, choices, resolve

from .config import PRESETS, FDPConfig, make_config
from .fdp import FDP, FDPOutput, LogitsOnly, build_model, fdp_loss
from .official import (
    load_official_checkpoint,
    official_key_map,
    official_layout,
    official_module_table,
    to_official_state_dict,
)
from .rank import chronological_rank_loss, rank_pooling_coefficients


def build(model: str = "fdp", preset: str = "tiny", num_classes: int = 5, **overrides):
    """Any model of `fdpkit.registry.MODELS` by name; `overrides` are FDPConfig fields."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {choices(MODELS)}, got {model!r}")
    return resolve(MODELS[model].builder)(preset, num_classes, **overrides)


__all__ = [
    "FDP", "FDPConfig", "build", "FDPOutput", "LogitsOnly", "PRESETS", "build_model",
    "chronological_rank_loss", "fdp_loss", "load_official_checkpoint", "make_config",
    "official_key_map", "official_layout", "official_module_table", "rank_pooling_coefficients",
    "to_official_state_dict",
]
