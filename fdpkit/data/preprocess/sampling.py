"""Which T frames of a clip: pure functions on lists of frame numbers (no file access).

Two rules:

- ``onset-offset`` (default): T frame numbers evenly spaced from the annotated onset to the offset,
  both included (``onset + round(i * (offset - onset) / (T - 1))``, halves round up); each takes the
  nearest frame on disk (the earlier one on a tie), so a dropped frame inside the clip is replaced
  by its neighbour and the other samples keep their time. Clips with fewer than T frames repeat
  frames; the result carries a note saying so, and one saying how many frame numbers are missing.
- ``official`` (the released code): the frame files of the whole folder sorted by number, file
  ``i * (n // T)`` for ``i = 0..T-1``; the annotation is ignored and the tail is never used.
  Clips with n < T cannot be sampled and are *skipped* (``SamplingSkip``).

A clip with no frame at all between onset and offset is an error of the data (``SamplingError``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Sequence

METHODS = ("onset-offset", "official")


class SamplingError(ValueError):
    """The frames on disk do not fit the annotation (e.g. none between onset and offset)."""


class SamplingSkip(ValueError):
    """The rule deliberately leaves this clip out (official sampling of a clip under T frames)."""


@dataclass(frozen=True)
class Sampled:
    numbers: tuple[int, ...]          # the T frame numbers, in time order (repeats possible)
    notes: tuple[str, ...] = field(default=())


def evenly_spaced_positions(available: int, count: int) -> list[int]:
    """``count`` positions into ``available`` items, first and last included, halves rounded up.

    Integer arithmetic only, so the result never depends on floating-point rounding.
    """
    if available < 1 or count < 1:
        raise ValueError(f"need available >= 1 and count >= 1, got {available} and {count}")
    if count == 1:
        return [0]
    span, steps = available - 1, count - 1
    # floor(i * span / steps + 1/2)
    return [(2 * i * span + steps) // (2 * steps) for i in range(count)]


def nearest(window: Sequence[int], target: int) -> int:
    """The number in sorted `window` closest to `target` (the earlier one on a tie)."""
    at = bisect.bisect_left(window, target)
    before, after = window[max(at - 1, 0)], window[min(at, len(window) - 1)]
    return before if abs(target - before) <= abs(after - target) else after


def sample_onset_offset(frame_numbers: Iterable[int], onset: int, offset: int, count: int) -> Sampled:
    """T frame numbers evenly spaced over [onset, offset], each the nearest frame on disk."""
    if offset < onset:
        raise SamplingError(f"offset {offset} is before onset {onset}")
    window = sorted(n for n in set(int(n) for n in frame_numbers) if onset <= n <= offset)
    if not window:
        raise SamplingError(f"no frame files between onset {onset} and offset {offset}")
    targets = [onset + p for p in evenly_spaced_positions(offset - onset + 1, count)]
    numbers = tuple(nearest(window, t) for t in targets)
    notes = []
    missing = (offset - onset + 1) - len(window)
    if missing:
        notes.append(f"{missing} frame number(s) missing between onset {onset} and offset {offset}")
    if len(window) < count:
        notes.append(f"repeated frames: {len(window)} distinct frame(s) for {count} samples")
    return Sampled(numbers, tuple(notes))


def sample_official(frame_numbers: Iterable[int], count: int) -> Sampled:
    """Frame ``i * (n // T)`` of the folder's frames sorted by number (the released code)."""
    ordered = sorted(set(int(n) for n in frame_numbers))
    n = len(ordered)
    if n < count:
        raise SamplingSkip(f"official sampling needs at least {count} frames, the folder has {n}")
    step = n // count
    return Sampled(tuple(ordered[i * step] for i in range(count)))


def sample_frames(frame_numbers: Sequence[int], onset: int, offset: int, count: int,
                  method: str = "onset-offset") -> Sampled:
    """Dispatch on the rule name (``METHODS``)."""
    if count < 1:
        raise ValueError(f"number of frames must be >= 1, got {count}")
    if method == "onset-offset":
        return sample_onset_offset(frame_numbers, onset, offset, count)
    if method == "official":
        return sample_official(frame_numbers, count)
    raise ValueError(f"unknown sampling {method!r}; choose one of {', '.join(METHODS)}")
