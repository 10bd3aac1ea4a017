import numpy as np
import pytest
import torch

from fdpkit.data.preprocess.dynamic_image import (
    approximate_rank_pooling,
    dynamic_image_uint8,
    arp_coefficients,
)


def closed_form_alpha(T):
    # alpha_t = sum_{i=t..T} (2i - T - 1) / i, written as a plain double loop.
    return np.array([sum((2 * i - T - 1) / i for i in range(t, T + 1)) for t in range(1, T + 1)])


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 16, 31])
def test_coefficients_match_closed_form(T):
    np.testing.assert_allclose(arp_coefficients(T), closed_form_alpha(T), atol=1e-12)


def test_coefficients_for_eight_frames_match_reference_values():
    expected = [-8.461, -1.461, 1.039, 2.039, 2.289, 2.089, 1.589, 0.875]
    np.testing.assert_allclose(arp_coefficients(8), expected, atol=5e-4)


@pytest.mark.parametrize("shape", [(4, 5, 6), (8, 5, 6, 3), (11, 3, 2)])
def test_pooling_is_weighted_sum_over_first_axis(shape):
    rng = np.random.default_rng(0)
    frames = rng.random(shape)
    alpha = closed_form_alpha(shape[0])
    expected = sum(alpha[t] * frames[t] for t in range(shape[0]))
    np.testing.assert_allclose(approximate_rank_pooling(frames), expected, atol=1e-10)
    tensor = torch.from_numpy(frames)
    np.testing.assert_allclose(approximate_rank_pooling(tensor).numpy(), expected, atol=1e-10)


def test_static_clip_gives_zero_motion():
    # The coefficients sum to zero, so a clip without change has an all-zero dynamic image.
    frames = np.repeat(np.random.default_rng(1).random((1, 6, 6)), 8, axis=0)
    np.testing.assert_allclose(approximate_rank_pooling(frames), 0, atol=1e-12)


def test_later_frames_weigh_more_than_first():
    # A clip that brightens over time has a positive DI; a darkening one a negative DI.
    ramp = np.linspace(0, 1, 8)[:, None, None] * np.ones((8, 4, 4))
    assert (approximate_rank_pooling(ramp) > 0).all()
    assert (approximate_rank_pooling(ramp[::-1]) < 0).all()


def test_normalize_is_per_sample_min_max_to_255():
    frames = np.random.default_rng(2).random((8, 7, 9))
    image = approximate_rank_pooling(frames, normalize=True)
    assert image.min() == pytest.approx(0) and image.max() == pytest.approx(255)
    raw = approximate_rank_pooling(frames)
    np.testing.assert_allclose(image, (raw - raw.min()) / (raw.max() - raw.min()) * 255)
    image_t = approximate_rank_pooling(torch.from_numpy(frames), normalize=True)
    np.testing.assert_allclose(image_t.numpy(), image, atol=1e-9)


def test_normalize_constant_image_is_zero_not_nan():
    frames = np.ones((8, 3, 3))
    assert np.all(approximate_rank_pooling(frames, normalize=True) == 0)


def test_uint8_target_matches_float_pipeline():
    frames = np.random.default_rng(3).integers(0, 256, (8, 5, 5), dtype=np.uint8)
    target = dynamic_image_uint8(frames)
    assert target.dtype == np.uint8 and target.min() == 0 and target.max() == 255
    expected = np.rint(approximate_rank_pooling(frames / 255.0, normalize=True))
    np.testing.assert_array_equal(target, expected.astype(np.uint8))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError):
        approximate_rank_pooling(np.zeros((3, 3)))
