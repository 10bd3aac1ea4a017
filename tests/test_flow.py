"""Optical flow and optical strain (fdpkit/data/preprocess/flow.py) on synthetic images with known motion.

The test image is a sum of 12 sinusoidal gratings (periods 6-24 px, random orientations), evaluated
analytically at the moved coordinates and rounded to uint8, so a sub-pixel translation or a zoom is
exact up to the rounding (+-0.5 grey levels) and the only error is the estimator's.

Tolerances: a recovered translation's median u and v (inside an 8-pixel margin, where every method
has support on both frames) must lie within 0.1 px of the truth. That is a tenth of a pixel: small
against every shift tested (0.25-3 px: a zero, halved or sign-flipped flow fails), and about twice
the largest error measured for any method here (DIS 0.3 -> 0.35 px, TV-L1 0.25 -> 0.21 px, Farneback
< 0.01 px, at 64x64 and 128x128). Strain of the estimated flow of a pure translation is median
< 0.01 inside (measured 0.001-0.003; a 1% zoom gives 0.014); a 5% zoom's is within 15% of
sqrt(2) x 0.05 (measured errors -5% .. +3%).
"""

from __future__ import annotations

import numpy as np
import pytest

from fdpkit.data.preprocess import flow as fl
from fdpkit.errors import BadInput

CORE_METHODS = ("farneback", "dis")
TVL1 = pytest.mark.skipif(not fl.has_tvl1(), reason=f"TV-L1 needs {fl.CONTRIB_REQUIREMENT} (cv2.optflow)")
MARGIN = 8


