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

"""
Synthetic face masks painted from a face's five landmarks.

One renderer for training (augmentation and the mask classifier's synthetic positives) and
for the masked ward round. The mask is drawn in the ArcFace 112 template's frame, from the
nose bridge over mouth and chin, and carried onto the image by the similarity that maps the
template onto the face's landmarks, so it follows a face's size, position and roll. Its
look varies as real masks do (surgical blue, white, black cloth, N95 grey, printed
patterns; pleats, shading) and takes the scene's light: a classifier trained on one colour
would learn the colour, not the mask. Real masked photos (RMFD) stay the measure; these never are.
"""

import cv2
from face_id_ros.core.alignment import detector_template, similarity_transform
from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
import numpy as np

# Outline in template pixels: nose bridge (top, left to right), then cheek, jaw and chin.
TOP_EDGE = ((16.0, 68.0), (34.0, 62.5), (56.0, 60.0), (78.0, 62.5), (96.0, 68.0))
LOWER_EDGE = ((99.0, 82.0), (94.0, 101.0), (78.0, 114.0), (56.0, 119.0), (34.0, 114.0),
              (18.0, 101.0), (13.0, 82.0))
# Base colours (BGR): surgical blue, white, surgical green, black, N95 grey, pink, yellow.
MASK_COLOURS = ((230, 205, 175), (236, 234, 232), (195, 215, 180), (50, 45, 45),
                (200, 200, 195), (200, 185, 235), (150, 225, 235))
WELL_LIT_SKIN = 150.0  # grey level of a cheek in a well-lit photo
SUPERSAMPLE = 3  # the template frame is drawn at 3x so that edges stay smooth when warped


def paint_mask(image, landmarks, rng, template=ARCFACE_TEMPLATE_112):
    """
    Return a copy of the BGR uint8 ``image`` with a mask painted on the face at ``landmarks``.

    ``landmarks`` are points in image pixels and ``template`` where those points lie in the
    ArcFace 112 crop (the five ArcFace points by default; ``paint_mask_on_face`` maps a
    detector's own points).
    ``rng`` (``numpy.random.Generator``) picks the mask's shape, colour and texture.
    """
    colour_layer, alpha = _mask_in_template(rng)
    to_image = similarity_transform(np.asarray(template, np.float64) * SUPERSAMPLE,
                                    np.asarray(landmarks, np.float64))
    size = (image.shape[1], image.shape[0])
    colour_layer = cv2.warpAffine(colour_layer, to_image, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, to_image, size, flags=cv2.INTER_LINEAR)[..., None]
    colour_layer *= _scene_light(image, alpha)
    blended = image.astype(np.float32) * (1.0 - alpha) + colour_layer * alpha
    return np.clip(blended, 0, 255).astype(np.uint8)


def paint_mask_on_face(image, face, rng):
    """Return a copy of the BGR ``image`` with a mask on ``face``, a detector's Face."""
    return paint_mask(image, face.landmarks, rng,
                      detector_template(face.landmark_set, ARCFACE_TEMPLATE_112))


def paint_masks_on_crops(crops, rng, template=ARCFACE_TEMPLATE_112, offsets=None):
    """
    Paint a mask on each aligned crop ``(N, H, W, 3)``; return the masked copies.

    ``offsets`` ``(N, 2)`` (row, column) shift each crop's template, as random crops in a
    canvas margin do; ``template`` is in the crops' own pixels.
    """
    template = np.asarray(template, np.float64)
    masked = np.empty_like(crops)
    for index, crop in enumerate(crops):
        points = template if offsets is None else template - np.asarray(offsets[index])[::-1]
        masked[index] = paint_mask(crop, points, rng)
    return masked


def _scene_light(image, alpha):
    """Brightness of the covered skin against a well-lit face, so a dark ward darkens it."""
    weight = alpha[..., 0]
    if weight.sum() < 1.0:
        return 1.0
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.clip((luma * weight).sum() / weight.sum() / WELL_LIT_SKIN, 0.3, 1.15))


def _mask_in_template(rng):
    """Draw one random mask in the supersampled template frame: (colour float32, alpha)."""
    side = int(128 * SUPERSAMPLE)
    outline = _outline(rng) * SUPERSAMPLE
    alpha = np.zeros((side, side), np.float32)
    cv2.fillPoly(alpha, [np.round(outline * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.6 * SUPERSAMPLE)
    return _texture(rng, side, outline), alpha * rng.uniform(0.93, 1.0)


def _outline(rng):
    """Jitter the outline: height of the top edge, width, depth of the chin."""
    top = np.array(TOP_EDGE) + [0.0, rng.uniform(-2.0, 5.0)]
    lower = np.array(LOWER_EDGE)
    lower[:, 1] += rng.uniform(-3.0, 4.0) * (lower[:, 1] - 80.0) / 40.0
    outline = np.vstack([top, lower])
    centre_x = 56.0
    outline[:, 0] = centre_x + (outline[:, 0] - centre_x) * rng.uniform(0.92, 1.06)
    return outline


def _texture(rng, side, outline):
    """Colour, pleats or a printed pattern, and a vertical shading across the mask."""
    base = np.array(MASK_COLOURS[rng.integers(len(MASK_COLOURS))], np.float32)
    base = np.clip(base * rng.uniform(0.8, 1.1) + rng.normal(0, 8, 3), 0, 255)
    rows = np.arange(side, dtype=np.float32)[:, None]
    top, bottom = outline[:, 1].min(), outline[:, 1].max()
    depth = np.clip((rows - top) / max(bottom - top, 1.0), 0.0, 1.0)
    shade = 1.0 - rng.uniform(0.0, 0.25) * np.abs(depth - rng.uniform(0.3, 0.7))
    colour = np.broadcast_to(base, (side, side, 3)) * shade[..., None]
    style = rng.integers(3)
    if style == 0:  # pleats of a surgical mask
        period = rng.uniform(5.0, 9.0) * SUPERSAMPLE
        pleats = 1.0 - 0.08 * (np.floor((rows - top) / period) % 2)
        colour = colour * pleats[..., None]
    elif style == 1:  # a printed cloth mask: coarse blotches, mostly of one hue
        blotches = rng.normal(0, 1, (8, 8, 1)) + rng.normal(0, 0.3, (8, 8, 3))
        blotches = cv2.resize(blotches.astype(np.float32), (side, side),
                              interpolation=cv2.INTER_CUBIC)
        colour = colour + blotches * rng.uniform(10.0, 35.0)
    return np.clip(colour, 0, 255).astype(np.float32)
