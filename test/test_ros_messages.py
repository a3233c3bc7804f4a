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

"""``/patient_id`` messages built from real pipeline results, serialised as real CDR."""

from face_id_ros.core.matching import Candidate
from face_id_ros.core.patient_id import patient_detections
from face_id_ros.core.pipeline import FrameResult
from face_id_ros.core.ros_messages import build_detection_array, is_fresh, rosbags_typestore
from face_id_ros.core.tracking import Evidence, TrackedFace
import numpy as np
import pytest


def tracked(track_id, status, patient_id, scores, embedded_at=None):
    candidates = tuple(Candidate(pid, score, score) for pid, score in scores)
    evidence = (Evidence(12.5, patient_id or status, scores[0][1] if scores else None,
                         embedded_at=embedded_at),)
    return TrackedFace(track_id, status, patient_id, candidates, evidence, 3,
                       fresh=embedded_at is None)


@pytest.fixture
def result():
    faces = [tracked('face-1', 'confirmed', 'P-0042', [('P-0042', 0.91), ('P-0007', 0.62)]),
             tracked('face-2', 'unknown', None, [('P-0007', 0.55)]),
             tracked('face-3', 'pending', None, [])]
    boxes = [np.array([10, 20, 110, 140], np.float32), np.array([200, 50, 260, 120]),
             np.array([300, 300, 340, 350])]
    return FrameResult(12.5, faces, boxes, {}, 4)


def test_decision_comes_first_and_scores_stay_sorted(result):
    confirmed, unknown, pending = patient_detections(result)
    assert [h.class_id for h in confirmed.hypotheses] == ['P-0042', 'P-0007']
    assert [h.class_id for h in unknown.hypotheses] == ['unknown', 'P-0007']
    assert [h.class_id for h in pending.hypotheses] == ['pending']
    for detection in (confirmed, unknown, pending):
        scores = [h.score for h in detection.hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= score <= 1.0 for score in scores)
    assert (confirmed.center_x, confirmed.center_y) == (60.0, 80.0)
    assert (confirmed.size_x, confirmed.size_y) == (100.0, 120.0)


def test_messages_serialise_as_real_vision_msgs_and_keep_the_image_header(result):
    store = rosbags_typestore()
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    header = Header(stamp=Time(sec=12, nanosec=500000000), frame_id='camera_optical')
    message = build_detection_array(store.types, header, patient_detections(result))
    raw = store.serialize_cdr(message, 'vision_msgs/msg/Detection2DArray')
    decoded = store.deserialize_cdr(raw, 'vision_msgs/msg/Detection2DArray')
    assert decoded.header.stamp.sec == 12 and decoded.header.frame_id == 'camera_optical'
    assert [d.id for d in decoded.detections] == ['face-1', 'face-2', 'face-3']
    first = decoded.detections[0]
    assert first.results[0].hypothesis.class_id == 'P-0042'
    assert first.results[0].hypothesis.score == pytest.approx(0.91)
    assert first.bbox.center.position.x == pytest.approx(60.0)
    assert first.bbox.size_y == pytest.approx(120.0)


def test_an_empty_frame_gives_an_empty_array():
    store = rosbags_typestore()
    header = store.types['std_msgs/msg/Header'](
        stamp=store.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='cam')
    message = build_detection_array(store.types, header, [])
    raw = store.serialize_cdr(message, 'vision_msgs/msg/Detection2DArray')
    assert store.deserialize_cdr(raw, 'vision_msgs/msg/Detection2DArray').detections == []


def test_each_detection_header_says_when_its_identity_was_embedded():
    faces = [tracked('face-1', 'confirmed', 'P-0042', [('P-0042', 0.91)]),
             tracked('face-2', 'confirmed', 'P-0007', [('P-0007', 0.8)], embedded_at=12.2)]
    boxes = [np.array([10, 20, 110, 140]), np.array([200, 50, 260, 120])]
    store = rosbags_typestore()
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    header = Header(stamp=Time(sec=12, nanosec=500000000), frame_id='camera_optical')
    message = build_detection_array(store.types, header,
                                    patient_detections(FrameResult(12.5, faces, boxes, {}, 4)))
    decoded = store.deserialize_cdr(store.serialize_cdr(
        message, 'vision_msgs/msg/Detection2DArray'), 'vision_msgs/msg/Detection2DArray')
    fresh, carried = decoded.detections
    assert is_fresh(fresh, decoded.header) and not is_fresh(carried, decoded.header)
    assert (fresh.header.stamp.sec, fresh.header.stamp.nanosec) == (12, 500000000)
    assert (carried.header.stamp.sec, carried.header.stamp.nanosec) == (12, 200000000)
    assert carried.header.frame_id == 'camera_optical'
    assert carried.results[0].hypothesis.class_id == 'P-0007'  # still confirmed, not fresh
