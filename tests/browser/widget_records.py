"""Clip records for the browser test's notebook: the fields `fdpkit.viz.widgets` draws, with
frames and maps that differ per frame and per clip (so a redraw changes the picture)."""

import numpy as np

CLASSES = ["happiness", "disgust", "others"]


def record(seed: int, t: int = 8, size: int = 32) -> dict:
    rng = np.random.default_rng(seed)
    numbers = np.arange(3, 3 + 4 * t, 4)
    maps = rng.random((t, size, size)) ** 3
    maps[0] = 0  # Integrated Gradients on its onset baseline frame
    return {"clip_uid": f"synthme/0{seed}/EP0{seed}", "frames": rng.integers(0, 256, (t, size, size), dtype=np.uint8),
            "frame_numbers": numbers, "onset": int(numbers[0]), "apex": int(numbers[t // 2]),
            "offset": int(numbers[-1]), "dynamic_image": rng.random((size, size)),
            "pred_dynamic_image": rng.random((8, 8)), "rank_scores": rng.normal(size=(2, t)),
            "probs": rng.dirichlet(np.ones(3)), "classes": CLASSES, "label": seed % 3, "pred": 1,
            "label_name": CLASSES[seed % 3],
            "maps": {"integrated_gradients": maps, "saliency": rng.random((t, size, size))}}


def records(n: int = 3) -> list[dict]:
    return [record(i + 1) for i in range(n)]
