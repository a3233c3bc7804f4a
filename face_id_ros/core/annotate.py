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

"""Draw a frame's results for people: boxes, track ids, status, best candidates, masks."""

import cv2

# BGR colours: confirmed green, unknown red, pending amber.
STATUS_COLOURS = {'confirmed': (60, 180, 75), 'unknown': (40, 40, 220),
                  'pending': (0, 170, 255)}
MASK_LABELS = {True: ' (mask)', False: '', None: ''}


def draw_results(image, result):
    """Return a copy of the BGR frame with each face's box, track, status and score."""
    canvas = image.copy()
    for face, box in zip(result.faces, result.boxes):
        colour = STATUS_COLOURS.get(face.status, (200, 200, 200))
        x1, y1, x2, y2 = (int(round(value)) for value in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        label = face.patient_id if face.status == 'confirmed' else face.status
        if face.candidates:
            label += f' {face.candidates[0].score:.2f}'
        label = f'{face.track_id} {label}' + MASK_LABELS[face.masked]
        if not face.fresh:  # the identity carried from an earlier frame's embedding
            label += ' (carried)'
        (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - height - 6, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + 6), colour, -1)
        cv2.putText(canvas, label, (x1 + 2, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
