"""Attribution: IG completeness, per-frame mass, region shares, attention roll-out."""

import numpy as np
import pytest
import torch

from fdpkit.explain import attribution as A
from fdpkit.explain import regions as R
from fdpkit.explain import rollout
from fdpkit.model import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("tiny", num_classes=5)
    # a fresh model in eval mode shrinks every activation (BatchNorm running stats at their
    # initial values, std .02 weights): calibrate BatchNorm on random clips and give the linear
    # layers a trained scale, so that logits depend on the input
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 1.0 / module.in_features ** 0.5)
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.momentum = None  # cumulative average
        m.train()
        for _ in range(3):
            m(torch.rand(4, 8, 1, 64, 64) * 2 - 1)
    return m.eval()


@pytest.fixture(scope="module")
def clip():
    g = torch.Generator().manual_seed(1)
    onset = torch.rand(1, 1, 1, 64, 64, generator=g) * 2 - 1
    motion = torch.linspace(0, 1, 8).view(1, 8, 1, 1, 1) * 0.5 * torch.rand(1, 1, 1, 64, 64, generator=g)
    return (onset + motion).clamp(-1, 1)


def test_integrated_gradients_completeness(model, clip):
    target = 2
    attributions, delta = A.integrated_gradients(model, clip, target=target, baseline="zeros",
                                                 n_steps=32, return_delta=True)
    assert attributions.shape == clip.shape
    with torch.no_grad():
        difference = float(model(clip).logits[0, target] - model(torch.zeros_like(clip)).logits[0, target])
    total = float(attributions.sum())
    assert abs(difference) > 1e-3
    assert total == pytest.approx(difference, rel=0.05, abs=1e-3)
    assert abs(float(delta[0])) < 0.05 * abs(difference) + 1e-3


def test_onset_baseline_attributes_no_motion_to_a_static_clip(model, clip):
    static = clip[:, :1].expand_as(clip).clone()
    attributions = A.integrated_gradients(model, static, target=0, baseline="onset", n_steps=4)
    assert float(attributions.abs().sum()) == 0.0


def test_frame_mass_sums_to_one(model, clip):
    maps = A.explain(model, clip, ("integrated_gradients", "saliency"), ig_steps=8)
    for method, values in maps.items():
        assert values.shape == (1, 8, 64, 64) and (values >= 0).all(), method
        mass = A.frame_mass(values)
        assert mass.shape == (1, 8)
        np.testing.assert_allclose(mass.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(A.frame_mass(np.zeros((8, 4, 4))), np.full(8, 1 / 8))


def test_region_share_bounds_and_extremes():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 16, 16))
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:12] = True
    share = R.region_share(image, mask)
    assert 0.0 <= share <= 1.0
    assert R.region_share(image, np.ones_like(mask)) == pytest.approx(1.0)
    assert R.region_share(image, np.zeros_like(mask)) == 0.0
    assert R.area_share(mask) == pytest.approx(32 / 256)
    face = np.zeros_like(mask)
    face[:, :8] = True
    assert R.area_share(mask, face) == pytest.approx(16 / 128)
    scores = R.region_scores(np.abs(image), mask, face)
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_warp_mask_identity_and_scale():
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:40] = True
    np.testing.assert_array_equal(R.warp_mask(mask, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 64), mask)
    half = R.warp_mask(mask, np.array([[0.5, 0, 0], [0, 0.5, 0]]), 32)
    assert half.sum() == pytest.approx(25, abs=10) and half[7, 17]


def test_rank_attribution_completeness(model, clip):
    result = A.rank_attribution(model, clip, target=1, n_steps=32)
    assert result["contributions"].shape == (1, 4, 8)
    assert result["frames"].shape == (1, 8)
    with torch.no_grad():
        _, _, contrib = model.representation(clip, return_contributions=True)
        pooled0 = torch.zeros_like(contrib).sum(dim=2) + model.rank.bias[:, None, None]
        difference = float(model(clip).logits[0, 1] - model.mer_head(pooled0)[0, 1])
    assert float(result["contributions"].sum()) == pytest.approx(difference, rel=0.05, abs=1e-3)


def test_rollout_rows_sum_to_one(model, clip):
    attentions = model(clip, return_attention=True).attentions
    joint = rollout.rollout_matrix(attentions, rollout.gra_kernels(model))
    assert joint.shape[0] == 8 and joint.shape[-1] == attentions[0].shape[-2]
    np.testing.assert_allclose(joint.sum(dim=-1).numpy(), 1.0, rtol=1e-5)
    assert (joint >= 0).all()
    maps = rollout.attention_maps(model, clip)
    assert maps.shape == (1, 8, 64, 64)
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, rtol=1e-5)


def test_rollout_of_synthetic_attention_with_spatial_reduction():
    torch.manual_seed(0)
    first = torch.softmax(torch.randn(3, 2, 16, 4), dim=-1)   # 4x4 grid, keys pooled by 4
    second = torch.softmax(torch.randn(3, 1, 4, 4), dim=-1)   # 2x2 grid
    joint = rollout.rollout_matrix([first, second], [4, 1], residual=0.3)
    assert joint.shape == (3, 4, 16)
    np.testing.assert_allclose(joint.sum(dim=-1).numpy(), 1.0, rtol=1e-6)


def test_model_without_attention_says_so():
    cnn = build_model("tiny", num_classes=3, encoder="cnn").eval()
    assert rollout.gra_kernels(cnn) == []
    with pytest.raises(ValueError, match="no GRA block"):
        rollout.rollout_matrix([])


def test_class_average_maps_are_normalised():
    maps = np.random.default_rng(0).random((6, 8, 8, 8))
    out = A.class_average_maps(maps, [0, 0, 1, 1, 1, 0], ["a", "b", "c"])
    assert set(out) == {"a", "b"}
    for image in out.values():
        assert image.shape == (8, 8) and image.sum() == pytest.approx(1.0)


def test_occlusion_and_saliency_shapes(model, clip):
    occluded = A.occlusion(model, clip, target=0, window=32)
    assert occluded.shape == clip.shape
    assert float(occluded[:, 0].abs().sum()) == 0.0  # frame 0 equals the onset baseline
    assert A.saliency(model, clip, target=0).shape == clip.shape
    with pytest.raises(ValueError, match="unknown attribution method"):
        A.attribute(model, clip, "lime")


def test_region_table_names_methods_that_fail_the_chance_check():
    """A map concentrated in the region beats chance; a uniform map only equals it and fails."""
    t, size = 4, 16
    region = np.zeros((t, size, size), bool)
    region[:, 4:8, 4:8] = True
    face = np.ones((t, size, size), bool)
    inside = np.where(region, 1.0, 0.05)
    records = [{"maps": {"focused": inside, "uniform": np.ones((t, size, size))}, "attention": None}
               for _ in range(3)]
    table = R.region_score_table(records, [(region, face)] * 3, ["focused", "uniform"]).set_index("method")
    assert table.loc["focused", "verdict"] == "better than chance" and table.loc["focused", "clips_above_chance"] == 3
    assert table.loc["uniform", "attribution_share_face"] == pytest.approx(table.loc["uniform", "area_share_face"])
    assert table.loc["uniform", "verdict"].startswith("FAILS") and table.loc["uniform", "lift"] == pytest.approx(1.0)
    assert R.region_verdict(float("nan"), 0.2, 0, 3).startswith("FAILS")
    assert R.region_verdict(0.5, 0.2, 1, 3).startswith("FAILS")  # most clips below chance
