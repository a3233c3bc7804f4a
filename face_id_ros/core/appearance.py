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
A face's look in 256 bytes: the cheap per-frame test that a tracked face is still the same.

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

# Width of the warped face before averaging (pixels), and of the signature.
WARP_WIDTH = 32
SIGNATURE_WIDTH = 16


def face_signature(image, landmarks, template_points, input_size):
    """
    Return the face's signature: a (16, 16) uint8 grey thumbnail of the aligned face.

    ``template_points`` and ``input_size`` (width, height) are the embedder's alignment, so
    the thumbnail shows what the embedder would see, scaled down.
    """
    width, height = input_size
    scale = WARP_WIDTH / float(width)
    matrix = similarity_transform(landmarks, template_points) * scale
    warped = cv2.warpAffine(image, matrix, (WARP_WIDTH, max(1, round(height * scale))),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    small = cv2.resize(warped, (SIGNATURE_WIDTH, max(1, round(height * SIGNATURE_WIDTH / width))),
                       interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def same_look(first, second):
    """
    Return the correlation of two signatures in [-1, 1]; 0 when either is flat or missing.

    A flat thumbnail (a uniform patch) says nothing about whose face it is, so it never
    vouches for one (OpenCV calls a flat patch a perfect match).
    """
    if first is None or second is None or first.shape != second.shape:
        return 0.0
    for signature in (first, second):
        low, high, _, _ = cv2.minMaxLoc(signature)
        if high <= low:
            return 0.0
    return float(cv2.matchTemplate(first, second, cv2.TM_CCOEFF_NORMED)[0, 0])


def face_signatures(image, landmark_sets, template_points, input_size):
    """Return the signature of each face of one frame, in order."""
    return tuple(face_signature(image, landmarks, template_points, input_size)
                 for landmarks in landmark_sets)
