"""`FDPConfig`: the one configuration dataclass of the FDP model, and the presets as data.

A preset is a dict of field overrides applied on top of the dataclass defaults (which are the
`paper` preset). `build_model(preset, **overrides)` applies the preset, then the overrides.

Variants (`variant`):
  * ``paper``    -- what the paper describes: Next-ViT-style LGFAT per frame (LRA + GRA blocks),
                    per-frame 64x64 maps kept on their own time axis, learned rank scorer.
  * ``official`` -- the released code's computation exactly: LFA-only encoder with dense 3x3
                    "MHCA", no attention block, the scrambled `reshape(-1, 1, 64, 64, 8)` layout
                    (see `fdpkit.model.official`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fdpkit.errors import BadInput, check_field_types
from fdpkit.registry import PRESETS as REGISTRY_PRESETS

VARIANTS = ("paper", "official")
ENCODERS = ("lgfat", "cnn", "vit")
RANK_SCORERS = ("learned", "mean")
RANK_INITS = ("random", "arp")
STEM_STRIDE = 4  # the stem's two stride-2 convs


class ConfigError(BadInput):
    """An FDPConfig value that cannot work; the message names the field (a ValueError)."""


class UnknownField(BadInput, TypeError):
    """An override that is no FDPConfig field."""


@dataclass
class FDPConfig:
    """Every knob of the FDP model. Defaults = the `paper` preset at full size."""

    variant: str = "paper"
    num_classes: int = 5
    in_chans: int = 1
    frames: int = 8  # T: frames per clip
    size: int = 64  # input H = W
    # frame encoder (LGFAT / Next-ViT family)
    encoder: str = "lgfat"  # lgfat: (depth-1) LRA + 1 GRA per stage; cnn: LRA only; vit: GRA only
    stem_chs: tuple[int, ...] = (64, 32, 64)  # in->c0 s2, c0->c1, c1->c2, c2->c2 s2
    depths: tuple[int, ...] = (3, 4, 10, 3)
    widths: tuple[int, ...] = (96, 192, 384, 768)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)  # GRA key/value spatial reduction per stage
    head_dim: int = 32
    mlp_ratio: float = 3.0  # LRA MLP expansion
    gra_mlp_ratio: float = 2.0  # GRA MLP expansion (Next-ViT NTB)
    mix_ratio: float = 0.75  # GRA: share of channels for the self-attention branch
    mlp_divisor: int = 32  # MLP hidden widths rounded to a multiple of this
    drop_path: float = 0.1  # stochastic depth, rising linearly 0 -> drop_path over the blocks
    feature_size: int = 64  # per-frame feature D = feature_size ** 2, viewed as a square map
    # rank scorer + temporal pooling
    rank_scorer: str = "learned"  # learned: per-(k, t) 3x3 conv; mean: plain temporal average
    rank_channels: int = 8  # K
    rank_kernel: int = 3
    rank_init: str = "random"  # random (Conv3d default init) | arp (approximate rank pooling)
    # MER head
    mer_pool: int = 3  # max-pool kernel = stride
    mer_hidden: int = 256
    # dynamic-image decoder (SegNet-style)
    dynamic_image: bool = True
    segnet_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    segnet_depths: tuple[int, ...] = (2, 2, 3, 3, 3)
    # execution
    frame_loop: bool = False  # True: encode frames one at a time (released code's loop);
    # may be toggled on a built model (`model.cfg.frame_loop = True`)

    @property
    def feature_dim(self) -> int:
        return self.feature_size**2

    @property
    def rank_out_channels(self) -> int:
        """Channels of the pooled dynamic representation R (1 for the `mean` scorer)."""
        return self.rank_channels if self.rank_scorer == "learned" else 1

    def validate(self) -> "FDPConfig":
        """Refuse what cannot work, naming the field (`ConfigError`, a ValueError / BadInput)."""

        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"FDPConfig: {msg}")

        check_field_types(self, ConfigError)
        check(self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}")
        check(self.encoder in ENCODERS, f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        check(self.rank_scorer in RANK_SCORERS,
              f"rank_scorer must be one of {RANK_SCORERS}, got {self.rank_scorer!r}")
        check(self.rank_init in RANK_INITS, f"rank_init must be one of {RANK_INITS}, got {self.rank_init!r}")
        n = len(self.depths)
        check(n >= 1, "depths needs at least one stage")
        check(len(self.widths) == n and len(self.strides) == n and len(self.sr_ratios) == n,
              "depths, widths, strides, sr_ratios must have the same length")
        check(all(d >= 1 for d in self.depths), f"every stage depth must be >= 1, got depths={self.depths}")
        check(all(w >= 1 for w in self.widths), f"every width must be >= 1, got widths={self.widths}")
        check(all(s in (1, 2) for s in self.strides), f"strides must be 1 or 2, got {self.strides}")
        check(all(r >= 1 for r in self.sr_ratios), f"sr_ratios must be >= 1, got {self.sr_ratios}")
        check(len(self.stem_chs) >= 1 and all(c >= 1 for c in self.stem_chs),
              f"stem_chs needs at least one width, all >= 1, got {self.stem_chs}")
        check(len(self.segnet_widths) == len(self.segnet_depths) >= 1,
              "segnet_widths and segnet_depths must have the same (non-zero) length")
        check(all(v >= 1 for v in self.segnet_widths + self.segnet_depths),
              "segnet_widths and segnet_depths must be >= 1")
        check(self.num_classes >= 2, f"num_classes must be >= 2 (cross-entropy over one class is always 0), "
              f"got {self.num_classes}")
        for name in ("in_chans", "frames", "rank_channels", "mer_hidden", "mer_pool", "mlp_divisor"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.size >= STEM_STRIDE, f"size must be >= {STEM_STRIDE} (the stem downsamples frames by "
              f"{STEM_STRIDE}), got {self.size}")
        check(self.feature_size >= 1, f"feature_size must be >= 1, got {self.feature_size}")
        check(self.head_dim >= 1, f"head_dim must be >= 1, got {self.head_dim}")
        check(self.rank_kernel >= 1 and self.rank_kernel % 2 == 1,
              f"rank_kernel must be a positive odd number, got {self.rank_kernel}")
        check(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        check(self.gra_mlp_ratio > 0, f"gra_mlp_ratio must be > 0, got {self.gra_mlp_ratio}")
        check(0 < self.mix_ratio < 1, f"mix_ratio must be in (0, 1), got {self.mix_ratio}")
        check(0 <= self.drop_path < 1, f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.dynamic_image:
            levels = len(self.segnet_depths)
            check(self.feature_size % (2**levels) == 0,
                  f"feature_size {self.feature_size} must be divisible by 2**{levels} (SegNet)")
        check(self.feature_size >= self.mer_pool,
              f"feature_size {self.feature_size} must be >= mer_pool {self.mer_pool}")
        if self.variant == "official":
            check(self.encoder == "cnn",
                  "the released code builds no attention block: variant='official' needs "
                  "encoder='cnn' (use variant='paper' for LRA/GRA encoders)")
            check(self.feature_size % self.frames == 0,
                  "official layout needs feature_size divisible by frames "
                  f"({self.feature_size} % {self.frames} != 0)")
        else:
            if self.encoder != "cnn":
                for w in self.widths:
                    check(w >= 2 * self.head_dim and w % self.head_dim == 0,
                          f"GRA width {w} must be a multiple of head_dim and >= 2 * head_dim")
        for w in self.widths:
            check(w % self.head_dim == 0,
                  f"width {w} is not a multiple of head_dim {self.head_dim}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Presets: data only (field overrides on top of the defaults above).
# The model half of each preset in fdpkit.registry.PRESETS (its one place).
PRESETS: dict[str, dict[str, Any]] = {name: dict(p.model) for name, p in REGISTRY_PRESETS.items()}


def make_config(preset: str = "paper", **overrides: Any) -> FDPConfig:
    """Defaults <- PRESETS[preset] <- overrides, validated.

    Passing ``variant="official"`` without an ``encoder`` override selects ``encoder="cnn"`` (the
    released encoder has no attention), so e.g. ``make_config("tiny", variant="official")`` works.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    if overrides.get("variant") == "official" and "encoder" not in overrides:
        values["encoder"] = "cnn"
    values.update(overrides)
    unknown = set(values) - {f.name for f in dataclasses.fields(FDPConfig)}
    if unknown:
        raise UnknownField(f"unknown FDPConfig fields: {sorted(unknown)} (fields: "
                           f"{', '.join(f.name for f in dataclasses.fields(FDPConfig))})")
    for key in ("stem_chs", "depths", "widths", "strides", "sr_ratios", "segnet_widths",
                "segnet_depths"):
        if key in values and isinstance(values[key], (list, tuple)):
            values[key] = tuple(values[key])
    return FDPConfig(**values).validate()
