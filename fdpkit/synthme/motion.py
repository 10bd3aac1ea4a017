"""SynthME motion: action-unit-like displacement fields, time profiles and motion distractors.

Pure numpy, no I/O. Every motion is a smooth displacement field built from Gaussian bumps anchored
on the 68 dlib landmarks of the subject's neutral face, in frame pixels. A frame is rendered by
backward warping, ``frame(x) = base(x - d(x))``, so image content moves by about ``+d``.

Conventions: image x to the right, y down. "Face frame" = x along the line from the image-left eye
to the image-right eye, y perpendicular to it (down the face); bump directions and offsets are
given in the face frame and rotated with the subject's head. Sizes (sigma, offsets) are in pixels at
a 128 px face (jaw width, landmark 0 to 16) and scale with the subject's face width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_FACE_WIDTH = 128.0  # px: amplitudes and bump sizes are stated at this face width
REGION_THRESHOLD = 0.10  # ground-truth region: |unit field| > 10 % of its peak


@dataclass(frozen=True)
class Bump:
    """One Gaussian bump of displacement: centre = mean of landmarks + offset, both in the face frame."""

    anchor: tuple[int, ...]
    direction: tuple[float, float]
    sigma: float = 8.0
    weight: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    side: int = 0  # -1 image-left half of the face, +1 image-right, 0 midline (for asymmetry)


def _pair(left: tuple[int, ...], right: tuple[int, ...], direction, **kw) -> tuple[Bump, Bump]:
    """A bilateral pair: `direction` is given for the image-left side and mirrored for the right."""
    dx, dy = direction
    ox, oy = kw.pop("offset", (0.0, 0.0))
    return (
        Bump(left, (dx, dy), offset=(ox, oy), side=-1, **kw),
        Bump(right, (-dx, dy), offset=(-ox, oy), side=+1, **kw),
    )


_S = 0.7071  # sin 45 deg
# Action units as displacement patterns (FACS names; directions are where the skin moves).
AU_BUMPS: dict[str, tuple[Bump, ...]] = {
    # inner brow raiser: inner brow ends up
    "1": _pair((20, 21), (22, 23), (0.0, -1.0), sigma=9.0),
    # outer brow raiser: outer brow up
    "2": _pair((17, 18, 19), (24, 25, 26), (0.0, -1.0), sigma=9.0),
    # brow lowerer: inner brows down and together
    "4": _pair((20, 21), (22, 23), (0.5, 0.85), sigma=8.0),
    # cheek raiser: cheek below the lower lid up (weaker than the lip-corner pull it comes with)
    "6": _pair((40, 41), (46, 47), (0.0, -1.0), sigma=8.0, weight=0.6, offset=(0.0, 12.0)),
    # lid tightener: lower lids up
    "7": _pair((40, 41), (46, 47), (0.0, -1.0), sigma=5.0),
    # nose wrinkler: nose wings up, the upper lip follows a little
    "9": _pair((31,), (35,), (0.0, -1.0), sigma=7.0)
    + (Bump((50, 51, 52), (0.0, -1.0), sigma=7.0, weight=0.5),),
    # lip corner puller: mouth corners out and up
    "12": _pair((48,), (54,), (-_S, -_S), sigma=8.0),
    # dimpler: mouth corners tightened inwards
    "14": _pair((48,), (54,), (0.95, -0.3), sigma=7.0),
    # lip corner depressor: mouth corners down
    "15": _pair((48,), (54,), (-0.2, 0.98), sigma=8.0),
    # chin raiser: chin boss and lower lip up
    "17": (Bump((8,), (0.0, -1.0), sigma=10.0, offset=(0.0, -6.0)), Bump((57,), (0.0, -1.0), sigma=8.0, weight=0.7)),
    # jaw drop (small): lower lip and chin down
    "26": (Bump((57,), (0.0, 1.0), sigma=9.0), Bump((8,), (0.0, 1.0), sigma=11.0, offset=(0.0, -6.0), weight=0.8)),
    # nostril dilator: nose wings outwards
    "38": _pair((31,), (35,), (-1.0, 0.0), sigma=5.0),
}
AU_REGION = {
    "1": "brows", "2": "brows", "4": "brows", "6": "cheeks", "7": "eyelids", "9": "nose", "12": "mouth",
    "14": "mouth", "15": "mouth", "17": "chin", "26": "chin", "38": "nose",
}
# A blink (distractor, no class information): upper lids down.
BLINK_BUMPS: tuple[Bump, ...] = _pair((37, 38), (43, 44), (0.0, 1.0), sigma=4.0)

# Classes modelled on CASME II: AU combinations and their probabilities within the class.
CLASS_AUS: dict[str, tuple[tuple[str, float], ...]] = {
    "happiness": (("12", 0.55), ("6+12", 0.45)),
    "disgust": (("4", 0.35), ("9", 0.25), ("4+9", 0.40)),
    "surprise": (("1+2", 0.75), ("1", 0.25)),
    "repression": (("14", 0.25), ("15", 0.25), ("17", 0.20), ("15+17", 0.30)),
    "others": (("7", 0.35), ("26", 0.35), ("38", 0.30)),
}
# CASME II-like class frequencies (5-class protocol, 247 clips: others 99, disgust 63, happiness 32,
# repression 27, surprise 25), rounded.
CLASS_FREQUENCIES: dict[str, float] = {
    "others": 0.40, "disgust": 0.25, "happiness": 0.13, "repression": 0.11, "surprise": 0.10,
}
CLASSES = tuple(CLASS_FREQUENCIES)


def split_aus(aus: str) -> list[str]:
    return [a for a in str(aus).split("+") if a]


def region_name(aus: str) -> str:
    names: list[str] = []
    for au in split_aus(aus):
        if AU_REGION[au] not in names:
            names.append(AU_REGION[au])
    return "+".join(names)


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(unit x axis, unit y axis, scale) of the face: x from the image-left eye to the image-right eye,
    scale = jaw width / 128."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ex = lm[42:48].mean(0) - lm[36:42].mean(0)
    ex /= np.linalg.norm(ex)
    ey = np.array([-ex[1], ex[0]])
    scale = float(np.linalg.norm(lm[16] - lm[0]) / REFERENCE_FACE_WIDTH)
    return ex, ey, scale


def place_bumps(landmarks: np.ndarray, bumps, side_weights=(1.0, 1.0)):
    """Bumps -> (centres (K, 2), vectors (K, 2), sigmas (K,)) in frame pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ex, ey, scale = face_frame(lm)
    centres, vectors, sigmas = [], [], []
    for bump in bumps:
        side_weight = {-1: side_weights[0], 0: 1.0, 1: side_weights[1]}[bump.side]
        centre = lm[list(bump.anchor)].mean(0) + scale * (bump.offset[0] * ex + bump.offset[1] * ey)
        direction = np.asarray(bump.direction, dtype=np.float64)
        direction = direction / np.linalg.norm(direction)
        centres.append(centre)
        vectors.append(bump.weight * side_weight * (direction[0] * ex + direction[1] * ey))
        sigmas.append(bump.sigma * scale)
    return np.array(centres).reshape(-1, 2), np.array(vectors).reshape(-1, 2), np.array(sigmas)


