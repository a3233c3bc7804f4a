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
A face's look in 256 numbers: the cheap per-frame test that a tracked face is still the same.

The tracker carries a confirmed face's identity to frames it does not embed. A stranger who
takes the patient's place in the same box, with landmarks much like theirs, moves neither
the box nor the landmarks; only the face itself changes. So every face of every frame gets
a signature: the face aligned as for the embedder, but only 32 pixels wide, averaged down to
16x16 grey. Two signatures are compared by their correlation (brightness and contrast do
not count). Measured on LFW (``face-id swap-benchmark``, and a patient photo moved, turned,
scaled, re-lit, noised and JPEG-compressed against itself): the same face correlates 0.89
or more with itself, 400 strangers put in its place at most 0.74 with the patient.
"""

import cv2
from face_id_ros.core.alignment import similarity_transform
import numpy as np

# Width of the warped face before averaging (pixels), and of the signature.
WARP_WIDTH = 32
SIGNATURE_WIDTH = 16


class FaceLooks:
    """Make the signatures of faces aligned to one embedder's template and input size."""

    def __init__(self, template_points, input_size):
        """``template_points`` and ``input_size`` (width, height) are the embedder's."""
        width, height = input_size
        scale = WARP_WIDTH / float(width)
        self.template = np.asarray(template_points, np.float64) * scale
        self.warp_size = (WARP_WIDTH, max(1, round(height * scale)))
        self.size = (SIGNATURE_WIDTH, max(1, round(height * SIGNATURE_WIDTH / width)))

    def looks(self, image, landmark_sets):
        """Return the signature of each face of one frame, in order (``signatures``)."""
        return signatures([self._thumbnail(image, landmarks) for landmarks in landmark_sets])

    def _thumbnail(self, image, landmarks):
        warped = cv2.warpAffine(image, similarity_transform(landmarks, self.template),
                                self.warp_size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(cv2.resize(warped, self.size, interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)


def signatures(thumbnails):
    """
    Return each thumbnail's signature: its pixels made zero-mean and unit-norm.

    A dot product of two signatures is then their correlation. A flat thumbnail (a uniform
    patch) says nothing about whose face it is: its signature is None.
    """
    if not len(thumbnails):
        return ()
    pixels = np.array(thumbnails, np.float32).reshape(len(thumbnails), -1)
    pixels -= pixels.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum('ij,ij->i', pixels, pixels))
    pixels /= np.maximum(norms, 1e-3)[:, None]
    return tuple(row if norm > 1e-3 else None for row, norm in zip(pixels, norms.tolist()))


def same_look(first, second):
    """
    Return the correlation of two signatures in [-1, 1]; 0 when either is missing.

    Brightness and contrast do not count (both are zero-mean and unit-norm).
    """
    if first is None or second is None or first.shape != second.shape:
        return 0.0
    return float(np.dot(first, second))
