"""SynthME clips: the corpus plan (classes, timing, distractors) and rendering one clip in memory.

Every random draw is made here, from streams keyed by (seed, purpose, subject, clip), so a clip does
not depend on the other clips, on the number of threads, or on the intensity: intensity 0 and 1
corpora with the same seed differ only by the class motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fdpkit.synthme import motion
from fdpkit.synthme.faces import ClipMotion, Subject, render_frames

DEFAULT_SUBJECTS = 16
DEFAULT_CLIPS_PER_SUBJECT = 12
DEFAULT_AMPLITUDE_PX = 3.5  # peak expression displacement at a 128 px face, intensity 1
AMPLITUDE_SPREAD = (0.85, 1.15)  # per-clip factor: 3.0-4.0 px at a 128 px face
MOVE_FRAMES = (12, 40)  # onset..offset inclusive
LEAD_FRAMES = (2, 5)  # neutral frames before onset and after offset
APEX_POSITION = (0.3, 0.6)  # apex as a fraction of onset -> offset
BLINK_PROBABILITY = 0.35
BLINK_AMPLITUDE_PX = (1.5, 3.5)  # upper-lid travel at a 128 px face (a partial blink)
BLINK_HALF_WIDTH = (2.0, 4.0)  # frames
DRIFT_AMPLITUDE_PX = (0.05, 0.3)  # per axis: |drift| <= 0.3 * sqrt(2) = 0.42 px
FLICKER_AMPLITUDE = (0.0, 0.012)  # periodic gain
FLICKER_JITTER_SD = 0.003  # per-frame gain noise


@dataclass(frozen=True)
class ClipSpec:
    """One clip's plan: everything random about it, drawn before rendering (intensity-free)."""

    subject: int  # 0-based subject index
    index: int  # 0-based clip index within the subject
    clip: str
    emotion: str
    aus: str
    n_frames: int
    onset: int
    apex: int
    offset: int
    amplitude_factor: float
    side_weights: tuple[float, float]
    blink: tuple[float, float, float] | None  # (centre frame, half width, amplitude px at 128) or None
    drift: tuple[float, float, float, float, float]  # (amplitude, freq x, freq y, phase x, phase y)
    gain: tuple[float, ...]  # per-frame flicker gain

    @property
    def subject_id(self) -> str:
        return f"{self.subject + 1:02d}"

    @property
    def frame_dir(self) -> str:
        return f"sub{self.subject_id}/{self.clip}"


def planned_class_counts(n_clips: int) -> dict[str, int]:
    """CASME II-like class counts for n_clips (largest remainder; every class at least once if n >= 5)."""
    freqs = motion.CLASS_FREQUENCIES
    raw = {c: f * n_clips for c, f in freqs.items()}
    counts = {c: int(math.floor(v)) for c, v in raw.items()}
    if n_clips >= len(freqs):
        counts = {c: max(1, n) for c, n in counts.items()}
    for c in sorted(freqs, key=lambda c: -(raw[c] - math.floor(raw[c]))):
        if sum(counts.values()) >= n_clips:
            break
        counts[c] += 1
    while sum(counts.values()) > n_clips:  # the minimum of one pushed the total over
        counts[max(counts, key=counts.get)] -= 1
    return counts


def plan_corpus(subjects: int, clips_per_subject: int, seed: int) -> list[ClipSpec]:
    """Assign classes (CASME II-like frequencies, dealt so most subjects get several classes) and draw
    every clip's timing, AUs, asymmetry and distractors. Independent of intensity."""
    rng = np.random.default_rng([seed, 0])
    counts = planned_class_counts(subjects * clips_per_subject)
    labels = [c for c in motion.CLASSES for _ in range(counts[c])]
    per_subject: list[list[str]] = [[] for _ in range(subjects)]
    for start in range(0, len(labels), subjects):  # one label per subject per round, fresh order each round
        for label, s in zip(labels[start:start + subjects], rng.permutation(subjects)):
            per_subject[s].append(label)
    specs = []
    for s, emotions in enumerate(per_subject):
        emotions = [emotions[k] for k in rng.permutation(len(emotions))]
        for j, emotion in enumerate(emotions):
            specs.append(_plan_clip(np.random.default_rng([seed, 2, s, j]), s, j, emotion))
    return specs


