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

"""Face tracks and the temporal policy: only agreeing, fresh, unambiguous evidence confirms."""

from face_id_ros.core.config import TrackerConfig
from face_id_ros.core.errors import ConfigError
from face_id_ros.core.matching import Candidate, FaceMatch, UNKNOWN
from face_id_ros.core.tracking import CONFIRMED, FaceTracker, PENDING
import numpy as np
import pytest

FRAME_S = 1.0 / 30.0
CONFIG = TrackerConfig(iou_threshold=0.3, window=5, confirm_frames=3, max_gap_s=0.5)


def decided(decision, cosine=0.7):
    """Return a FaceMatch deciding ``decision`` with a plausible candidate list."""
    best = 'P-0001' if decision == UNKNOWN else decision
    return FaceMatch(decision, (Candidate(best, cosine, (cosine + 1.0) / 2.0),))


def box(x, y=100.0, size=80.0):
    return [x, y, x + size, y + size]


def run(tracker, decisions, x=100.0, start=0.0, step=FRAME_S):
    """Feed one face, moving right 4 px a frame, through ``decisions``; return its faces."""
    faces = []
    for index, decision in enumerate(decisions):
        [face] = tracker.update(start + index * step, [box(x + 4.0 * index)],
                                [decided(decision)])
        faces.append(face)
    return faces


def test_a_moving_face_keeps_its_track_id():
    faces = run(FaceTracker(CONFIG), ['P-0001'] * 12)
    assert {face.track_id for face in faces} == {'face-1'}
    assert [face.frames_seen for face in faces] == list(range(1, 13))


def test_confirmation_needs_confirm_frames_agreeing_frames():
    faces = run(FaceTracker(CONFIG), ['P-0001'] * 3)
    assert [(face.status, face.patient_id) for face in faces] == [
        (PENDING, None), (PENDING, None), (CONFIRMED, 'P-0001')]
    assert [item.decision for item in faces[-1].evidence] == ['P-0001'] * 3
    assert faces[-1].evidence[-1].score == pytest.approx(0.85)
    assert faces[-1].candidates[0].patient_id == 'P-0001'


def test_a_single_disagreeing_frame_blocks_confirmation_while_in_the_window():
    decisions = ['P-0001', 'P-0002', 'P-0001', 'P-0001', 'P-0001', 'P-0001', 'P-0001']
    faces = run(FaceTracker(CONFIG), decisions)
    assert [face.status for face in faces] == [
        PENDING, PENDING, PENDING, PENDING, UNKNOWN, UNKNOWN, CONFIRMED]
    assert all(face.patient_id is None for face in faces[:-1])


def test_the_latest_frame_must_agree():
    faces = run(FaceTracker(CONFIG), ['P-0001', 'P-0001', 'P-0001', UNKNOWN, 'P-0001'])
    assert [face.status for face in faces] == [
        PENDING, PENDING, CONFIRMED, PENDING, CONFIRMED]
    assert faces[3].patient_id is None


def test_a_confirmed_track_drops_at_once_when_another_patient_appears():
    faces = run(FaceTracker(CONFIG), ['P-0001'] * 3 + ['P-0002'] * 4)
    assert faces[2].status == CONFIRMED
    assert [face.patient_id for face in faces[3:]] == [None] * 4
    assert [face.status for face in faces[3:]] == [PENDING, UNKNOWN, UNKNOWN, UNKNOWN]


def test_a_stranger_becomes_unknown():
    faces = run(FaceTracker(CONFIG), [UNKNOWN] * 3)
    assert [face.status for face in faces] == [PENDING, PENDING, UNKNOWN]


def test_a_stale_gap_ends_the_track_and_a_new_id_is_issued():
    tracker = FaceTracker(CONFIG)
    before = run(tracker, ['P-0001'] * 3)
    assert before[-1].status == CONFIRMED
    [after] = tracker.update(2 * FRAME_S + 0.6, [box(108.0)], [decided('P-0001')])
    assert after.track_id == 'face-2'
    assert (after.status, after.frames_seen, len(after.evidence)) == (PENDING, 1, 1)


def test_evidence_older_than_the_gap_never_confirms():
    faces = run(FaceTracker(CONFIG), ['P-0001'] * 6, step=0.3)
    assert {face.track_id for face in faces} == {'face-1'}
    assert {face.status for face in faces} == {PENDING}
    assert all(len(face.evidence) == 2 for face in faces[1:])


def test_two_faces_keep_their_ids_whatever_the_input_order():
    tracker = FaceTracker(CONFIG)
    for index in range(8):
        left, right = box(100.0 + 6.0 * index), box(400.0 - 6.0 * index)
        if index % 2:
            faces = tracker.update(index * FRAME_S, [right, left],
                                   [decided('P-0002'), decided('P-0001')])
            faces.reverse()
        else:
            faces = tracker.update(index * FRAME_S, [left, right],
                                   [decided('P-0001'), decided('P-0002')])
        assert [face.track_id for face in faces] == ['face-1', 'face-2']
    assert [(face.status, face.patient_id) for face in faces] == [
        (CONFIRMED, 'P-0001'), (CONFIRMED, 'P-0002')]


def test_greedy_association_prefers_the_larger_overlap():
    tracker = FaceTracker(TrackerConfig(iou_threshold=0.1, window=5, confirm_frames=3))
    tracker.update(0.0, [box(100.0), box(160.0)], [decided(UNKNOWN)] * 2)
    # The new box overlaps both old ones; it continues the nearer one (face-2).
    [face] = tracker.update(FRAME_S, [box(150.0)], [decided(UNKNOWN)])
    assert face.track_id == 'face-2'


def test_stamps_going_backwards_reset_without_reusing_ids():
    tracker = FaceTracker(CONFIG)
    run(tracker, ['P-0001'] * 3, start=10.0)
    [replayed] = tracker.update(0.0, [box(100.0)], [decided('P-0001')])
    assert replayed.track_id == 'face-2'
    assert (replayed.status, replayed.frames_seen, len(replayed.evidence)) == (PENDING, 1, 1)


def test_an_empty_frame_keeps_tracks_within_the_gap():
    tracker = FaceTracker(CONFIG)
    run(tracker, ['P-0001'] * 2)
    assert tracker.update(2 * FRAME_S, np.zeros((0, 4)), []) == []
    [face] = tracker.update(3 * FRAME_S, [box(112.0)], [decided('P-0001')])
    assert (face.track_id, face.status) == ('face-1', CONFIRMED)


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ConfigError, match='confirm_frames'):
        FaceTracker(TrackerConfig(window=2, confirm_frames=3))
    with pytest.raises(ValueError, match='2 boxes but 1 matches'):
        FaceTracker(CONFIG).update(0.0, [box(0.0), box(200.0)], [decided(UNKNOWN)])