def gaussian_sum(centres, vectors, sigmas, shape) -> np.ndarray:
    """sum_k vectors[k] * exp(-|x - centres[k]|^2 / (2 sigma_k^2)) on the pixel grid: (2, H, W) float64.

    Separable, so a bump costs two 1-D exponentials and an outer product."""
    height, width = shape
    xs, ys = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    field = np.zeros((2, height, width))
    for (cx, cy), (vx, vy), sigma in zip(centres, vectors, sigmas):
        bump = np.outer(np.exp(-0.5 * ((ys - cy) / sigma) ** 2), np.exp(-0.5 * ((xs - cx) / sigma) ** 2))
        field[0] += vx * bump
        field[1] += vy * bump
    return field


def gaussian_sum_at(centres, vectors, sigmas, points) -> np.ndarray:
    """The same sum at arbitrary points (N, 2) -> (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    out = np.zeros_like(points)
    for centre, vector, sigma in zip(centres, vectors, sigmas):
        weight = np.exp(-0.5 * np.sum((points - centre) ** 2, axis=1) / sigma**2)
        out += weight[:, None] * vector[None, :]
    return out


def magnitude(field: np.ndarray) -> np.ndarray:
    return np.hypot(field[0], field[1])


def unit_field(landmarks, bumps, shape, side_weights=(1.0, 1.0)) -> np.ndarray:
    """The pattern's displacement field scaled so its largest magnitude on the grid is exactly 1."""
    field = gaussian_sum(*place_bumps(landmarks, bumps, side_weights), shape)
    peak = magnitude(field).max()
    if not peak > 0:
        raise ValueError("displacement pattern is zero on the frame grid")
    return field / peak