def _plan_clip(rng: np.random.Generator, subject: int, j: int, emotion: str) -> ClipSpec:
    variants = motion.CLASS_AUS[emotion]
    probs = np.array([p for _, p in variants])
    aus = variants[int(rng.choice(len(variants), p=probs / probs.sum()))][0]
    move = int(rng.integers(MOVE_FRAMES[0], MOVE_FRAMES[1] + 1))
    lead = int(rng.integers(LEAD_FRAMES[0], LEAD_FRAMES[1] + 1))
    trail = int(rng.integers(LEAD_FRAMES[0], LEAD_FRAMES[1] + 1))
    onset = lead + 1
    offset = onset + move - 1
    apex = int(np.clip(onset + round(rng.uniform(*APEX_POSITION) * (move - 1)), onset + 1, offset - 1))
    n_frames = offset + trail
    amplitude_factor = float(rng.uniform(*AMPLITUDE_SPREAD))
    side_weights = (float(1 - rng.uniform(0, 0.35)), float(1 - rng.uniform(0, 0.35)))
    # Timing above and distractors below are class-free: the AU choice always consumes exactly one
    # draw, so a clip slot gets the same timing, blink, drift and flicker whatever its class.
    blink_draws = (
        rng.random(), rng.uniform(1, n_frames), rng.uniform(*BLINK_HALF_WIDTH), rng.uniform(*BLINK_AMPLITUDE_PX)
    )
    blink = tuple(float(v) for v in blink_draws[1:]) if blink_draws[0] < BLINK_PROBABILITY else None
    drift = (float(rng.uniform(*DRIFT_AMPLITUDE_PX)), *(float(v) for v in rng.uniform(0.2, 1.0, 2)),
             *(float(v) for v in rng.uniform(0, 2 * np.pi, 2)))
    f_amp, f_period, f_phase = rng.uniform(*FLICKER_AMPLITUDE), rng.uniform(3, 12), rng.uniform(0, 2 * np.pi)
    t = np.arange(n_frames)
    gain = 1 + f_amp * np.sin(2 * np.pi * t / f_period + f_phase) + FLICKER_JITTER_SD * rng.standard_normal(n_frames)
    return ClipSpec(
        subject=subject, index=j, clip=f"EP{j + 1:02d}_01", emotion=emotion, aus=aus, n_frames=n_frames, onset=onset,
        apex=apex, offset=offset, amplitude_factor=amplitude_factor, side_weights=side_weights, blink=blink,
        drift=drift, gain=tuple(float(g) for g in gain),
    )


def clip_amplitude(subject: Subject, spec: ClipSpec, intensity: float) -> float:
    """Peak expression displacement in frame px: intensity x 3.5 px x clip factor x face width / 128."""
    return intensity * DEFAULT_AMPLITUDE_PX * spec.amplitude_factor * subject.face_width / motion.REFERENCE_FACE_WIDTH


def expression_field(subject: Subject, spec: ClipSpec, intensity: float = 1.0) -> np.ndarray:
    """The clip's apex displacement (2, H, W) in frame px; its peak magnitude is clip_amplitude(...)."""
    return motion.displacement_field(
        subject.landmarks, spec.aus, clip_amplitude(subject, spec, intensity), subject.base.shape[:2], spec.side_weights
    )


def clip_motion(subject: Subject, spec: ClipSpec, intensity: float = 1.0) -> ClipMotion:
    shape = subject.base.shape[:2]
    scale = subject.face_width / motion.REFERENCE_FACE_WIDTH
    if spec.blink is not None:
        centre, half_width, amplitude = spec.blink
        blink = amplitude * scale * motion.unit_field(subject.landmarks, motion.BLINK_BUMPS, shape)
        blink_profile = motion.bump_profile(spec.n_frames, centre, half_width)
    else:
        blink, blink_profile = np.zeros((2, *shape)), np.zeros(spec.n_frames)
    amplitude, fx, fy, px, py = spec.drift
    return ClipMotion(
        expression=expression_field(subject, spec, intensity),
        profile=motion.expression_profile(spec.n_frames, spec.onset, spec.apex, spec.offset),
        blink=blink, blink_profile=blink_profile,
        drift=motion.drift_path(spec.n_frames, amplitude, (fx, fy), (px, py)),
        gain=np.asarray(spec.gain),
    )


def render_clip(subject: Subject, spec: ClipSpec, intensity: float = 1.0, seed: int = 0) -> np.ndarray:
    """All frames of a clip as uint8 (T, H, W, 3) RGB, exactly as generate_synthme writes them (before JPEG)."""
    rng = np.random.default_rng([seed, 3, spec.subject, spec.index])
    return np.stack(list(render_frames(subject, clip_motion(subject, spec, intensity), rng)))


def clip_region_mask(subject: Subject, spec: ClipSpec) -> np.ndarray:
    return motion.region_mask(subject.landmarks, spec.aus, subject.base.shape[:2], spec.side_weights)
