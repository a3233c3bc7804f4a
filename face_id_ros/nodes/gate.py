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
The medication gate's decision: two independent identifiers must name the order's patient.

A dose is granted only when the confirmed face identity (``/patient_id``), the patient on
the medication order and a second, independent identifier (a wristband scan) all name the
same patient, each fresh, with exactly one face in view, confirmed over several frames, and
the model and gallery revision known, and only when the deciding frame's identity was
embedded in that frame (not carried by the tracker from an earlier one: the face might have
changed since). Anything else is denied with the first rule that failed (fail closed).
Every decision carries its evidence for the audit log. No ROS here: the node feeds messages
in and publishes the decisions.
"""

from collections import deque
from dataclasses import asdict, dataclass, field
import json

from face_id_ros.core.config import setting
from face_id_ros.core.patient_id import (Hypothesis, NO_MASK, PatientDetection, PENDING,
                                         UNKNOWN)
from face_id_ros.core.ros_messages import is_fresh, stamp_seconds

GRANT = 'grant'
DENY = 'deny'
# Confirmed-frame stamps kept as evidence.
EVIDENCE_FRAMES = 10


@dataclass(frozen=True)
class GateConfig:
    """How fresh and how steady the evidence must be."""

    face_max_age_s: float = setting(
        1.0, 'Oldest /patient_id frame (by its image stamp) a decision may rely on.',
        0.05, 30.0)
    wristband_max_age_s: float = setting(
        30.0, 'Oldest wristband scan a decision may rely on (scan again after this).',
        1.0, 600.0)
    order_max_age_s: float = setting(
        600.0, 'Oldest medication order a decision may rely on.', 1.0, 86400.0)
    min_confirmed_frames: int = setting(
        2, 'Consecutive /patient_id frames that must show the same track confirmed as the '
        'patient.', 1, 100)
    require_unmasked: bool = setting(
        False, 'Grant only when /face_id/masks shows the face without a mask in the deciding '
        'frame: for wards that want the face identifier unmasked. Off by default, as the '
        'wristband is the second identifier and a masked face is confirmed with more '
        'agreeing frames.')
    gallery_max_age_s: float = setting(
        0.0, 'Deny when the gallery revision behind /patient_id was last known current longer '
        'ago than this (the stamp of /face_id/gallery_info): a robot cut off from the '
        "hospital's gallery server for longer may not know of an erasure. 0: no limit.",
        0.0, 30 * 86400.0)


@dataclass(frozen=True)
class FaceFrame:
    """One /patient_id message: its image stamp (seconds) and the faces in view."""

    stamp: float
    faces: tuple


@dataclass(frozen=True)
class Reading:
    """A patient id read from a topic (order or wristband) and when it arrived (seconds)."""

    patient_id: str
    stamp: float


@dataclass(frozen=True)
class ModelInfo:
    """The model and gallery revision behind /patient_id (from /face_id/gallery_info)."""

    method: str
    gallery_location: str
    gallery_revision: int
    current_at: float = None  # when the revision was last known current (node clock, s)


@dataclass(frozen=True)
class Decision:
    """A grant or a denial, the patient it is for, the reason and the evidence."""

    decision: str
    patient_id: str
    reason: str
    time: float
    evidence: dict = field(default_factory=dict)

    @property
    def granted(self):
        """Return True only for a grant."""
        return self.decision == GRANT

    def to_json(self):
        """Return the decision as one JSON line for the audit log and the decision topic."""
        return json.dumps(asdict(self), sort_keys=True)


def face_frame_from_message(msg):
    """
    Turn a vision_msgs/Detection2DArray (rclpy or rosbags) into a FaceFrame.

    A detection whose header stamp is not the array's carries an identity embedded at that
    earlier stamp (``core.ros_messages``): its ``embedded_at``.
    """
    faces = tuple(
        PatientDetection(detection.id, detection.bbox.center.position.x,
                         detection.bbox.center.position.y, detection.bbox.size_x,
                         detection.bbox.size_y,
                         tuple(Hypothesis(result.hypothesis.class_id,
                                          float(result.hypothesis.score))
                               for result in detection.results),
                         None if is_fresh(detection, msg.header)
                         else stamp_seconds(detection.header.stamp))
        for detection in msg.detections)
    return FaceFrame(stamp_seconds(msg.header.stamp), faces)


def model_info_from_message(msg):
    """Turn a vision_msgs/VisionInfo into a ModelInfo."""
    return ModelInfo(msg.method, msg.database_location, int(msg.database_version),
                     stamp_seconds(msg.header.stamp))


class MedicationGate:
    """Collect the evidence as it arrives and decide on request; not thread-safe."""

    def __init__(self, config=None):
        """Start with no evidence at all: every decision is a denial until it arrives."""
        self.config = config or GateConfig()
        self.order = None
        self.wristband = None
        self.model = None
        self.frame = None
        self._masks = deque(maxlen=EVIDENCE_FRAMES)  # /face_id/masks frames, newest last
        self._streak_key = None
        self._streak_count = 0
        self._streak_stamps = deque(maxlen=EVIDENCE_FRAMES)

    def set_order(self, patient_id, stamp):
        """Record the patient on the medication order; an empty id cancels the order."""
        self.order = Reading(patient_id.strip(), stamp) if patient_id.strip() else None

    def scan_wristband(self, patient_id, stamp):
        """Record the patient id read from a wristband."""
        self.wristband = Reading(patient_id.strip(), stamp)

    def set_model(self, model_info):
        """Record the model and gallery revision that /patient_id comes from."""
        self.model = model_info

    def observe(self, frame):
        """
        Take one /patient_id frame; frames older than the newest seen are ignored.

        Counts the consecutive frames in which one face, on one track, is confirmed as one
        patient.
        """
        if self.frame is not None and frame.stamp <= self.frame.stamp:
            return
        self.frame = frame
        key = None
        if len(frame.faces) == 1 and _is_patient(frame.faces[0].class_id):
            key = (frame.faces[0].track_id, frame.faces[0].class_id)
        if key != self._streak_key:
            self._streak_key, self._streak_count = key, 0
            self._streak_stamps.clear()
        if key is not None:
            self._streak_count += 1
            self._streak_stamps.append(frame.stamp)

    def observe_masks(self, frame):
        """Take one /face_id/masks frame (it pairs with the /patient_id frame of its stamp)."""
        self._masks.append(frame)

    def _mask_of(self, face):
        """Return the mask call for ``face`` of the newest /patient_id frame (None: unseen)."""
        for masks in self._masks:
            if masks.stamp == self.frame.stamp:
                return next((item.class_id for item in masks.faces
                             if item.track_id == face.track_id), None)
        return None

    def decide(self, now):
        """Return the Decision for a dispense requested at ``now`` (seconds, node clock)."""
        evidence = self._evidence(now)
        patient_id = self.order.patient_id if self.order else ''
        reason = self._first_failed_rule(now)
        if reason is None:
            return Decision(GRANT, patient_id, f'face, order and wristband agree on '
                            f'{patient_id}', now, evidence)
        return Decision(DENY, patient_id, reason, now, evidence)

    def _first_failed_rule(self, now):
        config = self.config
        order, wristband, frame = self.order, self.wristband, self.frame
        if order is None:
            return 'no medication order'
        if now - order.stamp > config.order_max_age_s:
            return (f'the order is {now - order.stamp:.1f} s old '
                    f'(max {config.order_max_age_s:g} s)')
        if self.model is None:
            return 'model and gallery revision unknown (no /face_id/gallery_info received)'
        stale = self._stale_gallery(now)
        if stale:
            return stale
        if frame is None:
            return 'no /patient_id received: is face identification running?'
        age = now - frame.stamp
        if abs(age) > config.face_max_age_s:
            return (f'the newest /patient_id frame is {age:.2f} s old '
                    f'(max {config.face_max_age_s:g} s): camera or face identification '
                    'stalled, or clocks disagree')
        if not frame.faces:
            return 'nobody in view'
        if len(frame.faces) > 1:
            return f'{len(frame.faces)} faces in view: the identity is ambiguous'
        face = frame.faces[0]
        if face.class_id == UNKNOWN:
            return 'the face matches no enrolled patient'
        if face.class_id == PENDING:
            return 'the face is not confirmed yet'
        if face.class_id != order.patient_id:
            return f'the face is {face.class_id}, but the order is for {order.patient_id}'
        if self._streak_count < config.min_confirmed_frames:
            return (f'{face.class_id} confirmed in {self._streak_count} consecutive frame(s), '
                    f'needs {config.min_confirmed_frames}')
        mask = self._mask_of(face)
        if config.require_unmasked and mask != NO_MASK:
            return (f'{face.class_id} is confirmed, but an unmasked face is required '
                    f'(require_unmasked) and /face_id/masks shows '
                    f'{mask or "nothing for this frame"}')
        if wristband is None:
            return 'no wristband scan'
        if now - wristband.stamp > config.wristband_max_age_s:
            return (f'the wristband scan is {now - wristband.stamp:.1f} s old '
                    f'(max {config.wristband_max_age_s:g} s): scan again')
        if wristband.patient_id != order.patient_id:
            return (f'the wristband reads {wristband.patient_id}, but the order is for '
                    f'{order.patient_id}')
        if not face.fresh:
            # Last, so a lasting reason (wrong wristband...) is reported first: this one
            # passes by itself within the tracker's re-check period.
            return (f'{face.class_id} is confirmed, but the newest frame carries the identity '
                    f'embedded {frame.stamp - face.embedded_at:.2f} s earlier: a dispense '
                    'needs a frame whose face was embedded in that frame; ask again')
        return None

    def _stale_gallery(self, now):
        """Say why the gallery revision is too old to rely on ('' when it is fresh enough)."""
        limit = self.config.gallery_max_age_s
        current_at = self.model.current_at
        if not limit:
            return ''
        if current_at is None:
            return 'the gallery revision has no time (gallery_max_age_s is set)'
        if now - current_at > limit:
            return (f'the gallery revision {self.model.gallery_revision} was last known '
                    f'current {now - current_at:.0f} s ago (max {limit:g} s): this robot '
                    'cannot reach the gallery server and may not know of an erasure')
        return ''

    def _evidence(self, now):
        """Everything the decision looked at, with ages, for the audit log."""
        evidence = {'order': _reading(self.order, now), 'wristband': _reading(self.wristband, now),
                    'model': None, 'gallery': None, 'face': None,
                    'require_unmasked': self.config.require_unmasked}
        if self.model is not None:
            evidence['model'] = self.model.method
            evidence['gallery'] = {'location': self.model.gallery_location,
                                   'revision': self.model.gallery_revision,
                                   'age_s': (None if self.model.current_at is None
                                             else round(now - self.model.current_at, 3))}
        if self.frame is not None:
            evidence['face'] = {
                'frame_stamp': self.frame.stamp,
                'age_s': round(now - self.frame.stamp, 3),
                'faces_in_view': [{'track': face.track_id,
                                   'hypotheses': [[item.class_id, item.score]
                                                  for item in face.hypotheses],
                                   'fresh': face.fresh, 'embedded_at': face.embedded_at,
                                   'mask': self._mask_of(face)}
                                  for face in self.frame.faces],
                'confirmed_frames': self._streak_count,
                'confirmed_frame_stamps': list(self._streak_stamps),
            }
        return evidence


def _is_patient(class_id):
    return class_id not in (UNKNOWN, PENDING, '')


def _reading(reading, now):
    if reading is None:
        return None
    return {'patient_id': reading.patient_id, 'age_s': round(now - reading.stamp, 3)}
