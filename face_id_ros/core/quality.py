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

"""Enrolment quality gate: only clear photos of exactly one face become templates."""

from dataclasses import dataclass

import cv2
from face_id_ros.core.errors import EnrolmentRejected
import numpy as np


@dataclass
class EnrolmentSample:
    """
    An accepted photo: its aligned crop, embedding and a quality score in [0, 1].

    ``masked`` is whether the model saw a mask (False when it cannot tell), so a masked
    photo becomes a masked template.
    """

    crop: np.ndarray
    embedding: np.ndarray
    quality: float
    sharpness: float
    face_size: float
    masked: bool = False


def shown_apart(value, bound, decimals=2):
    """
    Format ``value`` and the ``bound`` it missed with the decimals that tell them apart.

    At least ``decimals``, more where rounding would show both the same, so a refusal never
    reads ``low confidence 0.80 (needs 0.80)``: the comparison is on the exact values.
    """
    for places in range(decimals, decimals + 7):
        shown = f'{value:.{places}f}', f'{bound:.{places}f}'
        if shown[0] != shown[1]:
            break
    return shown


def sharpness(crop):
    """Return the variance of the Laplacian of the grey crop (low means blurred)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess_photo(image, pipeline, config):
    """
    Return an EnrolmentSample for a photo, or raise EnrolmentRejected saying why.

    The reasons are checked in the order a person would fix them: no face, several faces,
    a weak detection (a masked face may score lower), a face too small, a blurred face.
    """
    batch = pipeline.describe(image)
    if not batch.faces:
        raise EnrolmentRejected('no face found')
    if len(batch.faces) > 1:
        raise EnrolmentRejected(f'{len(batch.faces)} faces found; the photo must show one')
    face = batch.faces[0]
    masked = bool(batch.masks(pipeline.embedder.metadata.mask_threshold)[0][1])
    min_score = config.masked_min_score if masked else config.min_score
    if face.score < min_score:
        score, needed = shown_apart(face.score, min_score, 2)
        kind = 'masked face' if masked else 'face'
        raise EnrolmentRejected(f'{kind} detected with low confidence {score} (needs {needed})')
    if face.size < config.min_face_size:
        size, needed = shown_apart(face.size, config.min_face_size, 0)
        raise EnrolmentRejected(f'face too small: {size} px (needs {needed} px)')
    crop_sharpness = sharpness(batch.crops[0])
    if crop_sharpness < config.min_sharpness:
        value, needed = shown_apart(crop_sharpness, config.min_sharpness, 1)
        raise EnrolmentRejected(f'face too blurred: sharpness {value} (needs {needed})')
    quality = face.score * min(1.0, crop_sharpness / (4.0 * config.min_sharpness))
    return EnrolmentSample(batch.crops[0], batch.embeddings[0], float(quality),
                           crop_sharpness, face.size, masked)
