"""dlib face detection and 68-point landmarks (the predictor ships in face-recognition-models)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class NoFaceError(RuntimeError):
    """dlib found no face in an image."""


def predictor_path() -> Path:
    # `import face_recognition_models` needs pkg_resources (gone from new setuptools): locate the
    # package's files without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install face-recognition-models)")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / PREDICTOR_FILE
        if path.exists():
            return path
    raise RuntimeError(f"{PREDICTOR_FILE} not found in the face-recognition-models package")


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB -> (H, W) uint8 grey (ITU-R 601 luma)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def detect_face(gray: np.ndarray, upsample: int = 0):
    """The largest frontal face as a dlib rectangle, or None."""
    detector, _ = _dlib_models()
    faces = detector(np.ascontiguousarray(gray), upsample)
    if len(faces) == 0:
        return None
    return max(faces, key=lambda r: r.width() * r.height())


def landmarks_68(image: np.ndarray, upsample_retries: int = 1) -> np.ndarray:
    """68 (x, y) landmarks of the largest face as float64 (68, 2).

    Retries with detector upsampling (finds smaller faces) before raising NoFaceError.
    """
    gray = to_gray_uint8(image)
    _, predictor = _dlib_models()
    for upsample in range(upsample_retries + 1):
        rect = detect_face(gray, upsample)
        if rect is not None:
            shape = predictor(np.ascontiguousarray(gray), rect)
            return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    raise NoFaceError(f"no face found (tried detector upsampling 0..{upsample_retries})")
