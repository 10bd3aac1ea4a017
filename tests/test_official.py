"""The `official` variant: released state_dict format, layout facts, frame loop, round trips."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from equivalence import assert_paths_equivalent
from fdpkit.model import (
    build_model,
    load_official_checkpoint,
    official_key_map,
    official_layout,
    to_official_state_dict,
)

equivalence = pytest.mark.equivalence  # compares execution paths: tests/equivalence.py, .ci/run

REFERENCE = Path(__file__).resolve().parents[1] / "data_manifests" / "official_state_dict.csv"


def reference_keys() -> list[tuple[str, tuple[int, ...]]]:
    with open(REFERENCE, newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["key"], tuple(int(v) for v in r["shape"].split("x")) if r["shape"] else ())
            for r in rows]


def clip(b=2, t=8, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 1, size, size, generator=g) * 2 - 1


def calibrate(model, seed=99):
    """BatchNorm running statistics := one random batch's statistics (non-trivial, so BN mistakes
    cannot hide, and the eval-mode model depends on its input), then eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(clip(b=4, t=model.cfg.frames, seed=seed))
    return model.eval()


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return build_model("official", num_classes=5).eval()


def test_reference_list_is_the_released_one():
    rows = reference_keys()
    assert len(rows) == 438
    prefixes = [k.split(".")[0] for k, _ in rows]
    assert prefixes.count("frame_rep") == 255 and prefixes.count("dyimg_net") == 177
    assert prefixes.count("mer") == 6
    shapes = dict(rows)
    assert shapes["mer.conv3d.weight"] == (8, 1, 3, 3, 8)
    assert shapes["mer.fc1.weight"] == (256, 3528)
    assert shapes["frame_rep.proj_head.0.weight"] == (4096, 768)


def test_official_parameter_count(official):
    assert sum(p.numel() for p in official.parameters()) == 85_304_206
    counts = {name: sum(p.numel() for p in getattr(official, name).parameters())
              for name in ("encoder", "rank", "mer_head", "di_decoder")}
    assert counts["encoder"] == 54_952_448
    assert counts["rank"] + counts["mer_head"] == 905_293
    assert counts["di_decoder"] == 29_446_465


def test_official_keys_and_shapes_match_reference(official):
    mapping = official_key_map(official)
    ours = official.state_dict()
    rows = reference_keys()
    assert list(mapping) == [k for k, _ in rows]  # same keys, same order
    assert sorted(mapping.values()) == sorted(ours)  # covers every tensor of ours, once
    for key, shape in rows:
        assert tuple(ours[mapping[key]].shape) == shape, key
    converted = to_official_state_dict(official)
    assert [(k, tuple(v.shape)) for k, v in converted.items()] == rows


def test_official_encoder_has_no_attention(official):
    kinds = {type(b).__name__ for b in official.encoder.blocks}
    assert kinds == {"LRA"} and len(official.encoder.blocks) == 20
    assert all(b.mhca.dense and b.mhca.conv.groups == 1 for b in official.encoder.blocks)
    with torch.no_grad():
        out = official(clip(b=1, t=8), return_attention=True)
    assert out.attentions == []


def test_full_size_round_trip_through_save(official, tmp_path):
    path = tmp_path / "released_format.pth"
    torch.save(to_official_state_dict(official), path)
    loaded = load_official_checkpoint(path)
    assert loaded.cfg.num_classes == 5 and not loaded.training
    a, b = official.state_dict(), loaded.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError):
        load_official_checkpoint(path, num_classes=3)


@equivalence
def test_tiny_official_round_trip_outputs(tmp_path):
    torch.manual_seed(1)
    model = calibrate(build_model("tiny", num_classes=4, variant="official")).eval()
    path = tmp_path / "tiny_official.pth"
    state = to_official_state_dict(model)
    torch.save({"module." + k: v for k, v in state.items()}, path)  # DataParallel-style keys
    loaded = load_official_checkpoint(path, preset="tiny")
    assert loaded.cfg.frame_loop  # loaded checkpoints run the released per-frame loop
    x = clip(b=2)
    with torch.no_grad():
        a, b = model(x), loaded(x)
        loaded.cfg.frame_loop = False
        c = loaded(x)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)  # loop vs batched
    # the same weights through the same path: the same bits on any CPU
    assert torch.equal(a.logits, c.logits) and torch.equal(a.dynamic_image, c.dynamic_image)


