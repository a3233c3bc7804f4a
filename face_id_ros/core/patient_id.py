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
The ``/patient_id`` contract as plain data, independent of any ROS message library.

One ``PatientDetection`` per face. ``hypotheses[0]`` is the decision: a patient id only when
the temporal policy confirmed it, else ``unknown`` or ``pending``; its score is the best
candidate's, so the list stays sorted. The other candidates follow, best first, for logs.
Scores are cosines clipped at 0 (``core.matching``), the threshold's scale.

``embedded_at`` says where the identity comes from: None when this frame's face was embedded
in this frame (fresh), else the stamp of the earlier frame whose embedding the tracker
carried. On the message it is each detection's ``header.stamp`` (``core.ros_messages``):
the image's own stamp when fresh, that earlier frame's stamp when carried.

Whether a face wears a mask goes out beside it (``face_id/masks``), never into these
hypotheses, so that ``/patient_id`` means what it always meant: the same header, track ids
and boxes, one hypothesis per face: ``mask`` or ``no_mask`` with the model's confidence in
it, or ``unknown`` (score 0) when the model has no mask output.
"""

from dataclasses import dataclass

from face_id_ros.core.matching import UNKNOWN
from face_id_ros.core.tracking import CONFIRMED, PENDING

__all__ = ['CONFIRMED', 'Hypothesis', 'MASK', 'mask_detections', 'NO_MASK',
           'PatientDetection', 'PENDING', 'UNKNOWN', 'patient_detections']

MASK = 'mask'
NO_MASK = 'no_mask'


@dataclass(frozen=True)
class Hypothesis:
    """A class id (patient id, ``unknown`` or ``pending``) and its score in [0, 1]."""

    class_id: str
    score: float


@dataclass(frozen=True)
class PatientDetection:
    """
    One face: track id, box centre and size in source-image pixels, hypotheses.

    ``embedded_at`` is None when the identity was embedded in this frame (fresh), else the
    stamp (seconds) of the earlier frame whose embedding it carries.
    """

    track_id: str
    center_x: float
    center_y: float
    size_x: float
    size_y: float
    hypotheses: tuple
    embedded_at: float | None = None

    @property
    def fresh(self):
        """Whether this frame's own embedding made the decision."""
        return self.embedded_at is None

    @property
    def class_id(self):
        """Return the decision: a confirmed patient id, ``unknown`` or ``pending``."""
        return self.hypotheses[0].class_id if self.hypotheses else PENDING


def patient_detections(result):
    """Turn a pipeline ``FrameResult`` into the faces of one ``/patient_id`` message."""
    detections = []
    for face, box in zip(result.faces, result.boxes):
        candidates = tuple(Hypothesis(candidate.patient_id, float(candidate.score))
                           for candidate in face.candidates)
        best_score = candidates[0].score if candidates else 0.0
        if face.status == CONFIRMED:
            decision = Hypothesis(face.patient_id, best_score)
            others = tuple(item for item in candidates if item.class_id != face.patient_id)
        else:
            decision = Hypothesis(UNKNOWN if face.status == UNKNOWN else PENDING,
                                  best_score)
            others = candidates
        detections.append(_detection(face, box, (decision,) + others))
    return detections


def mask_detections(result):
    """Turn a pipeline ``FrameResult`` into the faces of one ``face_id/masks`` message."""
    detections = []
    for face, box in zip(result.faces, result.boxes):
        probability = face.mask_probability
        if face.masked is None:
            hypothesis = Hypothesis(UNKNOWN, 0.0)
        elif face.masked:
            hypothesis = Hypothesis(MASK, probability)
        else:
            hypothesis = Hypothesis(NO_MASK, 1.0 - probability)
        detections.append(_detection(face, box, (hypothesis,)))
    return detections


def _detection(face, box, hypotheses):
    """One face of a message: its track, its box as centre and size, its hypotheses."""
    x1, y1, x2, y2 = (float(value) for value in box)
    return PatientDetection(face.track_id, (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1,
                            y2 - y1, hypotheses, face.embedded_at)
