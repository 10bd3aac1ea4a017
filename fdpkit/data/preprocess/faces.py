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
    import dlib  # lazy: dlib and its 100 MB landmark model load only when a face is aligned

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


# --- similarity alignment -------------------------------------------------------------------------
# Geometry of the released code (github:CYF-cuber/FDP, data.py): rotate so the eye centres lie on a
# horizontal line, take the bounding box of five rotated points (the two eye centres, the nose tip
# and the two mouth corners), square it on its longer side times `box_enlarge`, and map that square
# onto an (size x size) image with bilinear interpolation and a grey (128) border.

LEFT_EYE = tuple(range(36, 42))   # image-left eye (the subject's right eye)
RIGHT_EYE = tuple(range(42, 48))
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)
BOX_ENLARGE = 2.5
BORDER_VALUE = 128


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of landmarks 36-41 and of 42-47: the image-left and image-right eye centres."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return landmarks[list(LEFT_EYE)].mean(axis=0), landmarks[list(RIGHT_EYE)].mean(axis=0)


def similarity_transform(landmarks: np.ndarray, size: int = 64,
                         box_enlarge: float = BOX_ENLARGE) -> np.ndarray:
    """The (2, 3) float64 affine matrix (rotation + uniform scale + shift) mapping input pixel
    coordinates to the aligned (size x size) face, from 68 dlib landmarks.

    The eye centres end up on one row; the centre of the box around the eyes, nose tip and mouth
    corners lands at ((size - 1) / 2, (size - 1) / 2); that box's longer side times `box_enlarge`
    spans the output.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    left, right = eye_centres(landmarks)
    delta = right - left
    length = float(np.hypot(delta[0], delta[1]))
    if not np.isfinite(length) or length <= 0:
        raise ValueError("degenerate landmarks: both eye centres at the same point")
    cos, sin = delta / length
    rotation = np.array([[cos, sin], [-sin, cos]])
    points = np.vstack([left, right, landmarks[NOSE_TIP], landmarks[list(MOUTH_CORNERS)]])
    rotated = points @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    centre = (low + high) / 2.0
    half_size = 0.5 * box_enlarge * float((high - low).max())
    if half_size <= 0:
        raise ValueError("degenerate landmarks: the alignment box has no extent")
    scale = (size - 1) / 2.0 / half_size
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = scale * (half_size - centre)
    return matrix


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int = 64) -> np.ndarray:
    """Warp a grey (H, W) or RGB (H, W, 3) image with `matrix` into a (size, size) uint8 grey face:
    bilinear interpolation, constant grey (128) outside the input."""
    import cv2  # lazy: keeps the CLI (which imports this module's constants) free of cv2

    gray = to_gray_uint8(image) if np.asarray(image).ndim == 3 else np.asarray(image, dtype=np.uint8)
    return cv2.warpAffine(np.ascontiguousarray(gray), np.asarray(matrix, dtype=np.float64), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_VALUE)


def align_face(image: np.ndarray, size: int = 64, box_enlarge: float = BOX_ENLARGE,
               landmarks: np.ndarray | None = None, upsample_retries: int = 1):
    """Detect (unless `landmarks` are given) and align one face: -> (aligned uint8 (size, size),
    matrix (2, 3)). Raises NoFaceError when dlib finds no face even with upsampling."""
    if landmarks is None:
        landmarks = landmarks_68(image, upsample_retries=upsample_retries)
    matrix = similarity_transform(landmarks, size=size, box_enlarge=box_enlarge)
    return warp_face(image, matrix, size=size), matrix