@equivalence
def test_frame_loop_matches_batched_in_eval():
    torch.manual_seed(2)
    model = calibrate(build_model("tiny", variant="official")).eval()

    def with_loop(loop):
        def forward(m, x):
            m.cfg.frame_loop = loop
            try:
                with torch.no_grad():
                    return m(x)
            finally:
                m.cfg.frame_loop = False
        return forward

    assert_paths_equivalent(model, clip(b=3), with_loop(True), with_loop(False), "official tiny")


@equivalence
def test_frame_loop_batchnorm_statistics_in_training():
    """frame_loop=True: BatchNorm sees B frames per call (as the released loop), batched: B*T."""
    torch.manual_seed(3)
    looped = build_model("tiny", variant="official", frame_loop=True).train()
    batched = build_model("tiny", variant="official").train()
    batched.load_state_dict(looped.state_dict())
    x = clip(b=4)
    a, b = looped(x).logits, batched(x).logits
    assert (a - b).abs().max() > 1e-4
    # the loop equals running each frame position on its own with training-mode BN
    torch.manual_seed(3)
    reference = build_model("tiny", variant="official").train()
    reference.load_state_dict(batched.state_dict())
    per_frame = torch.stack([reference.encoder(x[:, t])[0] for t in range(8)], 1)
    looped_feats = build_model("tiny", variant="official", frame_loop=True).train()
    looped_feats.load_state_dict(batched.state_dict())
    # the same encoder calls on the same frames, in the same order: the same bits on any CPU
    assert torch.equal(looped_feats.forward_features(x)[0], per_frame)


def test_official_layout_is_the_released_reshape():
    b, t, s = 2, 8, 16
    feats = torch.randn(b, t, s * s)
    released = feats.reshape(-1, 1, s, s, t)  # the released code's reshape
    ours = official_layout(feats, s)
    assert torch.equal(ours, released[:, 0].permute(0, 3, 1, 2))
    # frame k fills rows (s / t) k .. (s / t)(k + 1) - 1
    rows = s // t
    for k in range(t):
        block = released[:, 0, rows * k: rows * (k + 1)]
        assert torch.equal(block.reshape(b, -1), feats[:, k])


@equivalence
def test_official_rank_module_is_the_conv3d():
    """Rank pooling on the layout == Conv3d(1 -> K, (3, 3, T), padding (1, 1, 0)) on the reshape,
    and the MER head == MaxPool3d((3, 3, 1)) -> flatten -> FC -> ReLU -> FC."""
    torch.manual_seed(4)
    model = build_model("tiny", variant="official").eval()
    feats = torch.randn(2, 8, 256)
    with torch.no_grad():
        rep, scores = model.rank(official_layout(feats, 16))
        y = F.conv3d(feats.reshape(-1, 1, 16, 16, 8), model.rank.weight, model.rank.bias,
                     padding=(1, 1, 0))
        assert torch.equal(rep, y[..., 0])  # the official variant runs this very F.conv3d
        # rank scores of the official variant: per kernel-depth position, summing to mean(y)
        torch.testing.assert_close(scores.sum(-1) + model.rank.bias, y.mean((2, 3, 4)),
                                   atol=1e-5, rtol=1e-5)
        head = model.mer_head
        z = F.max_pool3d(y, (3, 3, 1)).flatten(1)
        ref_logits = head.fc2(torch.relu(head.fc1(z)))
        torch.testing.assert_close(head(rep), ref_logits)


def test_loader_rejects_foreign_state_dicts(official):
    with pytest.raises(ValueError):
        load_official_checkpoint(official.state_dict())  # fdpkit keys, not released keys
    state = to_official_state_dict(build_model("tiny", variant="official"))
    state.pop("mer.fc1.bias")
    with pytest.raises(KeyError):
        load_official_checkpoint(state, preset="tiny")
