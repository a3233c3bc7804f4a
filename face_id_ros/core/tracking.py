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
Face tracks and the temporal policy that turns per-frame matches into identities.

Faces are followed across frames by box overlap. Each track keeps its recent per-frame
decisions; a patient is confirmed only when enough recent frames agree on them, the latest
frame does too, and no other patient appears among them. Anything else is ``pending`` or
``unknown``: stale or ambiguous evidence never confirms (fail closed).
"""

from collections import deque
from dataclasses import dataclass
import itertools

from face_id_ros.core.errors import ConfigError
from face_id_ros.core.matching import UNKNOWN
import numpy as np

CONFIRMED = 'confirmed'
PENDING = 'pending'


@dataclass(frozen=True)
class Evidence:
    """One frame's decision for a track: its stamp, decision and best candidate score."""

    stamp: float
    decision: str
    score: float


@dataclass(frozen=True)
class TrackedFace:
    """
    A face in the current frame with its track and temporal status.

    ``status`` is ``confirmed`` (then ``patient_id`` is set), ``unknown`` or ``pending``;
    ``candidates`` are this frame's; ``evidence`` is the window the status was decided on.
    """

    track_id: str
    status: str
    patient_id: str | None
    candidates: tuple
    evidence: tuple
    frames_seen: int


@dataclass
class _Track:
    track_id: str
    box: np.ndarray
    last_seen: float
    evidence: deque
    frames_seen: int = 0


class FaceTracker:
    """Associate faces across frames and apply the temporal confirmation policy."""

    def __init__(self, config):
        """Start with no tracks; ``config`` is a TrackerConfig."""
        if config.confirm_frames > config.window:
            raise ConfigError(f'tracker confirm_frames ({config.confirm_frames}) exceeds '
                              f'window ({config.window}); no face could ever be confirmed')
        self.config = config
        self._ids = itertools.count(1)
        self._tracks = []
        self._last_stamp = None

    def reset(self):
        """End every track (ids keep counting, so none is ever reused)."""
        self._tracks = []
        self._last_stamp = None

    def update(self, stamp_s, boxes, matches):
        """
        Feed one frame's face boxes (N, 4 x1,y1,x2,y2) and matches; return N TrackedFace.

        The result is in the order of the inputs. A stamp earlier than the previous frame's
        (a replayed bag looping) resets the tracker.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(matches):
            raise ValueError(f'{len(boxes)} boxes but {len(matches)} matches')
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            self.reset()
        self._last_stamp = stamp_s
        self._tracks = [track for track in self._tracks
                        if stamp_s - track.last_seen <= self.config.max_gap_s]
        assigned = self._associate(boxes)
        faces = []
        for row, (box, face_match) in enumerate(zip(boxes, matches)):
            track = assigned.get(row) or self._start_track(box)
            faces.append(self._observe(track, stamp_s, box, face_match))
        return faces

    def _associate(self, boxes):
        """Pair boxes with live tracks greedily, highest overlap first; {row: track}."""
        if not self._tracks or not len(boxes):
            return {}
        overlaps = iou_matrix(boxes, np.array([track.box for track in self._tracks]))
        assigned, used = {}, set()
        for flat in np.argsort(-overlaps, axis=None, kind='stable'):
            row, column = (int(index) for index in np.unravel_index(flat, overlaps.shape))
            overlap = overlaps[row, column]
            if overlap < self.config.iou_threshold or overlap <= 0.0:
                break
            if row not in assigned and column not in used:
                assigned[row] = self._tracks[column]
                used.add(column)
        return assigned

    def _start_track(self, box):
        track = _Track(f'face-{next(self._ids)}', box, 0.0,
                       deque(maxlen=self.config.window))
        self._tracks.append(track)
        return track

    def _observe(self, track, stamp_s, box, face_match):
        """Add this frame's decision to the track and decide its status."""
        track.box, track.last_seen = box, stamp_s
        track.frames_seen += 1
        track.evidence.append(Evidence(stamp_s, face_match.decision, face_match.best_score))
        while stamp_s - track.evidence[0].stamp > self.config.max_gap_s:
            track.evidence.popleft()
        status, patient_id = self._status(track.evidence)
        return TrackedFace(track.track_id, status, patient_id, face_match.candidates,
                           tuple(track.evidence), track.frames_seen)

    def _status(self, evidence):
        """Apply the temporal policy to a track's window; return (status, patient id)."""
        decisions = [item.decision for item in evidence]
        patients = set(decisions) - {UNKNOWN}
        latest = decisions[-1]
        if (len(patients) == 1 and latest in patients
                and decisions.count(latest) >= self.config.confirm_frames):
            return CONFIRMED, latest
        if (decisions.count(UNKNOWN) >= self.config.confirm_frames
                or len(decisions) == self.config.window):
            return UNKNOWN, None
        return PENDING, None


def iou_matrix(boxes_a, boxes_b):
    """Intersection over union of every box in ``boxes_a`` with every box in ``boxes_b``."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