def texture(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Grey uint8 image sum-of-gratings evaluated at coordinates (x, y)."""
    rng = np.random.default_rng(seed)
    image = np.full(x.shape, 128.0)
    for _ in range(12):
        period, angle, phase = rng.uniform(6, 24), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        fx, fy = np.cos(angle) / period, np.sin(angle) / period
        image += rng.uniform(6, 14) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    return x, y


def translated_pair(n: int, dx: float, dy: float):
    """b shows a's content moved by (+dx, +dy): flow a -> b is (u, v) = (dx, dy)."""
    x, y = grid(n)
    return texture(x, y), texture(x - dx, y - dy)


def interior(array: np.ndarray, margin: int = MARGIN) -> np.ndarray:
    return array[margin:-margin, margin:-margin]


SHIFTS = [(1.0, -0.5), (0.3, 0.7), (2.0, 1.5), (-3.0, 0.25)]


def check_translation(method: str, n: int, dx: float, dy: float) -> None:
    a, b = translated_pair(n, dx, dy)
    flow = fl.optical_flow(a, b, method)
    assert flow.shape == (n, n, 2) and flow.dtype == np.float32
    u, v = interior(flow[..., 0]), interior(flow[..., 1])
    assert abs(np.median(u) - dx) < 0.1 and abs(np.median(v) - dy) < 0.1, (np.median(u), np.median(v))
    assert np.median(interior(fl.optical_strain(flow))) < 0.01


@pytest.mark.parametrize("method", CORE_METHODS)
@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("dx, dy", SHIFTS)
def test_core_methods_recover_a_known_translation(method, n, dx, dy):
    check_translation(method, n, dx, dy)


@TVL1
@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("dx, dy", SHIFTS)
def test_tvl1_recovers_a_known_translation(n, dx, dy):
    check_translation("tvl1", n, dx, dy)


def test_the_flow_of_identical_frames_is_zero_and_the_reverse_flow_is_negated():
    a, b = translated_pair(64, 1.5, -1.0)
    for method in CORE_METHODS:
        assert np.abs(interior(fl.optical_flow(a, a, method))).max() < 0.05
        back = np.median(interior(fl.optical_flow(b, a, method)).reshape(-1, 2), axis=0)
        assert back == pytest.approx([-1.5, 1.0], abs=0.1)


# ----------------------------------------------------------------------------- strain
def analytic_flow(n: int, du_dx: float, du_dy: float, dv_dx: float, dv_dy: float) -> np.ndarray:
    """Affine flow about the centre with the given (constant) derivatives."""
    x, y = grid(n)
    c = (n - 1) / 2
    u = du_dx * (x - c) + du_dy * (y - c) + 3.0  # + a translation, which must not matter
    v = dv_dx * (x - c) + dv_dy * (y - c) - 1.0
    return np.stack([u, v], axis=-1).astype(np.float32)


def test_strain_of_a_pure_translation_is_zero():
    flow = analytic_flow(32, 0, 0, 0, 0)
    assert np.all(fl.optical_strain(flow) == 0)


@pytest.mark.parametrize("du_dx, du_dy, dv_dx, dv_dy, expected", [
    (0.05, 0, 0, 0.05, np.sqrt(2) * 0.05),  # zoom by 1.05: e_xx = e_yy = 0.05
    (0, 0.2, 0, 0, np.sqrt(2 * 0.1 ** 2)),  # shear u = 0.2 y: e_xy = e_yx = 0.1
    (np.cos(0.1) - 1, -np.sin(0.1), np.sin(0.1), np.cos(0.1) - 1,  # rotation by 0.1 rad: no shear,
     np.sqrt(2) * (1 - np.cos(0.1))),  # e_xx = e_yy = cos t - 1 (infinitesimal strain of a rotation)
    (0.03, 0.01, 0.05, -0.02, np.sqrt(0.03 ** 2 + 0.02 ** 2 + 2 * 0.03 ** 2)),  # e_xy = (0.01 + 0.05)/2
])
def test_strain_of_affine_flows_matches_the_tensor_magnitude(du_dx, du_dy, dv_dx, dv_dy, expected):
    strain = fl.optical_strain(analytic_flow(24, du_dx, du_dy, dv_dx, dv_dy))
    assert strain.shape == (24, 24) and strain.dtype == np.float32
    assert strain == pytest.approx(np.full((24, 24), expected), abs=1e-6)  # affine: exact up to the border too


@pytest.mark.parametrize("method", CORE_METHODS + (pytest.param("tvl1", marks=TVL1),))
def test_estimated_flow_of_a_zoom_has_the_zoom_strain(method):
    n, s = 64, 1.05
    x, y = grid(n)
    c = (n - 1) / 2
    a, b = texture(x, y), texture(c + (x - c) / s, c + (y - c) / s)  # b = a enlarged about the centre
    strain = interior(fl.optical_strain(fl.optical_flow(a, b, method)), 12)
    assert np.median(strain) == pytest.approx(np.sqrt(2) * (s - 1), rel=0.15)


# ----------------------------------------------------------------------------- model inputs
@pytest.mark.parametrize("method", CORE_METHODS + (pytest.param("tvl1", marks=TVL1),))
def test_flow_inputs_scale_the_vectors_to_the_model_grid(method):
    """A (4, 2) px shift on 112x112 frames is (1, 0.5) px on STSTNet's 28x28 grid; strain stays ~0."""
    a, b = translated_pair(112, 4.0, 2.0)
    inputs = fl.flow_inputs(a, b, size=28, method=method)
    assert inputs.shape == (3, 28, 28) and inputs.dtype == np.float32
    inside = inputs[:, 3:-3, 3:-3].reshape(3, -1)
    assert np.median(inside, axis=1) == pytest.approx([1.0, 0.5, 0.0], abs=0.03)


def test_flow_inputs_enlarging_scales_up_and_keeps_channel_order():
    a, b = translated_pair(32, 1.0, 0.0)
    inputs = fl.flow_inputs(a, b, size=64, method="farneback")
    assert inputs.shape == (3, 64, 64)
    assert np.median(inputs[0, 16:-16, 16:-16]) == pytest.approx(2.0, abs=0.1)
    assert np.median(inputs[1, 16:-16, 16:-16]) == pytest.approx(0.0, abs=0.1)


# ----------------------------------------------------------------------------- bad input
def frame(n=32, dtype=np.uint8):
    return np.zeros((n, n), dtype=dtype)


@pytest.mark.parametrize("a, b, message", [
    (frame(32), frame(48), "differ in size .*32x32 and 48x48"),
    (frame(32, np.float32), frame(32), "dtype float32; give grey uint8"),
    (frame(32), frame(32, np.uint16), "dtype uint16"),
    (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), r"shape \(32, 32, 3\); give one grey frame"),
    ([[0] * 32] * 32, frame(32), "numpy array .* got list"),
    (frame(4), frame(4), "at least 8x8"),
])
def test_bad_frames_are_refused_with_one_clear_message(a, b, message):
    with pytest.raises(BadInput, match=message):
        fl.optical_flow(a, b, "farneback")


def test_unknown_method_and_bad_sizes_are_refused():
    with pytest.raises(BadInput, match="unknown method 'raft'; choose one of tvl1, farneback, dis"):
        fl.optical_flow(frame(), frame(), "raft")
    for size in (0, -3, 2.5, True):
        with pytest.raises(BadInput, match="size must be a positive whole number"):
            fl.flow_inputs(frame(), frame(), size=size, method="dis")
    with pytest.raises(BadInput, match=r"flow must have shape \(H, W, 2\)"):
        fl.optical_strain(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(BadInput, match="flow must hold floats"):
        fl.optical_strain(np.zeros((8, 8, 2), np.int32))


def test_tvl1_without_the_contrib_module_names_the_package(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "optflow", raising=False)
    assert not fl.has_tvl1()
    with pytest.raises(BadInput, match=r"needs OpenCV's contrib module cv2.optflow.*"
                                       r"opencv-contrib-python-headless==5\.0\.0\.93.*'farneback' or 'dis'"):
        fl.optical_flow(frame(), frame(), "tvl1")
