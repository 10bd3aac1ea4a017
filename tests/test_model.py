"""FDP model: shapes, per-frame locality of rank scores, attention path, loss, presets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from equivalence import assert_paths_equivalent
from equivalence import calibrate as equivalence_calibrate
from fdpkit.model import (
    PRESETS,
    FDPOutput,
    LogitsOnly,
    build_model,
    chronological_rank_loss,
    fdp_loss,
    make_config,
    rank_pooling_coefficients,
)
from fdpkit.model.info import format_model_info, model_info

equivalence = pytest.mark.equivalence  # compares execution paths: tests/equivalence.py, .ci/run


def clip(b=2, t=8, c=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, c, size, size, generator=g) * 2 - 1


def calibrate(model, x=None):
    """`equivalence.calibrate` on a default clip batch: eval-mode outputs then depend on the input."""
    x = clip(b=4, t=model.cfg.frames, c=model.cfg.in_chans, size=model.cfg.size, seed=99) \
        if x is None else x
    return equivalence_calibrate(model, x)


def tiny(**overrides):
    torch.manual_seed(0)
    overrides.setdefault("num_classes", 5)
    return calibrate(build_model("tiny", **overrides))


def check_output(out, b, t, c, k, s, di=True):
    assert isinstance(out, FDPOutput)
    assert out.logits.shape == (b, c)
    assert out.rank_scores.shape == (b, k, t)
    assert out.frame_features.shape == (b, t, s * s)
    assert out.attentions is None
    if di:
        assert out.dynamic_image.shape == (b, s, s)
        assert 0 <= out.dynamic_image.min() and out.dynamic_image.max() <= 1
    else:
        assert out.dynamic_image is None
    for v in (out.logits, out.rank_scores, out.frame_features):
        assert torch.isfinite(v).all()


@pytest.mark.parametrize("overrides, k, di", [
    ({}, 4, True),
    ({"encoder": "cnn"}, 4, True),
    ({"encoder": "vit"}, 4, True),
    ({"rank_scorer": "mean"}, 1, True),
    ({"dynamic_image": False}, 4, False),
    ({"rank_channels": 3, "rank_init": "arp"}, 3, True),
    ({"variant": "official"}, 4, True),
    ({"variant": "official", "rank_scorer": "mean", "dynamic_image": False}, 1, False),
])
def test_tiny_shapes_and_switches(overrides, k, di):
    model = tiny(**overrides)
    with torch.no_grad():
        out = model(clip(b=2))
    check_output(out, 2, 8, 5, k, 16, di)


def test_frames_size_channels_switches():
    model = tiny(frames=4, size=32, in_chans=2, num_classes=3)
    with torch.no_grad():
        out = model(clip(b=3, t=4, c=2, size=32))
    check_output(out, 3, 4, 3, 4, 16, True)
    with pytest.raises(ValueError):
        model(clip(b=1, t=4, c=2, size=64))  # wrong frame size
    with pytest.raises(ValueError):
        model(clip(b=1, t=8, c=2, size=32))  # learned scorer is built for T = 4


def test_train_mode_backward():
    model = tiny().train()
    out = model(clip(b=2))
    loss, parts = fdp_loss(out, torch.tensor([0, 3]), torch.rand(2, 64, 64))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert set(parts) == {"ce", "di", "rank"} and parts["di"] > 0


def test_tiny_parameter_budget():
    n = sum(p.numel() for p in build_model("tiny").parameters())
    assert 50_000 <= n <= 300_000


def test_full_size_paper_forward():
    """Full-size paper model (the official one is exercised in test_official.py)."""
    torch.manual_seed(0)
    model = build_model("paper", num_classes=5, frames=2).eval()
    with torch.no_grad():
        out = model(clip(b=1, t=2), return_attention=True)
    check_output(out._replace(attentions=None), 1, 2, 5, 8, 64)
    kinds = [type(b).__name__ for b in model.encoder.blocks]  # per stage (depth - 1) LRA + 1 GRA
    assert kinds == ["LRA"] * 2 + ["GRA"] + ["LRA"] * 3 + ["GRA"] + ["LRA"] * 9 + ["GRA"] \
        + ["LRA"] * 2 + ["GRA"]
    assert model.encoder.blocks[9].mhca.conv.groups == 384 // 32
    # GRA stages on 64x64 input: 16x16, 8x8, 4x4, 2x2 tokens; sr 8, 4, 2, 1 -> 4 key tokens each
    assert [a.shape[2:] for a in out.attentions] == [(256, 4), (64, 4), (16, 4), (4, 4)]
    # attention widths 64, 160, 288, 576 (0.75 * width, multiple of 32, < width) -> heads
    assert [a.shape[1] for a in out.attentions] == [2, 5, 9, 18]


@pytest.mark.parametrize("scorer", ["learned", "mean"])
def test_rank_scores_are_per_frame(scorer):
    """d rank_scores[:, :, t] / d x is zero for every frame but t (paper variant, eval)."""
    model = tiny(rank_scorer=scorer)
    x = clip(b=1).requires_grad_(True)
    scores = model(x).rank_scores
    for t in range(x.shape[1]):
        (grad,) = torch.autograd.grad(scores[:, :, t].sum(), x, retain_graph=True)
        per_frame = grad.abs().sum(dim=(0, 2, 3, 4))
        assert per_frame[t] > 0
        others = torch.cat([per_frame[:t], per_frame[t + 1:]])
        assert torch.all(others == 0), f"frame {t} score leaks into {others}"


def test_official_layout_scores_are_not_per_frame():
    """Negative control: the released layout mixes frames into every 'position' score."""
    model = tiny(variant="official")
    x = clip(b=1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).rank_scores[:, :, 0].sum(), x)
    assert (grad.abs().sum(dim=(0, 2, 3, 4)) > 0).all()


def test_reversing_frames_changes_logits():
    model = tiny()
    x = clip(b=2)
    with torch.no_grad():
        a, b = model(x).logits, model(x.flip(1)).logits
    assert (a - b).abs().max() > 1e-4
    mean_model = tiny(rank_scorer="mean")  # the plain average is order-blind
    with torch.no_grad():
        a, b = mean_model(x).logits, mean_model(x.flip(1)).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rank_pooling_identities():
    model = tiny()
    with torch.no_grad():
        rep, scores, contrib = model.representation(clip(b=2), return_contributions=True)
    torch.testing.assert_close(contrib.sum(2) + model.rank.bias[:, None, None], rep)
    torch.testing.assert_close(contrib.mean((-2, -1)), scores)
    torch.testing.assert_close(scores.sum(-1) + model.rank.bias, rep.mean((-2, -1)),
                               atol=1e-5, rtol=1e-5)


@equivalence
def test_rank_pool_equals_conv3d_over_time():
    model = tiny()
    maps = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        rep, _ = model.rank(maps)
        stack = maps.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, h, w, T)
        ref = F.conv3d(stack, model.rank.weight, model.rank.bias, padding=(1, 1, 0))[..., 0]
    torch.testing.assert_close(rep, ref, atol=1e-5, rtol=1e-5)


def test_arp_init_and_coefficients():
    alpha = rank_pooling_coefficients(8)
    expected = [-8.461, -1.461, 1.039, 2.039, 2.289, 2.089, 1.589, 0.875]
    assert torch.allclose(alpha, torch.tensor(expected, dtype=torch.float64), atol=1e-3)
    model = tiny(rank_init="arp")
    centre = model.rank.weight[:, 0, 1, 1, :]
    direction = (alpha / alpha.abs().max()).float()
    assert torch.corrcoef(torch.stack([centre.mean(0), direction]))[0, 1] > 0.99


@equivalence
def test_attention_path_matches_fused_path():
    model = tiny()
    x = clip(b=2)

    def forward(explicit):
        def run(m, xx):
            with torch.no_grad():
                return m(xx, return_attention=explicit)._replace(attentions=None)
        return run

    # SDPA vs explicit einsum-softmax-einsum: other kernels, tests/equivalence.py's bounds
    assert_paths_equivalent(model, x, forward(True), forward(False), "attention path")
    with torch.no_grad():
        explicit = model(x, return_attention=True)
    gra = [b for b in model.encoder.blocks if type(b).__name__ == "GRA"]
    assert len(explicit.attentions) == len(gra) == 4
    for attn, block in zip(explicit.attentions, gra):
        assert attn.ndim == 4 and attn.shape[0] == 2 * 8 and attn.shape[1] == block.attn.heads
        assert (attn >= 0).all()
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]))
    # stage 1: 16x16 tokens, keys pooled over sr^2 = 16 tokens -> 16 key/value tokens
    assert explicit.attentions[0].shape[2:] == (256, 16)


@equivalence
def test_attention_with_frame_loop_matches_batched():
    model = tiny()
    x = clip(b=2)
    with torch.no_grad():
        batched = model(x, return_attention=True)
        model.cfg.frame_loop = True
        looped = model(x, return_attention=True)
    for a, b in zip(batched.attentions, looped.attentions):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.logits, looped.logits, atol=1e-5, rtol=1e-5)


def test_fdp_loss_matches_hand_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, generator=g)
    di = torch.rand(3, 8, 8, generator=g)
    scores = torch.randn(3, 2, 5, generator=g)
    out = FDPOutput(logits, di, scores, torch.zeros(3, 5, 64))
    labels = torch.tensor([0, 2, 3])
    target = torch.rand(3, 8, 8, generator=g)

    ce = -sum(math.log(math.exp(logits[i, labels[i]].item()) / logits[i].exp().sum().item())
              for i in range(3)) / 3
    mse = ((di - target) ** 2).mean().item()
    pairs = [math.log1p(math.exp(-(scores[b, k, j] - scores[b, k, i]).item()))
             for b in range(3) for k in range(2) for i in range(5) for j in range(i + 1, 5)]
    rank = sum(pairs) / len(pairs)

    total, parts = fdp_loss(out, labels, target)
    assert math.isclose(total.item(), ce + 100 * mse, rel_tol=1e-5)
    assert math.isclose(parts["ce"], ce, rel_tol=1e-5)
    assert math.isclose(parts["di"], mse, rel_tol=1e-5) and parts["rank"] == 0.0

    total, parts = fdp_loss(out, labels, target, ce_weight=0.5, di_weight=3, rank_weight=2)
    assert math.isclose(total.item(), 0.5 * ce + 3 * mse + 2 * rank, rel_tol=1e-5)
    assert math.isclose(parts["rank"], rank, rel_tol=1e-5)
    assert math.isclose(chronological_rank_loss(scores).item(), rank, rel_tol=1e-5)

    # no decoder -> no DI term; a larger target is area-averaged to the prediction size
    total, parts = fdp_loss(out._replace(dynamic_image=None), labels, target)
    assert math.isclose(total.item(), ce, rel_tol=1e-5) and parts["di"] == 0.0
    big = target.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    total, _ = fdp_loss(out, labels, big)
    assert math.isclose(total.item(), ce + 100 * mse, rel_tol=1e-5)


def test_rank_loss_prefers_increasing_scores():
    up = torch.arange(6.0).view(1, 1, 6)
    assert chronological_rank_loss(up) < chronological_rank_loss(up.flip(-1))


def test_logits_only_helpers():
    model = tiny()
    x = clip(b=1)
    with torch.no_grad():
        logits = model(x).logits
        torch.testing.assert_close(LogitsOnly(model)(x), logits)
        torch.testing.assert_close(model.forward_logits(x), logits)


def test_config_validation_and_presets():
    assert set(PRESETS) == {"paper", "official", "tiny"}
    assert make_config("official").encoder == "cnn"
    assert make_config("tiny", variant="official").encoder == "cnn"
    with pytest.raises(ValueError):
        make_config("paper", variant="official", encoder="lgfat")
    with pytest.raises(TypeError):
        make_config("tiny", not_a_field=1)
    with pytest.raises(ValueError):
        make_config("nope")
    with pytest.raises(ValueError):
        make_config("tiny", rank_scorer="max")


def test_model_info_tiny():
    info = model_info("tiny", num_classes=5)
    model = build_model("tiny", num_classes=5)
    assert info["params"]["total"] == sum(p.numel() for p in model.parameters())
    parts = sum(v for k, v in info["params"].items() if k != "total")
    assert parts == info["params"]["total"]
    assert 0 < info["flops"]["encoder"] <= info["flops"]["total"]
    assert info["gra_blocks"] == 4
    text = format_model_info("tiny", 5)
    assert "total" in text and f"{info['params']['total']:,}" in text


def test_model_info_cli_entry(capsys):
    import argparse

    from fdpkit.model.info import run_cli

    assert run_cli(argparse.Namespace(preset="tiny", num_classes=3)) == 0
    text = capsys.readouterr().out
    assert "preset 'tiny'" in text and "C=3" in text and "di_decoder" in text
