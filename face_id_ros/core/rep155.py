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
REP-155 (ROS4HRI) faces as plain data: topic names, geometry and message fields, no ROS.

The contract is hri_msgs 2.x, the release on both Humble (2.3.0) and Jazzy (2.3.2):
``/humans/faces/tracked`` (``IdsList``: header, ids), per face ``/humans/faces/<id>/roi``
(``NormalizedRegionOfInterest2D``: header, xmin, ymin, xmax, ymax, c, in [0, 1] of the
image), ``/cropped`` and ``/aligned`` (``sensor_msgs/Image``) and ``/landmarks``
(``FacialLandmarks``: header, 70 ``NormalizedPointOfInterest2D`` x, y, c, image height and
width), and ``/humans/candidate_matches`` (``IdsMatch``: id1, id1_type, id2, id2_type,
confidence; 0.0 means "not associated"). hri_msgs 0.x had other fields (``IdsMatch``
face_id/person_id and the like, ``RegionOfInterestStamped`` with pixel offsets); it was never
released for ROS 2, so only 2.x is spoken.

``cropped`` follows hri_face_detect: the face box scaled uniformly to fit a 128x128 image
and centred on black. hri_face_detect's ``aligned`` is that crop turned so the eyes are level,
not a recognition template, so the identifier re-aligns ``cropped`` with the landmarks
(``crop_points``); our own publisher's ``aligned`` is the crop our model embeds.

The builders return keyword dictionaries, so rclpy classes and ``rosbags`` dataclasses both
take them (as ``core/ros_messages.py`` does for ``/patient_id``).
"""

from dataclasses import dataclass
import re
import string

import cv2
from face_id_ros.core.alignment import align_face
from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS
import numpy as np

FACES_TRACKED = '/humans/faces/tracked'
CANDIDATE_MATCHES = '/humans/candidate_matches'
FACE_TOPICS = ('roi', 'cropped', 'aligned', 'landmarks')
CROPPED_SIZE = (128, 128)  # hri_face_detect's default /humans/faces/width and height

# IdsMatch id types.
UNSET, PERSON, FACE, BODY, VOICE = 0, 1, 2, 3, 4
# FacialLandmarks indices (OpenPose/dlib numbering) our detectors' points go to.
RIGHT_PUPIL, LEFT_PUPIL, NOSE = 68, 69, 30
MOUTH_OUTER_RIGHT, MOUTH_OUTER_LEFT, MOUTH_INNER_TOP_2 = 48, 54, 62
LANDMARK_COUNT = 70
# Our landmark sets in REP-155 indices, in the order of core.detection's points: YuNet's five
# as hri_face_detect maps them; BlazeFace's mouth centre is the stomion (inner top lip).
REP155_POINTS = {
    FIVE_POINTS: (RIGHT_PUPIL, LEFT_PUPIL, NOSE, MOUTH_OUTER_RIGHT, MOUTH_OUTER_LEFT),
    FOUR_POINTS: (RIGHT_PUPIL, LEFT_PUPIL, NOSE, MOUTH_INNER_TOP_2),
}

_LANDMARK_CONSTANTS = ''.join(
    f'uint8 {name}={index}\n' for name, index in (
        ('NOSE', NOSE), ('MOUTH_OUTER_RIGHT', MOUTH_OUTER_RIGHT),
        ('MOUTH_OUTER_LEFT', MOUTH_OUTER_LEFT), ('MOUTH_INNER_TOP_2', MOUTH_INNER_TOP_2),
        ('RIGHT_PUPIL', RIGHT_PUPIL), ('LEFT_PUPIL', LEFT_PUPIL)))
# hri_msgs 2.x definitions for rosbags (its typestores lack hri_msgs); FacialLandmarks keeps
# only the constants used here: constants are not serialised, the fields are hri_msgs'.
HRI_MSGS = {
    'hri_msgs/msg/IdsList': 'std_msgs/Header header\nstring[] ids\n',
    'hri_msgs/msg/IdsMatch': 'int8 UNSET=0\nint8 PERSON=1\nint8 FACE=2\nint8 BODY=3\n'
                             'int8 VOICE=4\nstring id1\nint8 id1_type\nstring id2\n'
                             'int8 id2_type\nfloat32 confidence\n',
    'hri_msgs/msg/NormalizedRegionOfInterest2D': 'std_msgs/Header header\nfloat32 xmin\n'
                                                 'float32 ymin\nfloat32 xmax\nfloat32 ymax\n'
                                                 'float32 c\n',
    'hri_msgs/msg/NormalizedPointOfInterest2D': 'float32 x\nfloat32 y\nfloat32 c\n',
    'hri_msgs/msg/FacialLandmarks': 'std_msgs/Header header\n' + _LANDMARK_CONSTANTS
                                    + 'hri_msgs/NormalizedPointOfInterest2D[] landmarks\n'
                                    'uint32 height\nuint32 width\n',
}
IDS_LIST = 'hri_msgs/msg/IdsList'
IDS_MATCH = 'hri_msgs/msg/IdsMatch'
ROI = 'hri_msgs/msg/NormalizedRegionOfInterest2D'
POINT = 'hri_msgs/msg/NormalizedPointOfInterest2D'
LANDMARKS = 'hri_msgs/msg/FacialLandmarks'
IMAGE = 'sensor_msgs/msg/Image'
TOPIC_TYPES = {'roi': ROI, 'cropped': IMAGE, 'aligned': IMAGE, 'landmarks': LANDMARKS}
_FACE_TOPIC = re.compile(r'^/humans/faces/([A-Za-z][A-Za-z0-9_]*)/(roi|cropped|aligned|'
                         r'landmarks)$')


def register_hri_msgs(typestore):
    """Register the hri_msgs 2.x types in a rosbags typestore; return it."""
    from rosbags.typesys import get_types_from_msg
    types = {}
    for name, text in HRI_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


def face_topic(face_id, name):
    """Return ``/humans/faces/<face_id>/<name>`` for one of FACE_TOPICS."""
    if name not in FACE_TOPICS:
        raise ValueError(f'{name!r} is not one of {FACE_TOPICS}')
    return f'/humans/faces/{face_id}/{name}'


def parse_face_topic(topic):
    """Return (face id, topic name) of a per-face REP-155 topic, or None for another topic."""
    found = _FACE_TOPIC.match(topic)
    return (found.group(1), found.group(2)) if found else None


def session_token(random=None):
    """Return 4 random lowercase letters that make this run's face ids its own."""
    random = random or np.random.default_rng()
    return ''.join(random.choice(list(string.ascii_lowercase), 4))


