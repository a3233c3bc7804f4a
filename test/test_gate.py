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

"""The medication gate grants only when face, order and wristband agree and are fresh."""

from dataclasses import replace
import json

from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.patient_id import Hypothesis, patient_detections, PatientDetection
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.ros_messages import build_detection_array, rosbags_typestore
from face_id_ros.evaluation.samples import compose_frame
from face_id_ros.nodes.gate import (DENY, face_frame_from_message, FaceFrame, GateConfig,
                                    GRANT, MedicationGate, model_info_from_message, ModelInfo)
from face_id_ros.nodes.node_status import LoadedModel, vision_info_fields
import pytest

MODEL = ModelInfo('tiny-test 0 sha256:0123', '/ward/gallery.db', 7)
NOW = 1000.0


def face(track, *hypotheses, embedded_at=None):
    """Return a /patient_id face with the given (class id, score) hypotheses."""
    return PatientDetection(track, 320.0, 240.0, 120.0, 120.0,
                            tuple(Hypothesis(class_id, score) for class_id, score in hypotheses),
                            embedded_at)


def confirmed(track='face-3', patient='P-0042', score=0.93, embedded_at=None):
    return face(track, (patient, score), ('P-0007', 0.61), embedded_at=embedded_at)


def ready_gate(config=None):
    """Return a gate holding fresh, agreeing evidence: a decision at NOW is a grant."""
    gate = MedicationGate(config or GateConfig())
    gate.set_model(MODEL)
    gate.set_order('P-0042', NOW - 60.0)
    gate.scan_wristband('P-0042', NOW - 5.0)
    for index in range(3):
        gate.observe(FaceFrame(NOW - 0.3 + 0.1 * index, (confirmed(),)))
    return gate


def test_a_ward_may_deny_when_the_robot_has_not_synced_the_gallery_lately():
    """gallery_max_age_s: a robot cut off from the gallery server may miss an erasure."""
    limited = GateConfig(gallery_max_age_s=600.0)
    assert ready_gate().decide(NOW).granted  # no limit: the revision's age is not asked
    gate = ready_gate(limited)
    assert 'has no time' in gate.decide(NOW).reason
    gate.set_model(replace(MODEL, current_at=NOW - 30.0))
    assert gate.decide(NOW).granted
    assert gate.decide(NOW).evidence['gallery']['age_s'] == 30.0
    gate.set_model(replace(MODEL, current_at=NOW - 601.0))
    decision = gate.decide(NOW)
    assert not decision.granted
    assert decision.reason.startswith('the gallery revision 7 was last known current 601 s '
                                      'ago (max 600 s)')


def test_agreeing_fresh_evidence_is_granted_with_its_evidence():
    decision = ready_gate().decide(NOW)
    assert decision.granted and decision.decision == GRANT
    assert decision.patient_id == 'P-0042'
    record = json.loads(decision.to_json())
    evidence = record['evidence']
    assert evidence['model'] == MODEL.method
    assert evidence['gallery'] == {'location': '/ward/gallery.db', 'revision': 7,
                                   'age_s': None}
    assert evidence['order'] == {'patient_id': 'P-0042', 'age_s': 60.0}
    assert evidence['wristband'] == {'patient_id': 'P-0042', 'age_s': 5.0}
    assert evidence['face']['faces_in_view'] == [
        {'track': 'face-3', 'hypotheses': [['P-0042', 0.93], ['P-0007', 0.61]], 'fresh': True,
         'embedded_at': None, 'mask': None}]
    assert evidence['face']['confirmed_frames'] == 3
    assert evidence['face']['confirmed_frame_stamps'] == pytest.approx([999.7, 999.8, 999.9])


def _no_order(gate):
    gate.order = None


def _cancelled_order(gate):
    gate.set_order('  ', NOW)


def _no_model(gate):
    gate.model = None


def _no_wristband(gate):
    gate.wristband = None


