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

"""Alignment: a similarity transform of the detector's landmarks onto the model's template."""

import cv2
from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS
from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
import numpy as np

# Where BlazeFace puts its 4 keypoints on faces aligned to the ArcFace 112 template: the
# median over 1,496 CelebA training faces aligned by YuNet, from `face-id calibrate-landmarks
# ../shared/data/train/celeba299`. Its nose and eye points sit lower than the ArcFace ones.
BLAZEFACE_POINTS_IN_ARCFACE_112 = (
    (38.83, 53.77),
    (74.86, 54.21),
    (56.36, 77.10),
    (56.26, 93.35),
)


def detector_template(landmark_set, template):
    """
    Return the target points for a detector's landmarks, given the model's 5-point template.

    Five points map one to one. For BlazeFace's four, the calibrated positions are carried
    from the ArcFace 112 template to the model's template by the similarity between the two,
    so a model with another template still gets consistent alignment.
    """
    points = np.asarray(template, np.float64)
    if landmark_set == FIVE_POINTS:
        return points
    if landmark_set == FOUR_POINTS:
        to_model = similarity_transform(ARCFACE_TEMPLATE_112, points)
        calibrated = np.asarray(BLAZEFACE_POINTS_IN_ARCFACE_112, np.float64)
        return calibrated @ to_model[:, :2].T + to_model[:, 2]
    raise FaceIdError(f'unknown landmark set {landmark_set!r}')


def similarity_transform(source, target):
    """
    Return the 2x3 least-squares similarity (rotation, scale, shift) from source to target.

    In 2-D the least-squares similarity has a closed form: the same transform as Umeyama's
    SVD without reflection, in plain arithmetic on the few points (a tenth of the SVD's
    time: the look test aligns every face of every frame with it).
    """
    source = np.asarray(source, np.float64).tolist()
    target = np.asarray(target, np.float64).tolist()
    count = len(source)
    source_x = sum(point[0] for point in source) / count
    source_y = sum(point[1] for point in source) / count
    target_x = sum(point[0] for point in target) / count
    target_y = sum(point[1] for point in target) / count
    variance = along = across = 0.0
    for (px, py), (qx, qy) in zip(source, target):
        px, py, qx, qy = px - source_x, py - source_y, qx - target_x, qy - target_y
        variance += px * px + py * py
        along += px * qx + py * qy
        across += px * qy - py * qx
    if not variance > 0:  # also NaN
        raise FaceIdError('landmarks are degenerate (all at one point)')
    cos_part, sin_part = along / variance, across / variance
    return np.array([
        [cos_part, -sin_part, target_x - cos_part * source_x + sin_part * source_y],
        [sin_part, cos_part, target_y - sin_part * source_x - cos_part * source_y]])


def align_face(image, landmarks, template_points, size):
    """Warp the face whose ``landmarks`` match ``template_points`` into a ``size`` crop."""
    matrix = similarity_transform(landmarks, template_points)
    return cv2.warpAffine(image, matrix, tuple(int(side) for side in size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def centre_landmarks(image, template_points, template_size=(112, 112), fraction=0.44):
    """
    Return landmarks that put the template on the image centre (a fallback crop).

    Used by evaluations where the detector finds no face: the pair still counts, with the
    central square (``fraction`` of the shorter side, as in loosely cropped LFW photos).
    """
    height, width = image.shape[:2]
    side = fraction * min(height, width)
    scale = side / float(template_size[0])
    offset = np.array([(width - side) / 2.0, (height - side) / 2.0])
    return np.asarray(template_points, np.float64) * scale + offset
