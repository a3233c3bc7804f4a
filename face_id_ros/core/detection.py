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
Face detection behind one small interface: BlazeFace (embedded default) and YuNet.

A detector takes a BGR uint8 frame and returns ``Face`` objects in pixels of that frame.
BlazeFace comes bundled with mediapipe 0.10.21 and runs offline; YuNet needs a model file
that the user supplies (OpenCV Zoo's ``face_detection_yunet_2023mar.onnx``).
"""

import contextlib
from dataclasses import dataclass
import os
import sys

import cv2
from face_id_ros.core.errors import ConfigError, ModelError
import numpy as np

# Landmark sets a detector can give, in the order of the ArcFace template points.
FIVE_POINTS = 'five'    # right eye, left eye, nose tip, right and left mouth corner
FOUR_POINTS = 'four'    # right eye, left eye, nose tip, mouth centre (BlazeFace)


@dataclass
class Face:
    """One detected face: box ``(x1, y1, x2, y2)``, score in [0, 1], landmarks ``(K, 2)``."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    landmark_set: str

    @property
    def size(self):
        """Return the shorter side of the box in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class BlazeFaceDetector:
    """MediaPipe BlazeFace (short or full range) through its offline face_detection solution."""

    landmark_set = FOUR_POINTS

    def __init__(self, config):
        """Load the bundled model named by ``config.blazeface_range`` (short or full)."""
        from mediapipe.python.solutions import face_detection
        self._config = config
        with _native_stderr_silenced():
            self._solution = face_detection.FaceDetection(
                model_selection=0 if config.blazeface_range == 'short' else 1,
                min_detection_confidence=config.min_score)
            self._solution.process(np.zeros((128, 128, 3), np.uint8))  # warm-up

    def detect(self, image):
        """Return the faces in a BGR frame, largest first, at most ``max_faces``."""
        height, width = image.shape[:2]
        results = self._solution.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        faces = []
        for detection in results.detections or ():
            location = detection.location_data
            box = location.relative_bounding_box
            box = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height],
                           dtype=np.float32) * [width, height, width, height]
            # Keypoints: right eye, left eye, nose tip, mouth centre, right and left ear.
            points = np.array([(point.x * width, point.y * height)
                               for point in location.relative_keypoints[:4]], np.float32)
            faces.append(Face(box, float(detection.score[0]), points, FOUR_POINTS))
        return select_faces(faces, self._config, width, height)

    def close(self):
        """Release the mediapipe graph."""
        self._solution.close()


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``, with a user-supplied model file."""

    landmark_set = FIVE_POINTS

    def __init__(self, config):
        """Load the YuNet ONNX at ``config.yunet_model``; raise ModelError if unusable."""
        path = os.path.expanduser(config.yunet_model)
        if not os.path.isfile(path):
            raise ModelError(f'YuNet model not found: {path}')
        self._config = config
        try:
            self._detector = cv2.FaceDetectorYN.create(
                path, '', (320, 320), config.min_score, 0.3, 5000)
        except cv2.error as error:
            raise ModelError(f'cannot load YuNet model {path}: {error}')
        self._input_size = None

    def detect(self, image):
        """Return the faces in a BGR frame, largest first, at most ``max_faces``."""
        height, width = image.shape[:2]
        if self._input_size != (width, height):
            self._detector.setInputSize((width, height))
            self._input_size = (width, height)
        _, rows = self._detector.detect(image)
        faces = []
        for row in rows if rows is not None else ():
            x, y, w, h = row[:4]
            box = np.array([x, y, x + w, y + h], np.float32)
            faces.append(Face(box, float(row[14]), row[4:14].reshape(5, 2).astype(np.float32),
                              FIVE_POINTS))
        return select_faces(faces, self._config, width, height)

    def close(self):
        """Nothing to release; present for a uniform interface."""


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide the C++ start-up chatter of TFLite and absl (fd 2); Python errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def select_faces(faces, config, width, height):
    """Clip boxes to the frame, drop small or weak faces, keep the largest ``max_faces``."""
    kept = []
    for face in faces:
        face.box = np.clip(face.box, 0, [width, height, width, height]).astype(np.float32)
        if face.score >= config.min_score and face.size >= config.min_face_size:
            kept.append(face)
    kept.sort(key=lambda face: face.size, reverse=True)
    return kept[:config.max_faces]


def make_detector(config):
    """Build the detector that ``config.backend`` names."""
    backends = {'blazeface': BlazeFaceDetector, 'yunet': YuNetDetector}
    if config.backend not in backends:
        raise ConfigError(f'detector.backend {config.backend!r} is not one of {sorted(backends)}')
    return backends[config.backend](config)