def rep155_face_id(track_id, session):
    """
    Return the REP-155 face id of one of our tracks (``face-17`` -> ``f<session>_17``).

    A topic name token allows no ``-``; the session token keeps ids unique across restarts, so
    a person manager never carries an old association over to a new face with the same number.
    """
    return f'f{session}_{track_id.rsplit("-", 1)[-1]}'


# Geometry ------------------------------------------------------------------------------------

def normalized_roi(box, image_size):
    """Return (xmin, ymin, xmax, ymax) of a pixel box as fractions of the image, in [0, 1]."""
    width, height = image_size
    scale = np.array([width, height, width, height], np.float64)
    return tuple(float(value) for value in np.clip(np.asarray(box, np.float64) / scale, 0, 1))


def pixel_box(roi, image_size):
    """Return the pixel box (x1, y1, x2, y2) of a normalised (xmin, ymin, xmax, ymax)."""
    width, height = image_size
    return np.asarray(roi, np.float64) * [width, height, width, height]


def crop_placement(box, crop_size=CROPPED_SIZE):
    """
    Return (scale, offset) that put a pixel ``box`` into a ``cropped`` image of ``crop_size``.

    The box is scaled uniformly to fit and centred, as hri_face_detect crops: a point ``p`` of
    the image lands at ``(p - box[:2]) * scale + offset`` in the crop.
    """
    width, height = crop_size
    box_width, box_height = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    scale = min(width / box_width, height / box_height)
    offset = np.array([(width - box_width * scale) / 2.0, (height - box_height * scale) / 2.0])
    return float(scale), offset


def cropped_face(image, box, crop_size=CROPPED_SIZE):
    """Return the ``cropped`` image of a face box: scaled to fit ``crop_size``, on black."""
    scale, offset = crop_placement(box, crop_size)
    matrix = np.array([[scale, 0.0, offset[0] - box[0] * scale],
                       [0.0, scale, offset[1] - box[1] * scale]])
    width, height = crop_size
    inside = np.zeros((height, width), np.uint8)
    x1, y1 = np.floor(offset).astype(int)
    x2 = int(np.ceil(offset[0] + (box[2] - box[0]) * scale))
    y2 = int(np.ceil(offset[1] + (box[3] - box[1]) * scale))
    inside[max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)] = 1
    warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_AREA
                            if scale < 1.0 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return warped * inside[..., None]


