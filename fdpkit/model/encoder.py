"""Frame encoder: one grayscale frame -> one D-dimensional feature (LGFAT, Next-ViT family).

stem (conv-BN-ReLU, /4) -> blocks (4 stages) -> BN -> global average pool -> Linear(width -> D).

`block_plan(cfg)` is the single source of truth for the block sequence; it is also used by
`fdpkit.model.official` to build the key mapping onto the released state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, reduce
from torch import nn

from .blocks import GRA, LRA, ConvNormAct
from .config import FDPConfig


@dataclass(frozen=True)
class BlockSpec:
    kind: str  # "lra" | "gra" | "lfa" (released: LRA with a dense 3x3 MHCA)
    cin: int
    cout: int
    stride: int
    stage: int
    sr_ratio: int
    drop_path: float


def block_plan(cfg: FDPConfig) -> list[BlockSpec]:
    """The encoder's blocks in order.

    paper/lgfat: per stage (depth - 1) LRA then 1 GRA; paper/cnn: LRA only; paper/vit: GRA only;
    official: LFA only (the released loop never reaches the appended attention block).
    The first block of a stage carries the stage stride; drop-path rises linearly 0 -> drop_path.
    """
    total = sum(cfg.depths)
    rates = torch.linspace(0, cfg.drop_path, total).tolist() if total > 1 else [0.0]
    plan, cin, idx = [], cfg.stem_chs[-1], 0
    for stage, (depth, width, stride, sr) in enumerate(
            zip(cfg.depths, cfg.widths, cfg.strides, cfg.sr_ratios)):
        for i in range(depth):
            if cfg.variant == "official":
                kind = "lfa"
            elif cfg.encoder == "cnn":
                kind = "lra"
            elif cfg.encoder == "vit":
                kind = "gra"
            else:
                kind = "gra" if i == depth - 1 else "lra"
            plan.append(BlockSpec(kind, cin, width, stride if i == 0 else 1, stage, sr, rates[idx]))
            cin, idx = width, idx + 1
    return plan


def build_block(spec: BlockSpec, cfg: FDPConfig) -> nn.Module:
    if spec.kind == "gra":
        return GRA(spec.cin, spec.cout, spec.stride, cfg.head_dim, spec.sr_ratio,
                   cfg.gra_mlp_ratio, cfg.mlp_divisor, cfg.mix_ratio, spec.drop_path)
    return LRA(spec.cin, spec.cout, spec.stride, cfg.head_dim, cfg.mlp_ratio, cfg.mlp_divisor,
               spec.drop_path, dense_mhca=spec.kind == "lfa")


def build_stem(in_chans: int, chs: tuple[int, ...]) -> nn.Sequential:
    """in -> c0 (stride 2) -> c1 -> ... -> c_last -> c_last (stride 2): 4 layers for 3 widths."""
    layers = [ConvNormAct(in_chans, chs[0], 3, stride=2)]
    for a, b in zip(chs[:-1], chs[1:]):
        layers.append(ConvNormAct(a, b, 3))
    layers.append(ConvNormAct(chs[-1], chs[-1], 3, stride=2))
    return nn.Sequential(*layers)


class FrameEncoder(nn.Module):
    """(N, in_chans, H, W) frames -> (N, D) features; N = all frames of all clips."""

    def __init__(self, cfg: FDPConfig):
        super().__init__()
        self.stem = build_stem(cfg.in_chans, cfg.stem_chs)
        self.plan = block_plan(cfg)
        self.blocks = nn.ModuleList(build_block(spec, cfg) for spec in self.plan)
        width = self.plan[-1].cout
        self.norm = nn.BatchNorm2d(width, eps=1e-5)
        self.head = nn.Linear(width, cfg.feature_dim)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, return_attention: bool = False,
                head_per_position: int | None = None):
        """Returns (features (N, D), attentions: list of (N, heads, L_q, L_kv) or None).

        `head_per_position=T` (rows ordered (b t)): the final Linear runs once per frame position
        on B rows, as in the released per-frame loop. Same maths; a (B*T)-row matmul can round
        differently, and the official variant wants the loop's bits.
        """
        x = self.stem(x)
        attentions = [] if return_attention else None
        for block in self.blocks:
            x, attn = block(x, return_attention)
            if return_attention and attn is not None:
                attentions.append(attn)
        pooled = reduce(self.norm(x), "n c h w -> n c", "mean")
        if head_per_position is None:
            return self.head(pooled), attentions
        per_position = rearrange(pooled, "(b t) c -> t b c", t=head_per_position)
        feats = [self.head(rows) for rows in per_position]
        return rearrange(feats, "t b d -> (b t) d"), attentions


def _init_weights(m: nn.Module) -> None:
    """Truncated normal (std .02) for convs and linears, BN to identity (as Next-ViT / released)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
