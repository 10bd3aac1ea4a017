"""SynthME faces: synthetic identities derived from one real photo, and frame rendering.

The source is scikit-image's astronaut photo (public domain, NASA). dlib's 68 landmarks are found
once per process; every subject is a single backward warp of that photo (similarity + anisotropy +
landmark-driven geometry warp), then a new background, skin tint, desaturation, brightness/contrast
and an illumination gradient. Each subject's 68 landmarks are carried through the warp analytically
(no detection needed), so expressions are anchored exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from skimage.data import astronaut

from fdpkit.data.preprocess.faces import landmarks_68
from fdpkit.synthme import motion

FRAME_SIZE = 224  # frames are FRAME_SIZE x FRAME_SIZE RGB
FACE_WIDTH = 128.0  # canonical jaw width (landmark 0 to 16) in frame px
FACE_CENTRE = (112.0, 130.0)  # canonical centre of the landmark box: ~70 px of forehead/hair above the brows
HEAD_ELLIPSE = ((0.0, -26.0), (98.0, 124.0))  # (centre offset from FACE_CENTRE, semi-axes), canonical px


@lru_cache(maxsize=1)
def source_face() -> tuple[np.ndarray, np.ndarray]:
    """(astronaut RGB float32 (512, 512, 3), its 68 dlib landmarks (68, 2)): computed once per process."""
    image = np.ascontiguousarray(astronaut()[..., :3])
    landmarks = landmarks_68(image)
    image = image.astype(np.float32)
    image.setflags(write=False)
    landmarks.setflags(write=False)
    return image, landmarks


def _canonical_transform(landmarks: np.ndarray) -> tuple[float, np.ndarray]:
    """(scale, source centre): canonical = (source - centre) * scale + FACE_CENTRE."""
    scale = FACE_WIDTH / float(np.linalg.norm(landmarks[16] - landmarks[0]))
    centre = (landmarks.min(0) + landmarks.max(0)) / 2
    return scale, centre


@dataclass
class Subject:
    """One synthetic identity: its neutral frame and where its landmarks are."""

    index: int
    base: np.ndarray  # float32 (H, W, 3) RGB, 0..255, no noise
    landmarks: np.ndarray  # (68, 2) frame px
    noise_sd: float  # sensor noise, grey levels per frame
    params: dict = field(default_factory=dict)

    @property
    def face_width(self) -> float:
        return float(np.linalg.norm(self.landmarks[16] - self.landmarks[0]))


def _identity_bumps(rng: np.random.Generator) -> tuple[tuple[motion.Bump, ...], dict]:
    """Random geometry changes (face-frame directions, canonical px): eye spacing, brow height, nose
    length and width, mouth width and height, jaw width, chin length."""
    draws = {
        "eyes_apart": rng.uniform(-2.5, 2.5),
        "eyes_height": rng.uniform(-2.0, 2.0),
        "brows_height": rng.uniform(-3.0, 3.0),
        "nose_length": rng.uniform(-3.0, 3.0),
        "nose_width": rng.uniform(-2.0, 2.0),
        "mouth_width": rng.uniform(-3.0, 3.0),
        "mouth_height": rng.uniform(-3.0, 3.0),
        "jaw_width": rng.uniform(-6.0, 6.0),
        "chin_length": rng.uniform(-5.0, 5.0),
    }
    P = motion._pair
    Bump = motion.Bump
    d = draws
    bumps = (
        P((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (-d["eyes_apart"], d["eyes_height"]), sigma=10.0)
        + P((17, 18, 19, 20, 21), (22, 23, 24, 25, 26), (0.0, -d["brows_height"]), sigma=11.0)
        + (Bump((33,), (0.0, d["nose_length"]), sigma=8.0),)
        + P((31,), (35,), (-d["nose_width"], 0.0), sigma=6.0)
        + P((48,), (54,), (-d["mouth_width"], 0.0), sigma=8.0)
        + (Bump((51, 57), (0.0, d["mouth_height"]), sigma=12.0),)
        + P((3, 4, 5), (11, 12, 13), (-d["jaw_width"], 0.0), sigma=14.0)
        + (Bump((7, 8, 9), (0.0, d["chin_length"]), sigma=14.0),)
    )
    return bumps, draws  # here a bump's `direction` is the change in px (see _place_identity)


def _place_identity(landmarks, bumps):
    """Like motion.place_bumps but keeps the direction's length (the identity change in px)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ex, ey, scale = motion.face_frame(lm)
    centres, vectors, sigmas = [], [], []
    for bump in bumps:
        centres.append(lm[list(bump.anchor)].mean(0))
        vectors.append(scale * (bump.direction[0] * ex + bump.direction[1] * ey))
        sigmas.append(bump.sigma * scale)
    return np.array(centres), np.array(vectors), np.array(sigmas)


