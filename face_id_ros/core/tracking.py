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
``unknown``: stale or ambiguous evidence never confirms (fail closed). A masked face matched
against bare templates only (the patient has no masked ones) needs more agreeing frames.

Embedding is the costly step, so a confirmed face that looks unchanged is not embedded every
frame: ``plan`` says which faces need a fresh embedding (every face not confirmed; a confirmed
one when its re-check period is over, the gallery changed, its box jumped, its landmarks
moved within it, or its look, a 16x16 thumbnail of the aligned face (``core.appearance``),
no longer matches the one at its last embedding: someone else may stand there), and a frame
without one carries the last embedding's decision, marked not fresh (``TrackedFace.fresh``,
``embedded_at``). A re-check that disagrees drops the confirmation at once and the carried
evidence with it, so only fresh agreeing frames confirm again. A changed look only forces
the re-check: BlazeFace's landmarks jitter by several pixels from frame to frame on a moving
face, which turns the aligned thumbnail by degrees (the demo's portrait correlates 0.40-0.95
with itself between consecutive frames), so starting the evidence afresh on it left a
moving patient confirmed one frame in three and never two in a row for the gate.

A still photo has no track: ``judge_still`` decides each face of it on its own embedding.
"""

from collections import deque
from dataclasses import dataclass, replace
import itertools

from face_id_ros.core.appearance import same_look
from face_id_ros.core.errors import ConfigError
from face_id_ros.core.matching import UNKNOWN
import numpy as np

CONFIRMED = 'confirmed'
PENDING = 'pending'


@dataclass(frozen=True)
class Evidence:
    """
    One frame's decision for a track: its stamp, decision and best candidate score.

    ``masked`` is whether the face wore a mask (None: the model cannot tell) and
    ``like_templates`` whether the decision compared it with templates of its own kind.
    ``embedded_at`` is None when this frame's face was embedded; otherwise the entry carries
    the decision and score of the embedding made at that earlier stamp (not fresh).
    """

    stamp: float
    decision: str
    score: float
    masked: bool | None = None
    like_templates: bool = True
    embedded_at: float | None = None

    @property
    def fresh(self):
        """Whether this frame's own embedding made the decision."""
        return self.embedded_at is None

    @property
    def masked_against_bare(self):
        """Tell whether a masked face was scored against bare templates only (weaker)."""
        return bool(self.masked) and not self.like_templates


@dataclass(frozen=True)
class TrackedFace:
    """
    A face in the current frame with its track and temporal status.

    ``status`` is ``confirmed`` (then ``patient_id`` is set), ``unknown`` or ``pending``;
    ``candidates`` and ``mask_probability`` (NaN: the model cannot tell) are from this
    frame's embedding, or when ``fresh`` is False from the last one (see ``evidence[-1]``);
    ``evidence`` is the window the status was decided on.
    """

    track_id: str
    status: str
    patient_id: str | None
    candidates: tuple
    evidence: tuple
    frames_seen: int
    mask_probability: float = float('nan')
    fresh: bool = True

    @property
    def embedded_at(self):
        """Return the stamp of the earlier embedding this frame carries (None: fresh)."""
        return self.evidence[-1].embedded_at if self.evidence else None

    @property
    def masked(self):
        """Return this frame's mask call (True, False, or None when unknown)."""
        return self.evidence[-1].masked if self.evidence else None


@dataclass(frozen=True)
class FramePlan:
    """
    One frame's faces matched to tracks, and which of them need a fresh embedding.

    ``fresh[row]`` is True where face ``row`` must be embedded this frame; ``shapes`` are the
    faces' landmarks relative to their boxes, ``looks`` their appearance signatures (None
    each where not given); ``revision`` the gallery revision matched.
    """

    stamp: float
    revision: int | None
    tracks: tuple
    shapes: tuple
    fresh: tuple
    looks: tuple = ()

    @property
    def fresh_rows(self):
        """Return the rows that need an embedding, in order."""
        return [row for row, needed in enumerate(self.fresh) if needed]