@pytest.mark.parametrize('change, reason', [
    (_no_order, 'no medication order'),
    (_cancelled_order, 'no medication order'),
    (lambda gate: gate.set_order('P-0042', NOW - 601.0), 'the order is 601.0 s old'),
    (_no_model, 'model and gallery revision unknown'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, ())), 'nobody in view'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (confirmed(), confirmed('face-4')))),
     '2 faces in view: the identity is ambiguous'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (face(
        'face-3', ('unknown', 0.7), ('P-0042', 0.7)),))), 'matches no enrolled patient'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (face('face-3'),))),
     'not confirmed yet'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (confirmed(patient='P-0007'),))),
     'the face is P-0007, but the order is for P-0042'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (confirmed(track='face-9'),))),
     'P-0042 confirmed in 1 consecutive frame(s), needs 2'),
    (_no_wristband, 'no wristband scan'),
    (lambda gate: gate.scan_wristband('P-0042', NOW - 31.0), 'the wristband scan is 31.0 s old'),
    (lambda gate: gate.scan_wristband('P-0007', NOW),
     'the wristband reads P-0007, but the order is for P-0042'),
    (lambda gate: gate.set_order('P-0007', NOW),
     'the face is P-0042, but the order is for P-0007'),
    (lambda gate: gate.observe(FaceFrame(NOW + 0.05, (confirmed(embedded_at=NOW - 0.1),))),
     'the newest frame carries the identity embedded 0.15 s earlier'),
])
def test_each_missing_stale_or_disagreeing_item_denies_with_its_reason(change, reason):
    gate = ready_gate()
    change(gate)
    decision = gate.decide(NOW)
    assert decision.decision == DENY and not decision.granted
    assert reason in decision.reason


def test_stale_or_future_face_frames_deny():
    gate = ready_gate(GateConfig(face_max_age_s=0.5))
    assert gate.decide(NOW).granted
    assert 'frame is 0.60 s old' in gate.decide(NOW + 0.5).reason
    gate = ready_gate()
    assert 'clocks disagree' in gate.decide(NOW - 2.0).reason


def test_an_older_frame_arriving_late_is_ignored():
    gate = ready_gate()
    gate.observe(FaceFrame(NOW - 5.0, ()))
    assert gate.decide(NOW).granted


def test_the_streak_restarts_when_the_track_or_the_patient_changes():
    gate = ready_gate(GateConfig(min_confirmed_frames=3))
    assert gate.decide(NOW).granted
    gate.observe(FaceFrame(NOW + 0.1, (face('face-3', ('pending', 0.8)),)))
    gate.observe(FaceFrame(NOW + 0.2, (confirmed(),)))
    gate.observe(FaceFrame(NOW + 0.3, (confirmed(),)))
    assert 'confirmed in 2 consecutive frame(s), needs 3' in gate.decide(NOW + 0.3).reason
    gate.observe(FaceFrame(NOW + 0.4, (confirmed(),)))
    assert gate.decide(NOW + 0.4).granted


def test_real_patient_id_messages_drive_the_gate(tiny_model, portrait, tmp_path):
    """Pipeline -> /patient_id serialised as CDR -> gate, with the node's gallery info."""
    config = PipelineConfig().replace(embedder={'model': str(tiny_model)},
                                      gallery={'path': str(tmp_path / 'g.db'),
                                               'encryption': 'off'})
    pipeline = Pipeline(config)
    frame = compose_frame(portrait, (640, 480), [(320, 240)], 300)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        gallery.add_templates('P-0001', pipeline.describe(frame).embeddings, ['test'], [1.0])
        pipeline.set_gallery(gallery.snapshot())
        loaded = LoadedModel('tiny-test', '0', pipeline.embedder.fingerprint, gallery.path,
                             gallery.revision, 1)
    store = rosbags_typestore()
    vision_info = store.types['vision_msgs/msg/VisionInfo']
    Header, Time = store.types['std_msgs/msg/Header'], store.types['builtin_interfaces/msg/Time']
    info = vision_info(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=''),
                       **vision_info_fields(loaded))
    info = store.deserialize_cdr(store.serialize_cdr(info, 'vision_msgs/msg/VisionInfo'),
                                 'vision_msgs/msg/VisionInfo')
    gate = MedicationGate()
    gate.set_model(model_info_from_message(info))
    gate.set_order('P-0001', 100.0)
    gate.scan_wristband('P-0001', 100.0)
    decisions = []
    for index in range(10):
        stamp = 100.0 + index / 10.0
        result = pipeline.process(frame, stamp)
        header = Header(stamp=Time(sec=100, nanosec=index * 100_000_000), frame_id='camera')
        raw = store.serialize_cdr(
            build_detection_array(store.types, header, patient_detections(result)),
            'vision_msgs/msg/Detection2DArray')
        gate.observe(face_frame_from_message(
            store.deserialize_cdr(raw, 'vision_msgs/msg/Detection2DArray')))
        decisions.append(gate.decide(stamp + 0.05))
    # Confirmed at frame 2; the tracker carries it to frames 3-6 without embedding them and
    # embeds it again at 7 (0.5 s later): only that fresh frame is granted.
    assert [decision.granted for decision in decisions] == [False] * 7 + [True, False, False]
    assert 'not confirmed yet' in decisions[0].reason
    assert 'confirmed in 1 consecutive frame(s)' in decisions[2].reason
    assert all('carries the identity embedded' in decision.reason
               for decision in decisions[3:7] + decisions[8:])
    evidence = decisions[7].evidence
    assert evidence['gallery']['location'] == str(tmp_path / 'g.db')
    assert evidence['gallery']['revision'] == 1
    assert evidence['model'].startswith('tiny-test 0 sha256:')
    assert evidence['face']['faces_in_view'][0]['track'] == 'face-1'
    assert evidence['face']['faces_in_view'][0]['hypotheses'][0][0] == 'P-0001'


