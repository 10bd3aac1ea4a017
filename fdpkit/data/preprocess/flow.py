"""Onset -> apex optical flow and optical strain: the inputs of the field's flow baselines.

Pure functions on aligned grey frames (uint8, (H, W)); the cache, the dataset and the runner call
them, this module knows nothing of files.

* `optical_flow(a, b, method)` -> (H, W, 2) float32 (u, v) in pixels, OpenCV's convention: the
  content at (x, y) in ``a`` is found at (x + u, y + v) in ``b`` (so a = onset, b = apex gives the
  motion of the expression). Methods:

  - ``"tvl1"``: Dual TV-L1 (Zach, Pock and Bischof 2007; Wedel et al. 2009), OpenCV's
    ``cv2.optflow.DualTVL1OpticalFlow_create`` with OpenCV's default parameters (`PARAMS`). This is
    what STSTNet (Liong et al. 2019, arXiv:1902.03634) and OFF-ApexNet (Gan et al. 2019, Signal
    Processing: Image Communication 74) describe for their onset-apex flow. It lives in OpenCV's
    *contrib* build: `CONTRIB_REQUIREMENT` (which ships the same ``cv2`` plus ``cv2.optflow``)
    replaces ``opencv-python-headless``; without it ``"tvl1"`` raises `BadInput` naming the package.
  - ``"farneback"``: Farnebäck's polynomial expansion (2003), ``cv2.calcOpticalFlowFarneback``, core
    OpenCV.
  - ``"dis"``: Dense Inverse Search (Kroeger et al. 2016), ``cv2.DISOpticalFlow``, core OpenCV,
    preset MEDIUM.

* `optical_strain(flow)` -> (H, W) float32: the magnitude of the infinitesimal strain tensor
  ``eps = 1/2 (grad w + grad w^T)`` of the flow field w = (u, v), as STSTNet uses it (its optical
  strain input, following Shreve et al. 2011 and Liong et al. 2018):
  ``|eps| = sqrt(e_xx^2 + e_yy^2 + e_xy^2 + e_yx^2)`` with ``e_xx = du/dx``, ``e_yy = dv/dy``,
  ``e_xy = e_yx = 1/2 (du/dy + dv/dx)``, i.e. ``sqrt(e_xx^2 + e_yy^2 + 2 (1/2 (du/dy + dv/dx))^2)``.
  Derivatives are `numpy.gradient` (central differences inside, one-sided at the border), in pixels.
  A translation has zero strain; a rotation by a small angle t has e_xy = 0 and e_xx = e_yy =
  cos t - 1 (near 0); a zoom by factor s has e_xx = e_yy = s - 1.

* `flow_inputs(onset, apex, size, method)` -> (3, size, size) float32 channels (u, v, strain): flow
  and strain are computed at the frames' resolution, then resized to ``size`` x ``size`` (area
  averaging when shrinking, bilinear when enlarging). Resizing a displacement field changes its
  unit: u is multiplied by ``size / W`` and v by ``size / H`` so both stay in pixels of the
  resized grid (a 4-pixel shift on a 112-pixel face is a 1-pixel shift at 28). Strain is a ratio of
  displacement to distance, so it is resized without scaling. No normalisation is applied here
  (STSTNet's public reproductions min-max scale each channel; a model does that itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from einops import rearrange

from fdpkit.errors import BadInput

METHODS = ("tvl1", "farneback", "dis")
# The pin checked to ship cv2.optflow.DualTVL1OpticalFlow_create (same release as the core wheel).
CONTRIB_REQUIREMENT = "opencv-contrib-python-headless==5.0.0.93"
MIN_SIDE = 8  # pixels; smaller frames have no interior for the pyramids and the strain
# Every parameter that changes the flow (a cache keying the flow hashes these).
PARAMS: dict[str, dict[str, Any]] = {
    "tvl1": {"tau": 0.25, "lambda": 0.15, "theta": 0.3, "nscales": 5, "warps": 5, "epsilon": 0.01,
             "inner_iterations": 30, "outer_iterations": 10, "scale_step": 0.8, "gamma": 0.0,
             "median_filtering": 5},
    "farneback": {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
                  "poly_sigma": 1.2},
    "dis": {"preset": "medium"},
}


# ----------------------------------------------------------------------------- checks
def _check_frame(name: str, frame) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise BadInput(f"optical flow: {name} must be a numpy array of grey uint8 pixels, got "
                       f"{type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise BadInput(f"optical flow: {name} has dtype {frame.dtype}; give grey uint8 frames (0..255), "
                       "e.g. the aligned frames of the clip cache")
    if frame.ndim != 2:
        raise BadInput(f"optical flow: {name} has shape {frame.shape}; give one grey frame (H, W), "
                       "not colour or a stack")
    if min(frame.shape) < MIN_SIDE:
        raise BadInput(f"optical flow: {name} is {frame.shape[1]}x{frame.shape[0]} pixels; frames need "
                       f"at least {MIN_SIDE}x{MIN_SIDE}")
    return np.ascontiguousarray(frame)


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_frame("the first frame (onset)", a), _check_frame("the second frame (apex)", b)
    if a.shape != b.shape:
        raise BadInput(f"optical flow: the frames differ in size ({a.shape[1]}x{a.shape[0]} and "
                       f"{b.shape[1]}x{b.shape[0]} pixels); give two aligned frames of one clip")
    return a, b


def _cv2():
    import cv2  # lazy: the CLI imports METHODS from here for --flow's choices

    return cv2


def has_tvl1() -> bool:
    """Whether this OpenCV ships TV-L1 (the contrib module cv2.optflow)."""
    optflow = getattr(_cv2(), "optflow", None)
    return optflow is not None and hasattr(optflow, "DualTVL1OpticalFlow_create")


# ----------------------------------------------------------------------------- flow
def _tvl1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if not has_tvl1():
        raise BadInput(f"optical flow method 'tvl1' needs OpenCV's contrib module cv2.optflow, which this "
                       f"OpenCV {cv2.__version__} lacks: replace opencv-python-headless with "
                       f"{CONTRIB_REQUIREMENT} (pip uninstall opencv-python-headless; pip install "
                       f"'{CONTRIB_REQUIREMENT}'), or choose 'farneback' or 'dis'")
    p = PARAMS["tvl1"]
    solver = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=p["tau"], lambda_=p["lambda"], theta=p["theta"], nscales=p["nscales"], warps=p["warps"],
        epsilon=p["epsilon"], innnerIterations=p["inner_iterations"],
        outerIterations=p["outer_iterations"], scaleStep=p["scale_step"], gamma=p["gamma"],
        medianFiltering=p["median_filtering"])
    return solver.calc(a, b, None)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p = PARAMS["farneback"]
    return _cv2().calcOpticalFlowFarneback(a, b, None, p["pyr_scale"], p["levels"], p["winsize"],
                                           p["iterations"], p["poly_n"], p["poly_sigma"], 0)


def _dis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    presets = {"ultrafast": cv2.DISOpticalFlow_PRESET_ULTRAFAST, "fast": cv2.DISOpticalFlow_PRESET_FAST,
               "medium": cv2.DISOpticalFlow_PRESET_MEDIUM}
    return cv2.DISOpticalFlow_create(presets[PARAMS["dis"]["preset"]]).calc(a, b, None)


_SOLVERS = {"tvl1": _tvl1, "farneback": _farneback, "dis": _dis}


def optical_flow(a, b, method: str = "tvl1") -> np.ndarray:
    """Dense flow from frame ``a`` to frame ``b`` (aligned grey uint8, same shape): (H, W, 2) float32
    (u, v) in pixels; see the module doc for the methods and the convention."""
    if method not in _SOLVERS:
        raise BadInput(f"optical flow: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    a, b = _check_pair(a, b)
    flow = np.asarray(_SOLVERS[method](a, b), dtype=np.float32)
    if flow.shape != (*a.shape, 2):  # OpenCV's contract; anything else is a bug, not user input
        raise RuntimeError(f"{method} returned flow of shape {flow.shape} for frames {a.shape}")
    return flow


# ----------------------------------------------------------------------------- strain
def optical_strain(flow) -> np.ndarray:
    """Magnitude of the strain tensor of a (H, W, 2) flow field (module doc): (H, W) float32."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2 or min(flow.shape[:2]) < 2:
        raise BadInput(f"optical strain: flow must have shape (H, W, 2) with H, W >= 2, got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise BadInput(f"optical strain: flow must hold floats (pixels), got dtype {flow.dtype}")
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    du_dy, du_dx = np.gradient(u)  # axis 0 is y (rows), axis 1 is x (columns)
    dv_dy, dv_dx = np.gradient(v)
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx ** 2 + dv_dy ** 2 + 2.0 * shear ** 2).astype(np.float32)


# ----------------------------------------------------------------------------- model inputs
def resize_flow(flow: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 2) flow -> (size, size, 2), u scaled by size/W and v by size/H (still in pixels)."""
    h, w = flow.shape[:2]
    resized = _resize(flow, size)
    return (resized * np.array([size / w, size / h], dtype=np.float32)).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    cv2 = _cv2()
    shrink = size < min(image.shape[:2])
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def flow_inputs(onset, apex, size: int = 28, method: str = "tvl1") -> np.ndarray:
    """(3, size, size) float32 channels (u, v, optical strain) of the onset -> apex flow, at a model's
    resolution (STSTNet: 28; module doc for how resizing scales the flow)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise BadInput(f"flow inputs: size must be a positive whole number of pixels, got {size!r}")
    flow = optical_flow(onset, apex, method)
    strain = optical_strain(flow)
    stacked = np.concatenate([resize_flow(flow, int(size)), _resize(strain, int(size))[..., None]], axis=-1)
    return np.ascontiguousarray(rearrange(stacked, "h w c -> c h w"), dtype=np.float32)


__all__ = ["METHODS", "PARAMS", "CONTRIB_REQUIREMENT", "has_tvl1", "optical_flow", "optical_strain",
           "resize_flow", "flow_inputs"]