def au_bumps(aus: str) -> tuple[Bump, ...]:
    bumps: tuple[Bump, ...] = ()
    for au in split_aus(aus):
        if au not in AU_BUMPS:
            raise ValueError(f"unknown action unit {au!r} (known: {sorted(AU_BUMPS, key=int)})")
        bumps += AU_BUMPS[au]
    return bumps


def displacement_field(landmarks, aus: str, amplitude_px: float, shape, side_weights=(1.0, 1.0)) -> np.ndarray:
    """The expression's apex displacement (2, H, W) float64 in frame pixels: an action-unit pattern
    anchored on `landmarks`, scaled so its peak magnitude equals `amplitude_px` (0 -> all zeros)."""
    if amplitude_px < 0:
        raise ValueError(f"amplitude_px must be >= 0, got {amplitude_px}")
    return amplitude_px * unit_field(landmarks, au_bumps(aus), shape, side_weights)


def region_mask(landmarks, aus: str, shape, side_weights=(1.0, 1.0)) -> np.ndarray:
    """Where the pattern moves: |unit field| > REGION_THRESHOLD, bool (H, W); independent of amplitude."""
    return magnitude(unit_field(landmarks, au_bumps(aus), shape, side_weights)) > REGION_THRESHOLD


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a bool mask, x1/y1 exclusive; (0, 0, 0, 0) for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --- time ---------------------------------------------------------------------------------------


def expression_profile(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Raised-cosine onset -> apex -> offset over frame numbers 1..n_frames: 0 outside [onset, offset],
    exactly 1 at the apex."""
    if not 1 <= onset < apex < offset <= n_frames:
        raise ValueError(f"need 1 <= onset < apex < offset <= n_frames, got {onset}, {apex}, {offset}, {n_frames}")
    f = np.arange(1, n_frames + 1, dtype=np.float64)
    profile = np.zeros(n_frames)
    rise = (f >= onset) & (f <= apex)
    fall = (f > apex) & (f <= offset)
    profile[rise] = 0.5 * (1 - np.cos(np.pi * (f[rise] - onset) / (apex - onset)))
    profile[fall] = 0.5 * (1 + np.cos(np.pi * (f[fall] - apex) / (offset - apex)))
    return profile


def bump_profile(n_frames: int, centre: float, half_width: float) -> np.ndarray:
    """A raised-cosine pulse (a blink) centred on frame number `centre`, zero beyond `half_width`."""
    f = np.arange(1, n_frames + 1, dtype=np.float64)
    u = np.clip(np.abs(f - centre) / half_width, 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * u))


def drift_path(n_frames: int, amplitude: float, frequencies, phases) -> np.ndarray:
    """Smooth global head drift (n_frames, 2) in px: each axis a sinusoid of `amplitude`, so the drift
    magnitude never exceeds amplitude * sqrt(2)."""
    t = np.arange(n_frames, dtype=np.float64) / max(n_frames - 1, 1)
    return np.stack(
        [amplitude * np.sin(2 * np.pi * frequencies[k] * t + phases[k]) for k in range(2)], axis=1
    )