@dataclass(frozen=True)
class _Embedding:
    """When and against which gallery a track was last embedded, and what it gave."""

    stamp: float
    revision: int | None
    shape: np.ndarray | None
    look: np.ndarray | None
    candidates: tuple
    mask_probability: float


@dataclass
class _Track:
    track_id: str
    box: np.ndarray
    last_seen: float
    evidence: deque
    frames_seen: int = 0
    status: str = PENDING
    embedding: _Embedding | None = None


class FaceTracker:
    """Associate faces across frames and apply the temporal confirmation policy."""

    def __init__(self, config):
        """Start with no tracks; ``config`` is a TrackerConfig."""
        for name in ('confirm_frames', 'masked_confirm_frames'):
            if getattr(config, name) > config.window:
                raise ConfigError(f'tracker {name} ({getattr(config, name)}) exceeds window '
                                  f'({config.window}); such a face could never be confirmed')
        if config.recheck_period_s > config.max_gap_s:
            raise ConfigError(f'tracker recheck_period_s ({config.recheck_period_s}) exceeds '
                              f'max_gap_s ({config.max_gap_s}): a confirmation would rest on '
                              'an embedding older than the tracker calls stale')
        self.config = config
        self._ids = itertools.count(1)
        self._tracks = []
        self._last_stamp = None

    def reset(self):
        """End every track (ids keep counting, so none is ever reused)."""
        self._tracks = []
        self._last_stamp = None

    def plan(self, stamp_s, boxes, landmarks=None, revision=None, looks=None):
        """
        Match one frame's face boxes to tracks; say which faces need a fresh embedding.

        ``landmarks`` are the faces' (K, 2) landmark sets, ``revision`` the gallery revision
        they will be matched against and ``looks`` their appearance signatures
        (``core.appearance.FaceLooks``); without any of them, every face needs one. A
        stamp earlier than the previous frame's (a replayed bag looping) resets the tracker.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            self.reset()
        self._last_stamp = stamp_s
        self._tracks = [track for track in self._tracks
                        if stamp_s - track.last_seen <= self.config.max_gap_s]
        assigned = self._associate(boxes)
        tracks = tuple(assigned.get(row) for row in range(len(boxes)))
        shapes = tuple(face_shape(box, points) for box, points in
                       zip(boxes, [None] * len(boxes) if landmarks is None else landmarks))
        looks = (None,) * len(boxes) if looks is None else tuple(looks)
        if len(looks) != len(boxes):
            raise ValueError(f'{len(boxes)} boxes but {len(looks)} appearance signatures')
        fresh = tuple(self._needs_embedding(track, box, shape, look, stamp_s, revision)
                      for track, box, shape, look in zip(tracks, boxes, shapes, looks))
        return FramePlan(stamp_s, revision, tracks, shapes, fresh, looks)

    def update(self, stamp_s, boxes, matches, masks=None, plan=None):
        """
        Feed one frame's face boxes (N, 4 x1,y1,x2,y2) and matches; return N TrackedFace.

        ``masks`` holds each face's ``(mask probability, masked)`` (default: unknown).
        ``plan`` is this frame's ``plan`` (made here when None); a match may be None only
        where the plan needs no fresh embedding, and then the track carries its last one.
        The result is in the order of the inputs.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(matches):
            raise ValueError(f'{len(boxes)} boxes but {len(matches)} matches')
        masks = [(float('nan'), None)] * len(boxes) if masks is None else list(masks)
        plan = plan or self.plan(stamp_s, boxes)
        if plan.stamp != stamp_s or len(plan.fresh) != len(boxes):
            raise ValueError(f'the plan is for another frame (stamp {plan.stamp}, '
                             f'{len(plan.fresh)} faces)')
        faces = []
        for row, (box, face_match, mask) in enumerate(zip(boxes, matches, masks)):
            if face_match is None and plan.fresh[row]:
                raise ValueError(f'face {row} needs a fresh embedding but has no match')
            track = plan.tracks[row] or self._start_track(box)
            look = plan.looks[row] if plan.looks else None
            faces.append(self._observe(track, stamp_s, box, face_match, mask,
                                       plan.shapes[row], look, plan.revision))
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

    def _needs_embedding(self, track, box, shape, look, stamp_s, revision):
        """Whether a face must be embedded now: always, unless confirmed and unchanged."""
        if track is None or track.status != CONFIRMED or track.embedding is None:
            return True
        config, last = self.config, track.embedding
        if (stamp_s - last.stamp >= config.recheck_period_s or revision is None
                or revision != last.revision or shape is None or last.shape is None):
            return True
        box_overlap = iou_matrix(box[None], track.box[None])[0, 0]
        shift = float(np.abs(shape - last.shape).max())
        if box_overlap < config.recheck_min_iou or shift > config.recheck_landmark_shift:
            return True
        return same_look(look, last.look) < config.recheck_min_look

    def _observe(self, track, stamp_s, box, face_match, mask, shape, look, revision):
        """Add this frame's decision (or the carried one) to the track; decide its status."""
        track.box, track.last_seen = box, stamp_s
        track.frames_seen += 1
        if face_match is None:
            last = track.embedding
            track.evidence.append(replace(track.evidence[-1], stamp=stamp_s,
                                          embedded_at=last.stamp))
            candidates, probability = last.candidates, last.mask_probability
        else:
            probability, masked = mask
            candidates = face_match.candidates
            track.evidence.append(Evidence(stamp_s, face_match.decision,
                                           face_match.best_score, masked,
                                           face_match.like_templates))
            track.embedding = _Embedding(stamp_s, revision, shape, look, candidates,
                                         probability)
        while stamp_s - track.evidence[0].stamp > self.config.max_gap_s:
            track.evidence.popleft()
        status, patient_id = self._status(track.evidence)
        if status != CONFIRMED and not all(item.fresh for item in track.evidence):
            # A re-check disagreed: carried evidence never counts again (fail closed).
            track.evidence = deque((item for item in track.evidence if item.fresh),
                                   maxlen=self.config.window)
            status, patient_id = self._status(track.evidence)
        track.status = status
        return TrackedFace(track.track_id, status, patient_id, candidates,
                           tuple(track.evidence), track.frames_seen, probability,
                           face_match is not None)

    def _status(self, evidence):
        """Apply the temporal policy to a track's window; return (status, patient id)."""
        decisions = [item.decision for item in evidence]
        patients = set(decisions) - {UNKNOWN}
        latest = decisions[-1]
        needed = self.config.confirm_frames
        if any(item.masked_against_bare for item in evidence):
            needed = max(needed, self.config.masked_confirm_frames)
        if len(patients) == 1 and latest in patients and decisions.count(latest) >= needed:
            return CONFIRMED, latest
        if (decisions.count(UNKNOWN) >= self.config.confirm_frames
                or len(decisions) == self.config.window):
            return UNKNOWN, None
        return PENDING, None