def crop_points(points, box, crop_size):
    """Map image-pixel landmark ``points`` (K, 2) into a ``cropped`` image of ``crop_size``."""
    scale, offset = crop_placement(box, crop_size)
    return (np.asarray(points, np.float64) - np.asarray(box[:2], np.float64)) * scale + offset


def align_cropped(crop, box, points, template_points, size):
    """
    Re-align a ``cropped`` face image to a recognition template; return the ``size`` crop.

    ``box`` and ``points`` (the landmarks) are in pixels of the source image; they are mapped
    into the crop, then the crop is warped as ``alignment.align_face`` warps a camera frame.
    What the template holds beyond the face box is black in the crop, as hri_face_detect
    leaves it: that, and the crop's 128 px, are what re-alignment costs (README: REP-155).
    """
    return align_face(crop, crop_points(points, box, crop.shape[1::-1]), template_points, size)


# Messages ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaceLandmarks:
    """A face's landmarks in image pixels, the set they form, and the image size."""

    points: np.ndarray
    landmark_set: str
    image_size: tuple


def landmark_fields(points, landmark_set, image_size, confidence):
    """
    Return the FacialLandmarks fields (besides header) for our detector's landmark ``points``.

    All 70 entries are present; the ones our detector does not give stay at 0 with ``c`` 0,
    as hri_face_detect leaves the points it has no detection for.
    """
    width, height = image_size
    entries = [(0.0, 0.0, 0.0)] * LANDMARK_COUNT
    for index, (x, y) in zip(REP155_POINTS[landmark_set], np.asarray(points, np.float64)):
        entries[index] = (float(np.clip(x / width, 0, 1)), float(np.clip(y / height, 0, 1)),
                          float(confidence))
    return {'entries': entries, 'height': int(height), 'width': int(width)}


def read_landmarks(entries, width, height):
    """
    Return FaceLandmarks from FacialLandmarks entries ``(x, y, c)``, or None when unusable.

    The five points (pupils, nose, mouth corners) are used when all are present (c > 0), else
    the four of BlazeFace (mouth centre at the inner top lip); anything less cannot align.
    """
    if len(entries) < LANDMARK_COUNT or width <= 0 or height <= 0:
        return None
    for landmark_set in (FIVE_POINTS, FOUR_POINTS):
        chosen = [entries[index] for index in REP155_POINTS[landmark_set]]
        if all(c > 0 for _, _, c in chosen):
            points = np.array([(x * width, y * height) for x, y, _ in chosen], np.float64)
            return FaceLandmarks(points, landmark_set, (int(width), int(height)))
    return None


@dataclass(frozen=True)
class CandidateMatch:
    """One ``/humans/candidate_matches`` message: face id, person id, confidence in [0, 1]."""

    face_id: str
    person_id: str
    confidence: float

    def fields(self):
        """Return the IdsMatch fields: a face matched to a person."""
        return {'id1': self.face_id, 'id1_type': FACE, 'id2': self.person_id,
                'id2_type': PERSON, 'confidence': float(self.confidence)}


def candidate_matches(confirmed_before, faces, ended_face_ids=()):
    """
    Return the candidate matches of one frame and the faces confirmed after it.

    ``confirmed_before`` maps face ids to the patient each was confirmed as in the frame
    before; ``faces`` are this frame's TrackedFace objects, their ``track_id`` the REP-155 face
    id; ``ended_face_ids`` left ``/humans/faces/tracked``. Fail closed: only a face whose
    status is ``confirmed`` is matched to a person, with its best score as confidence; a face
    ``unknown`` or ``pending`` is matched to nobody; a face that was confirmed and no longer is
    (or left) gets confidence 0.0 for that patient, REP-155's "not associated", so a person
    manager drops the association at once.
    """
    matches, confirmed = [], {}
    for face in faces:
        if face.status == 'confirmed' and face.patient_id:
            score = next((candidate.score for candidate in face.candidates
                          if candidate.patient_id == face.patient_id), 0.0)
            confirmed[face.track_id] = face.patient_id
            matches.append(CandidateMatch(face.track_id, face.patient_id, score))
    seen = {face.track_id for face in faces}
    for face_id, patient_id in sorted(confirmed_before.items()):
        still = confirmed.get(face_id)
        if still != patient_id and (face_id in seen or face_id in ended_face_ids):
            matches.append(CandidateMatch(face_id, patient_id, 0.0))
        elif still is None and face_id not in ended_face_ids:
            confirmed[face_id] = patient_id  # tracked but unseen this frame: it stands
    return matches, confirmed
