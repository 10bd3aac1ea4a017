"""Similarity alignment (fdpkit.data.preprocess.faces): hand-computed geometry and a real face (skimage astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from fdpkit.data.preprocess import faces
from fdpkit.data.preprocess.faces import (NoFaceError, align_face, eye_centres, landmarks_68, similarity_transform,
                               to_gray_uint8, transform_points, warp_face)

ASTRONAUT = data.astronaut()   # RGB 512x512; the face spans about x 179-266, y 83-170


def face(dx: int = 0, dy: int = 0, angle: float = 0.0) -> np.ndarray:
    """A 240x230 RGB crop around the face; (dx, dy) moves the crop window, so the face moves by
    (-dx, -dy) in the crop; `angle` rotates the photo about the face first."""
    image = ASTRONAUT
    if angle:
        matrix = cv2.getRotationMatrix2D((222.0, 126.0), angle, 1.0)
        image = cv2.warpAffine(ASTRONAUT, matrix, (512, 512), flags=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image[20 + dy:260 + dy, 110 + dx:340 + dx])


def synthetic_landmarks() -> np.ndarray:
    """68 points whose alignment can be worked out by hand: eye centres (40, 50) and (60, 50),
    nose tip (50, 60), mouth corners (42, 70) and (58, 70)."""
    points = np.zeros((68, 2))
    points[36:42] = [40, 50]
    points[42:48] = [60, 50]
    points[30] = [50, 60]
    points[48] = [42, 70]
    points[54] = [58, 70]
    return points


def test_geometry_by_hand():
    # Box of the five points: x 40..60, y 50..70 -> side 20, centre (50, 60); half size 0.5*2.5*20 = 25;
    # scale (64 - 1) / 2 / 25 = 1.26; an eye goes to 1.26 * (40 - 50) + 31.5 = 18.9 and so on.
    matrix = similarity_transform(synthetic_landmarks(), size=64, box_enlarge=2.5)
    np.testing.assert_allclose(matrix, [[1.26, 0, 31.5 - 63.0], [0, 1.26, 31.5 - 75.6]], atol=1e-12)
    eyes = transform_points(matrix, np.vstack(eye_centres(synthetic_landmarks())))
    np.testing.assert_allclose(eyes, [[18.9, 18.9], [44.1, 18.9]], atol=1e-12)
    np.testing.assert_allclose(transform_points(matrix, [[50, 60]]), [[31.5, 31.5]], atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0])
def test_geometry_invariant_to_similarity(angle):
    """Rotating, scaling and shifting the landmarks changes the matrix, not where points land."""
    theta = np.deg2rad(angle)
    rot = 1.7 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = synthetic_landmarks() @ rot.T + [13.0, -4.0]
    matrix = similarity_transform(moved, size=64)
    eyes = transform_points(matrix, np.vstack(eye_centres(moved)))
    np.testing.assert_allclose(eyes, [[18.9, 18.9], [44.1, 18.9]], atol=1e-9)


def test_size_and_enlarge_parameters():
    matrix = similarity_transform(synthetic_landmarks(), size=128, box_enlarge=2.0)
    eyes = transform_points(matrix, np.vstack(eye_centres(synthetic_landmarks())))
    scale = 127 / 2 / 20.0
    np.testing.assert_allclose(eyes, [[63.5 - 10 * scale, 63.5 - 10 * scale],
                                      [63.5 + 10 * scale, 63.5 - 10 * scale]], atol=1e-9)


def test_degenerate_landmarks_raise():
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((68, 2)))


def test_warp_border_is_grey_and_output_uint8():
    image = np.full((40, 40, 3), 250, np.uint8)
    out = warp_face(image, np.array([[1.0, 0, 30], [0, 1.0, 30]]), size=64)
    assert out.dtype == np.uint8 and out.shape == (64, 64)
    assert out[45, 45] == 250 and out[0, 0] == 128 and out[63, 10] == 128   # input lands on 30..69
    np.testing.assert_array_equal(warp_face(to_gray_uint8(image), np.eye(2, 3), 16),
                                  warp_face(image, np.eye(2, 3), 16))


def test_real_face_eyes_at_expected_place():
    image = face()
    aligned, matrix = align_face(image, size=64)
    assert aligned.shape == (64, 64) and aligned.dtype == np.uint8
    landmarks = landmarks_68(image)
    left, right = transform_points(matrix, np.vstack(eye_centres(landmarks)))
    assert abs(left[1] - right[1]) < 1e-9              # eyes on one row
    assert 15 < left[0] < 24 and 39 < right[0] < 48 and 17 < left[1] < 25
    # The pixels agree with the matrix: dlib on the 4x enlarged aligned face finds the eyes there.
    big = cv2.resize(aligned, (256, 256), interpolation=cv2.INTER_CUBIC)
    seen = np.vstack(eye_centres(landmarks_68(big))) / 4.0
    np.testing.assert_allclose(seen, [left, right], atol=1.5)


@pytest.mark.parametrize("dx,dy,angle", [(8, 0, 0.0), (3, -5, 0.0), (0, 0, 8.0), (-6, 4, -6.0)])
def test_moved_face_aligns_to_the_same_place(dx, dy, angle):
    reference, ref_matrix = align_face(face(), size=64)
    ref_eyes = np.vstack(eye_centres(landmarks_68(face())))
    moved, matrix = align_face(face(dx, dy, angle), size=64)
    # Geometry: the reference eye positions, carried into the moved crop, land where they did.
    rotation = cv2.getRotationMatrix2D((222.0, 126.0), angle, 1.0)   # photo coordinates
    carried = transform_points(rotation, ref_eyes + [110, 20]) - [110 + dx, 20 + dy]
    np.testing.assert_allclose(transform_points(matrix, carried), transform_points(ref_matrix, ref_eyes), atol=1.0)
    # Pixels: closer than the same face moved by one output pixel (landmark jitter is sub-pixel).
    one_pixel = np.abs(reference[:, 1:].astype(int) - reference[:, :-1]).mean()
    assert np.abs(moved.astype(int) - reference).mean() < 0.8 * one_pixel


def test_no_face_raises():
    with pytest.raises(NoFaceError):
        align_face(np.full((200, 200), 128, np.uint8))


def test_existing_helpers_unchanged():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(to_gray_uint8(rgb), [[76, 150, 29]])
    assert faces.predictor_path().name == faces.PREDICTOR_FILE