def judge_still(track_id, face_match, mask=(float('nan'), None)):
    """
    Decide one face of a still photo on its own embedding; return a TrackedFace.

    ``confirmed`` when the matcher names a patient (threshold and margin); ``unknown`` when
    it names nobody; ``pending`` for a masked face named against bare templates only, which
    even a video confirms only after ``masked_confirm_frames`` agreeing frames: one photo is
    not enough evidence.
    """
    probability, masked = mask
    evidence = Evidence(0.0, face_match.decision, face_match.best_score, masked,
                        face_match.like_templates)
    if face_match.decision == UNKNOWN:
        status, patient_id = UNKNOWN, None
    elif evidence.masked_against_bare:
        status, patient_id = PENDING, None
    else:
        status, patient_id = CONFIRMED, face_match.decision
    return TrackedFace(track_id, status, patient_id, face_match.candidates, (evidence,), 1,
                       probability, True)


def face_shape(box, landmarks):
    """Return landmarks relative to their box, in box widths (None without landmarks)."""
    width = box[2] - box[0]
    if landmarks is None or width <= 0:
        return None
    return (np.asarray(landmarks, np.float64) - box[:2]) / width


def iou_matrix(boxes_a, boxes_b):
    """Intersection over union of every box in ``boxes_a`` with every box in ``boxes_b``."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
