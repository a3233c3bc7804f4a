# Copyright 2026 The face_id_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

from conftest import YUNET_ONNX
from face_id_ros.core.alignment import (align_face, BLAZEFACE_POINTS_IN_ARCFACE_112,
                                        centre_landmarks, detector_template,
                                        similarity_transform)
from face_id_ros.core.config import DetectorConfig
from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS, make_detector
from face_id_ros.core.errors import FaceIdError, ModelError
from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
from face_id_ros.evaluation.samples import compose_frame, grid_centres
import numpy as np
import pytest


@pytest.fixture(scope='module')
def blazeface():
    detector = make_detector(DetectorConfig())
    yield detector
    detector.close()


def check_face_geometry(face, image):
    """Eyes above the nose above the mouth; the subject's right eye on the image left."""
    right_eye, left_eye, nose = face.landmarks[:3]
    mouth_y = face.landmarks[3:, 1].mean()
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth_y
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
    assert np.all((face.landmarks >= face.box[:2] - 5) & (face.landmarks <= face.box[2:] + 5))


def test_blazeface_finds_the_portrait_face_with_four_landmarks(blazeface, portrait):
    faces = blazeface.detect(portrait)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmark_set == FOUR_POINTS and face.landmarks.shape == (4, 2)
    assert face.score > 0.8
    check_face_geometry(face, portrait)


def test_blazeface_finds_every_face_in_a_frame_and_none_in_an_empty_one(blazeface, portrait):
    # Short range needs faces of about 90 px or more in a 640x480 frame.
    frame = compose_frame(portrait, (640, 480), grid_centres((640, 480), 2), 260)
    assert len(blazeface.detect(frame)) == 2
    assert blazeface.detect(np.full((480, 640, 3), 96, np.uint8)) == []


def smallest_face_found(detector, portrait):
    """Return the width (px) of the smallest face found in 640x480 frames, or None."""
    sizes = []
    for tile_width in range(50, 320, 10):  # the face is about 40% of the pasted portrait
        faces = detector.detect(compose_frame(portrait, (640, 480), [(320, 240)], tile_width))
        sizes += [face.size for face in faces]
    return min(sizes, default=None)


@pytest.mark.parametrize('blazeface_range, low, high', [('short', 80, 100), ('full', 30, 45)])
def test_the_blazeface_ranges_find_the_face_sizes_their_help_gives(
        portrait, blazeface_range, low, high):
    # DetectorConfig.blazeface_range and both config files say: short from ~90 px in a
    # 640x480 frame, full from ~36-45 px.
    detector = make_detector(DetectorConfig(blazeface_range=blazeface_range, min_face_size=1))
    try:
        assert low <= smallest_face_found(detector, portrait) <= high
    finally:
        detector.close()


def test_small_faces_and_extra_faces_are_dropped_largest_first(portrait):
    frame = compose_frame(portrait, (640, 480), [(160, 240)], 300)
    frame[:, 320:] = compose_frame(portrait, (320, 480), [(160, 240)], 250)
    assert len(make_detector(DetectorConfig()).detect(frame)) == 2
    faces = make_detector(DetectorConfig(max_faces=1)).detect(frame)
    assert len(faces) == 1 and faces[0].box[0] < 320
    huge_minimum = make_detector(DetectorConfig(min_face_size=400))
    assert huge_minimum.detect(frame) == []


@pytest.mark.skipif(not YUNET_ONNX.is_file(), reason='../shared YuNet model is absent')
def test_yunet_finds_the_portrait_face_with_five_landmarks(portrait):
    detector = make_detector(DetectorConfig(backend='yunet', yunet_model=str(YUNET_ONNX)))
    faces = detector.detect(portrait)
    assert len(faces) == 1 and faces[0].landmark_set == FIVE_POINTS
    check_face_geometry(faces[0], portrait)


def test_yunet_without_its_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match='YuNet model not found'):
        make_detector(DetectorConfig(backend='yunet', yunet_model=str(tmp_path / 'no.onnx')))


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = np.radians(12), 1.7, np.array([30.0, -12.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)],
                                 [np.sin(angle), np.cos(angle)]])
    source = np.array(ARCFACE_TEMPLATE_112)
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)


def test_similarity_transform_is_the_least_squares_similarity_of_noisy_points():
    rng = np.random.default_rng(0)
    for _ in range(50):
        source = rng.uniform(0, 200, (4, 2))
        target = source[:, ::-1] * rng.uniform(0.2, 3) + rng.normal(0, 5, (4, 2))  # a mirror
        # The similarity x' = a x - b y + tx, y' = b x + a y + ty, solved by least squares.
        rows = np.zeros((8, 4))
        rows[0::2] = np.c_[source[:, 0], -source[:, 1], np.ones(4), np.zeros(4)]
        rows[1::2] = np.c_[source[:, 1], source[:, 0], np.zeros(4), np.ones(4)]
        a, b, tx, ty = np.linalg.lstsq(rows, target.reshape(-1), rcond=None)[0]
        np.testing.assert_allclose(similarity_transform(source, target),
                                   [[a, -b, tx], [b, a, ty]], atol=1e-9)
    with pytest.raises(FaceIdError, match='degenerate'):
        similarity_transform(np.ones((4, 2)), source)


def test_aligned_portrait_puts_the_landmarks_on_the_template(blazeface, portrait):
    face = blazeface.detect(portrait)[0]
    template = detector_template(FOUR_POINTS, ARCFACE_TEMPLATE_112)
    crop = align_face(portrait, face.landmarks, template, (112, 112))
    assert crop.shape == (112, 112, 3)
    matrix = similarity_transform(face.landmarks, template)
    moved = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - template).max() < 6.0


def test_blazeface_template_follows_the_model_template():
    np.testing.assert_allclose(detector_template(FOUR_POINTS, ARCFACE_TEMPLATE_112),
                               BLAZEFACE_POINTS_IN_ARCFACE_112, atol=1e-9)
    doubled = np.array(ARCFACE_TEMPLATE_112) * 2
    np.testing.assert_allclose(detector_template(FOUR_POINTS, doubled),
                               np.array(BLAZEFACE_POINTS_IN_ARCFACE_112) * 2, atol=1e-9)
    np.testing.assert_array_equal(detector_template(FIVE_POINTS, doubled), doubled)


def test_centre_landmarks_fill_the_central_square():
    points = centre_landmarks(np.zeros((250, 250, 3)), ARCFACE_TEMPLATE_112)
    side = 0.44 * 250
    np.testing.assert_allclose(points, np.array(ARCFACE_TEMPLATE_112) * side / 112
                               + (250 - side) / 2)