def make_subject(seed: int, index: int) -> Subject:
    """Subject `index` (0-based) of the corpus with this seed: deterministic, independent of the others."""
    rng = np.random.default_rng([seed, 1, index])
    image, src_lm = source_face()
    size = FRAME_SIZE
    c_scale, src_centre = _canonical_transform(src_lm)
    centre = np.array(FACE_CENTRE)
    canon_lm = (src_lm - src_centre) * c_scale + centre

    # Head pose and size: canonical -> frame, x_f = A (x_c - centre) + centre + t.
    scale = rng.uniform(0.94, 1.06)
    aspect = rng.uniform(0.96, 1.04)
    angle = np.deg2rad(rng.uniform(-5.0, 5.0))
    shift = rng.uniform(-5.0, 5.0, size=2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    A = scale * rot @ np.diag([aspect, 1.0 / aspect])
    A_inv = np.linalg.inv(A)
    sim_lm = (canon_lm - centre) @ A.T + centre + shift

    # Geometry warp in frame coordinates (content moves by +m), anchored on the posed landmarks.
    bumps, draws = _identity_bumps(rng)
    placed = _place_identity(sim_lm, bumps)
    m = motion.gaussian_sum(*placed, (size, size))
    lm = sim_lm.copy()
    for _ in range(8):  # content at p lands at y with y - m(y) = p
        lm = sim_lm + motion.gaussian_sum_at(*placed, lm)

    # One backward map: frame pixel -> canonical -> source photo.
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px, py = xs - m[0] - centre[0] - shift[0], ys - m[1] - centre[1] - shift[1]
    cx = A_inv[0, 0] * px + A_inv[0, 1] * py
    cy = A_inv[1, 0] * px + A_inv[1, 1] * py  # canonical, relative to centre
    map_x = (cx / c_scale + src_centre[0]).astype(np.float32)
    map_y = (cy / c_scale + src_centre[1]).astype(np.float32)
    face = cv2.remap(np.asarray(image), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    # Appearance: desaturate (grey-ish), skin tint, contrast/brightness.
    luma = face @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    saturation = rng.uniform(0.2, 0.6)
    tint = np.array([1 + rng.uniform(-0.06, 0.08), 1.0, 1 + rng.uniform(-0.08, 0.05)], dtype=np.float32)
    face = (luma[..., None] + saturation * (face - luma[..., None])) * tint
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-25.0, 20.0)
    face = (face - 128.0) * contrast + 128.0 + brightness

    # Background outside a soft head ellipse (in canonical coordinates, so it follows the head).
    (ox, oy), (ax, ay) = HEAD_ELLIPSE
    r = np.hypot((cx - ox) / ax, (cy - oy) / ay)
    alpha = np.clip((1.08 - r) / 0.16, 0.0, 1.0)
    alpha = (alpha * alpha * (3 - 2 * alpha)).astype(np.float32)[..., None]  # smoothstep
    bg_level = rng.uniform(70.0, 200.0)
    bg_tint = rng.uniform(-10.0, 10.0, size=3)
    bg_angle = rng.uniform(0, 2 * np.pi)
    bg_ramp = rng.uniform(-25.0, 25.0) / size * ((xs - size / 2) * np.cos(bg_angle) + (ys - size / 2) * np.sin(bg_angle))
    background = (bg_level + bg_ramp)[..., None] + bg_tint[None, None, :]
    frame = alpha * face + (1 - alpha) * background.astype(np.float32)

    # Illumination from a random direction: a multiplicative ramp across the face.
    light_angle = rng.uniform(0, 2 * np.pi)
    light_strength = rng.uniform(0.05, 0.25)
    ramp = ((xs - centre[0]) * np.cos(light_angle) + (ys - centre[1]) * np.sin(light_angle)) / (FACE_WIDTH / 2)
    light = 1 + light_strength * np.clip(ramp, -1.5, 1.5)
    frame = np.clip(frame * light[..., None].astype(np.float32), 0, 255).astype(np.float32)

    params = {
        "scale": scale, "aspect": aspect, "rotation_deg": float(np.rad2deg(angle)),
        "shift_x": shift[0], "shift_y": shift[1], "saturation": saturation, "contrast": contrast,
        "brightness": brightness, "background": bg_level, "light_angle_deg": float(np.rad2deg(light_angle)),
        "light_strength": light_strength, **{f"geometry_{k}": v for k, v in draws.items()},
    }
    noise_sd = float(rng.uniform(1.5, 4.0))
    params = {k: round(float(v), 4) for k, v in params.items()}
    return Subject(index=index, base=np.ascontiguousarray(frame), landmarks=lm, noise_sd=noise_sd, params=params)


@dataclass(frozen=True)
class ClipMotion:
    """Everything that moves in one clip, as frame-px fields and per-frame scalars."""

    expression: np.ndarray  # (2, H, W) apex displacement (already scaled by the amplitude)
    profile: np.ndarray  # (T,) expression time profile in [0, 1]
    blink: np.ndarray  # (2, H, W) blink displacement at full closure (zeros if no blink)
    blink_profile: np.ndarray  # (T,)
    drift: np.ndarray  # (T, 2) global translation, px
    gain: np.ndarray  # (T,) illumination flicker, multiplicative


def render_frames(subject: Subject, clip: ClipMotion, noise_rng: np.random.Generator):
    """Yield the clip's frames as uint8 (H, W, 3) RGB, one at a time.

    frame_t(x) = gain_t * base(x - d_t(x)) + noise_sd * noise_t(x), with
    d_t = profile_t * expression + blink_t * blink + drift_t and luminance noise (the same in R, G, B).
    """
    height, width = subject.base.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    expression = clip.expression.astype(np.float32)
    blink = clip.blink.astype(np.float32)
    has_blink = bool(np.any(clip.blink_profile > 0))
    for t in range(len(clip.profile)):
        p, b = np.float32(clip.profile[t]), np.float32(clip.blink_profile[t])
        dx, dy = np.float32(clip.drift[t, 0]), np.float32(clip.drift[t, 1])
        map_x = xs - dx - p * expression[0]
        map_y = ys - dy - p * expression[1]
        if has_blink and b > 0:
            map_x -= b * blink[0]
            map_y -= b * blink[1]
        frame = cv2.remap(subject.base, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        noise = sensor_noise(noise_rng, (height, width))
        # saturate_cast<uchar>(gain * frame + sd * noise): rounds to nearest and clips to 0..255.
        yield cv2.addWeighted(frame, float(clip.gain[t]), cv2.merge([noise, noise, noise]), subject.noise_sd, 0.0,
                              dtype=cv2.CV_8U)


_IRWIN_HALL_SD = float(np.sqrt(4 * (256**2 - 1) / 12))


def sensor_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Zero-mean, unit-variance, approximately Gaussian noise (H, W) float32: the sum of four uniform
    random bytes (Irwin-Hall), ~3x faster than rng.standard_normal here and just as deterministic."""
    height, width = shape
    b = np.frombuffer(rng.bytes(4 * height * width), dtype=np.uint8).reshape(4, height, width)
    return (b.sum(0, dtype=np.int16) - 510).astype(np.float32) / np.float32(_IRWIN_HALL_SD)