def masks_frame(stamp, call, track='face-3'):
    """Return a /face_id/masks frame with one face's mask call."""
    return FaceFrame(stamp, (face(track, (call, 0.97)),))


@pytest.mark.parametrize('call, granted', [('no_mask', True), ('mask', False),
                                           ('unknown', False), (None, False)])
def test_an_unmasked_face_can_be_required(call, granted):
    gate = ready_gate(GateConfig(require_unmasked=True))
    if call is not None:
        gate.observe_masks(masks_frame(gate.frame.stamp, call))
    gate.observe_masks(masks_frame(gate.frame.stamp - 0.1, 'no_mask'))  # an older frame's
    decision = gate.decide(NOW)
    assert decision.granted is granted
    assert decision.evidence['require_unmasked'] is True
    assert decision.evidence['face']['faces_in_view'][0]['mask'] == call
    if not granted:
        assert 'an unmasked face is required (require_unmasked)' in decision.reason


def test_by_default_a_masked_confirmed_face_is_granted_and_the_mask_is_in_the_evidence():
    gate = ready_gate()
    gate.observe_masks(masks_frame(gate.frame.stamp, 'mask'))
    decision = gate.decide(NOW)
    assert decision.granted
    assert decision.evidence['face']['faces_in_view'][0]['mask'] == 'mask'


def test_real_masks_messages_reach_the_gate(portrait, tmp_path):
    """The shipped model's /face_id/masks, serialised as CDR, tell the gate a masked face."""
    from face_id_ros.core.patient_id import mask_detections
    from face_id_ros.evaluation.synthetic_masks import paint_mask_on_face
    import numpy as np
    pipeline = Pipeline(PipelineConfig())
    detected = pipeline.detector.detect(portrait)[0]
    masked = paint_mask_on_face(portrait, detected, np.random.default_rng(0))
    store = rosbags_typestore()
    Header, Time = store.types['std_msgs/msg/Header'], store.types['builtin_interfaces/msg/Time']
    calls = []
    for index, image in enumerate((portrait, masked)):
        result = pipeline.process(image, float(index))
        header = Header(stamp=Time(sec=index, nanosec=0), frame_id='camera')
        raw = store.serialize_cdr(build_detection_array(store.types, header,
                                                        mask_detections(result)),
                                  'vision_msgs/msg/Detection2DArray')
        frame = face_frame_from_message(store.deserialize_cdr(
            raw, 'vision_msgs/msg/Detection2DArray'))
        gate = MedicationGate(GateConfig(require_unmasked=True))
        gate.frame = FaceFrame(frame.stamp, (face(frame.faces[0].track_id, ('P-0001', 0.9)),))
        gate.observe_masks(frame)
        calls.append(gate._mask_of(gate.frame.faces[0]))
    assert calls == ['no_mask', 'mask']
