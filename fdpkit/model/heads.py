"""Heads on the dynamic representation R (B, K, h, w).

`MERHead`: max-pool (kernel = stride = pool) -> flatten -> Linear(hidden) -> ReLU -> Linear(C).
`SegNetDecoder`: SegNet-style encoder-decoder (VGG-like conv-BN-ReLU levels, 2x2 max-pool with
indices, max-unpool) from K channels to 1; returns logits, the model applies the sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .blocks import ConvNormAct


class MERHead(nn.Module):
    def __init__(self, channels: int, map_size: int, num_classes: int, hidden: int = 256,
                 pool: int = 3):
        super().__init__()
        self.pool = pool
        side = map_size // pool
        self.fc1 = nn.Linear(channels * side * side, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(rep, self.pool)  # kernel = stride, floor: 64 -> 21
        x = rearrange(x, "b k h w -> b (k h w)")
        return self.fc2(self.act(self.fc1(x)))


class SegNetDecoder(nn.Module):
    """K -> 1 encoder-decoder. Level l has depths[l] conv-BN-ReLU layers of width widths[l]
    (conv biases on, as SegNet); the mirror decoder ends each level with a conv to the previous
    level's width, and the very last conv (to `out_chans`) has no BN / ReLU.

    With widths (64, 128, 256, 512, 512), depths (2, 2, 3, 3, 3) this is the released SegNet(8, 1).
    """

    def __init__(self, in_chans: int, out_chans: int = 1,
                 widths: tuple[int, ...] = (64, 128, 256, 512, 512),
                 depths: tuple[int, ...] = (2, 2, 3, 3, 3)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_chans
        for width, depth in zip(widths, depths):
            layers = []
            for _ in range(depth):
                layers.append(ConvNormAct(cin, width, 3, bias=True))
                cin = width
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        levels = len(widths)
        for level in reversed(range(levels)):
            width, depth = widths[level], depths[level]
            target = widths[level - 1] if level > 0 else None
            layers = []
            for i in range(depth):
                last = i == depth - 1
                if last and target is None:
                    break  # the final conv of level 0 is `out`
                layers.append(ConvNormAct(width, target if last else width, 3, bias=True))
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Conv2d(widths[0], out_chans, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, sizes = [], []
        for level in self.down:
            x = level(x)
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for level in self.up:
            x = F.max_unpool2d(x, indices.pop(), 2, 2, output_size=sizes.pop())
            x = level(x)
        return self.out(x)
