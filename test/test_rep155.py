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

"""REP-155 translation: topic names, hri_msgs 2.x through CDR, geometry, fail-closed matches."""

import json

from conftest import LFW_DIR
import cv2
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.image_codec import decode_any, encode_image
from face_id_ros.core.matching import Candidate
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.rep155 import (align_cropped, candidate_matches, crop_points,
                                     cropped_face, FACE, face_topic, FaceLandmarks, IDS_LIST,
                                     IDS_MATCH, landmark_fields, LANDMARKS, normalized_roi,
                                     parse_face_topic, PERSON, pixel_box, POINT, read_landmarks,
                                     register_hri_msgs, rep155_face_id, ROI)
from face_id_ros.core.rep155_identifier import FaceView, FrameAssembler, Rep155Identifier
from face_id_ros.core.rep155_publisher import Rep155Publisher
from face_id_ros.core.ros_messages import rosbags_typestore
from face_id_ros.core.tracking import TrackedFace
from face_id_ros.evaluation.samples import compose_frame
import numpy as np
import pytest


def typestore(store):
    return register_hri_msgs(rosbags_typestore(store))


def roundtrip(store, message, msgtype):
    """Serialise as CDR and read back, as a bag or a DDS link would carry it."""
    return store.deserialize_cdr(store.serialize_cdr(message, msgtype), msgtype)


def header(store, seconds=12, nanoseconds=500):
    types = store.types
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=seconds, nanosec=nanoseconds),
        frame_id='camera')


def test_face_topics_are_named_and_parsed_as_rep155_says():
    assert face_topic('fabcd_17', 'aligned') == '/humans/faces/fabcd_17/aligned'
    assert parse_face_topic('/humans/faces/fabcd_17/landmarks') == ('fabcd_17', 'landmarks')
    assert parse_face_topic('/humans/faces/tracked') is None
    assert parse_face_topic('/humans/faces/x-1/roi') is None  # not a topic name token
    assert rep155_face_id('face-17', 'abcd') == 'fabcd_17'
    with pytest.raises(ValueError):
        face_topic('fabcd_17', 'debug')


@pytest.mark.parametrize('store', ['ROS2_HUMBLE', 'ROS2_JAZZY'])
def test_hri_msgs_2_messages_survive_cdr(store):
    store = typestore(store)
    types = store.types
    ids = roundtrip(store, types[IDS_LIST](header=header(store), ids=['fa_1', 'fa_2']), IDS_LIST)
    assert list(ids.ids) == ['fa_1', 'fa_2'] and ids.header.stamp.nanosec == 500
    match = roundtrip(store, types[IDS_MATCH](id1='fa_1', id1_type=FACE, id2='P-0042',
                                              id2_type=PERSON, confidence=0.81), IDS_MATCH)
    assert (match.id1, match.id1_type, match.id2, match.id2_type) == ('fa_1', 2, 'P-0042', 1)
    assert match.confidence == pytest.approx(0.81)
    roi = roundtrip(store, types[ROI](header=header(store), xmin=0.25, ymin=0.5, xmax=0.75,
                                      ymax=1.0, c=1.0), ROI)
    assert (roi.xmin, roi.ymax) == (0.25, 1.0)
    fields = landmark_fields([(160, 120), (480, 120), (320, 240), (320, 360)], FOUR_POINTS,
                             (640, 480), 0.9)
    landmarks = roundtrip(store, types[LANDMARKS](
        header=header(store), height=fields['height'], width=fields['width'],
        landmarks=[types[POINT](x=x, y=y, c=c) for x, y, c in fields['entries']]), LANDMARKS)
    read = read_landmarks([(item.x, item.y, item.c) for item in landmarks.landmarks],
                          landmarks.width, landmarks.height)
    assert len(landmarks.landmarks) == 70 and read.landmark_set == FOUR_POINTS
    np.testing.assert_allclose(read.points, [(160, 120), (480, 120), (320, 240), (320, 360)],
                               atol=1e-3)


def test_landmarks_prefer_five_points_and_refuse_too_few():
    five = [(100, 100), (140, 100), (120, 120), (105, 140), (135, 140)]
    entries = landmark_fields(five, FIVE_POINTS, (640, 480), 1.0)['entries']
    assert read_landmarks(entries, 640, 480).landmark_set == FIVE_POINTS
    entries[54] = (0.0, 0.0, 0.0)  # a mouth corner missing: not five, and no stomion either
    assert read_landmarks(entries, 640, 480) is None
    assert read_landmarks(entries[:20], 640, 480) is None


def test_cropped_geometry_maps_image_points_into_the_crop():
    image = np.zeros((480, 640, 3), np.uint8)
    image[200:260, 300:340] = 255  # a 40x60 white box
    box = np.array([300.0, 200.0, 340.0, 260.0])
    crop = cropped_face(image, box)
    assert crop.shape == (128, 128, 3)
    corners = crop_points([(300, 200), (340, 260)], box, (128, 128))
    np.testing.assert_allclose(corners, [(21.33, 0), (106.67, 128)], atol=0.01)
    assert crop[64, 64].min() == 255 and crop[64, 5].max() == 0  # letterboxed on black
    np.testing.assert_allclose(pixel_box(normalized_roi(box, (640, 480)), (640, 480)), box)


def test_realigned_crop_embeds_like_the_direct_alignment(portrait):
    pipeline = Pipeline(PipelineConfig())
    frame = compose_frame(portrait, (640, 480), [(320, 240)], 200)
    face = pipeline.detector.detect(frame)[0]
    direct = pipeline.align(frame, [face.landmarks])[0]
    realigned = align_cropped(cropped_face(frame, face.box), face.box, face.landmarks,
                              pipeline.template, pipeline.embedder.input_size)
    embeddings = pipeline.embedder.embed(np.stack([direct, realigned]))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert float(embeddings[0] @ embeddings[1]) > 0.9
    pipeline.detector.close()


def tracked(face_id, status, patient=None, score=0.8):
    candidates = (Candidate(patient or 'P-0001', 0.6, score),)
    return TrackedFace(face_id, status, patient, candidates, (), 3)


def test_only_confirmed_faces_are_matched_and_a_lost_confirmation_is_withdrawn():
    matches, confirmed = candidate_matches({}, [tracked('fa_1', 'confirmed', 'P-0001'),
                                                tracked('fa_2', 'unknown'),
                                                tracked('fa_3', 'pending')])
    assert [(item.face_id, item.person_id) for item in matches] == [('fa_1', 'P-0001')]
    assert matches[0].confidence == 0.8 and matches[0].fields()['id2_type'] == PERSON
    matches, confirmed = candidate_matches(confirmed, [tracked('fa_1', 'unknown')])
    assert [(item.face_id, item.person_id, item.confidence) for item in matches] == [
        ('fa_1', 'P-0001', 0.0)]
    assert confirmed == {}
    _, confirmed = candidate_matches({}, [tracked('fa_1', 'confirmed', 'P-0001')])
    matches, confirmed = candidate_matches(confirmed, [], ended_face_ids={'fa_1'})
    assert [(item.face_id, item.confidence) for item in matches] == [('fa_1', 0.0)]


def test_a_missing_hri_msgs_is_named_in_one_line():
    from face_id_ros.core.errors import ConfigError
    from face_id_ros.nodes.rep155_output import hri_msgs_types
    try:
        import hri_msgs  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError) as raised:
            hri_msgs_types()
        assert 'hri_msgs' in str(raised.value) and '\n' not in str(raised.value)
    else:
        assert hri_msgs_types().IdsMatch.FACE == FACE


def test_publisher_lists_a_face_while_in_view_and_withdraws_it_on_reset(tiny_model, portrait):
    config = PipelineConfig().replace(embedder={'model': str(tiny_model)})
    pipeline = Pipeline(config)
    publisher = Rep155Publisher('test', config.tracker.max_gap_s)
    frames = ward_faces(portrait)
    started, ended, listed = [], [], []
    for index, name in enumerate(['enrolled'] * 3 + ['nobody'] * 7):
        result = pipeline.process(frames[name], index / 10.0)
        publication = publisher.frame(frames[name], result, pipeline)
        started += publication.started
        ended += publication.ended
        listed.append(publication.ids)
        if name == 'enrolled':
            assert publication.faces[0].aligned.shape == (112, 112, 3)
            assert publication.faces[0].cropped.shape == (128, 128, 3)
    assert started == ended == ['ftest_1']  # created with its first frame, ended once
    assert listed[4] == ('ftest_1',) and listed[-1] == ()  # unseen, then past max_gap_s
    assert publisher.reset() == ((), ())
    pipeline.detector.close()


def test_the_assembler_waits_for_every_part_and_lets_a_later_list_close_a_frame():
    assembler = FrameAssembler('cropped')
    assert assembler.add_face_part(1.0, 'fa_1', 'roi', 'r') == []
    assert assembler.add_tracked(1.0, ['fa_1']) == []
    assert assembler.add_face_part(1.0, 'fa_1', 'aligned', 'ignored') == []
    assert assembler.add_face_part(1.0, 'fa_1', 'landmarks', 'l') == []
    stamp, ids, parts = assembler.add_face_part(1.0, 'fa_1', 'cropped', 'c')[0]
    assert (stamp, ids) == (1.0, ('fa_1',))
    assert parts['fa_1'] == {'roi': 'r', 'landmarks': 'l', 'cropped': 'c'}
    assert assembler.add_tracked(2.0, ['fa_1']) == []
    ready = assembler.add_tracked(3.0, [])  # frame 2 never got its parts: handed over bare
    assert [(item[0], item[2]) for item in ready] == [(2.0, {'fa_1': {}}), (3.0, {})]


def ward_faces(portrait):
    """Return the portrait, a stranger (to the tiny model: the portrait mirrored), nobody."""
    return {'enrolled': compose_frame(portrait, (640, 480), [(320, 240)], 300),
            'stranger': compose_frame(portrait[:, ::-1].copy(), (640, 480), [(320, 240)], 300),
            'nobody': np.full((480, 640, 3), 96, np.uint8)}


@pytest.mark.parametrize('source', ['cropped', 'aligned'])
def test_publisher_to_identifier_names_the_patient_and_never_the_stranger(
        tmp_path, tiny_model, portrait, source):
    """Our faces as REP-155 messages through CDR into the identifier: only P-0001 is named."""
    config = PipelineConfig().replace(embedder={'model': str(tiny_model)},
                                      gallery={'path': str(tmp_path / 'g.db'),
                                               'encryption': 'off'})
    frames = ward_faces(portrait)
    publisher_pipeline = Pipeline(config)
    face = publisher_pipeline.detector.detect(frames['enrolled'])[0]
    crop = publisher_pipeline.align(frames['enrolled'], [face.landmarks])
    if source == 'cropped':  # enrol what the identifier will see: the re-aligned crop
        crop = align_cropped(cropped_face(frames['enrolled'], face.box), face.box,
                             face.landmarks, publisher_pipeline.template, (112, 112))[None]
    embedder = publisher_pipeline.embedder
    with Gallery.from_config(config.gallery, embedder.fingerprint,
                             embedder.embedding_size) as gallery:
        gallery.add_templates('P-0001', embedder.embed(crop), ['test'], [1.0])
        snapshot = gallery.snapshot()
    identifier = Rep155Identifier(embedder, config, 0.9, source)
    identifier.set_gallery(snapshot)
    publisher = Rep155Publisher('test', config.tracker.max_gap_s)
    store = typestore('ROS2_HUMBLE')
    named, ids_seen = [], set()
    for index, name in enumerate(['enrolled'] * 6 + ['nobody'] * 7 + ['stranger'] * 6):
        stamp = index / 10.0
        result = publisher_pipeline.process(frames[name], stamp)
        publication = publisher.frame(frames[name], result, publisher_pipeline)
        views = []
        for content in publication.faces:
            image = decode_any(roundtrip(store, store.types['sensor_msgs/msg/Image'](
                header=header(store), **encode_image(getattr(content, source))),
                'sensor_msgs/msg/Image'))
            fields = content.landmarks
            views.append(FaceView(content.face_id, content.roi,
                                  read_landmarks(fields['entries'], fields['width'],
                                                 fields['height']), image))
            ids_seen.add(content.face_id)
        frame = identifier.process(stamp, publication.ids, views)
        named += [(name, item.person_id, item.confidence) for item in frame.matches]
    assert ('enrolled', 'P-0001') in {(name, person) for name, person, _ in named}
    assert not [item for item in named if item[0] == 'stranger' and item[2] > 0]
    assert len(ids_seen) == 2  # the face left (longer than max_gap_s): a new id
    publisher_pipeline.detector.close()


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
@pytest.mark.parametrize('source', ['cropped', 'aligned'])
def test_a_stranger_taking_over_a_confirmed_face_id_is_never_named(tmp_path, source):
    """
    Keep the patient's face id upstream while a stranger steps into her place.

    A detector that follows boxes (hri_face_detect does) can do that: the match must be
    withdrawn, never renewed for the stranger.
    """
    config = PipelineConfig().replace(gallery={'path': str(tmp_path / 'g.db'),
                                               'encryption': 'off'})
    pipeline = Pipeline(config)
    people = {name: sorted((LFW_DIR / 'images' / name).glob('*.jpg'))
              for name in ('Colin_Powell', 'George_W_Bush')}
    patient, stranger = people['Colin_Powell'], people['George_W_Bush']
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        for path in patient[:3]:  # enrolled as `enroll` does: aligned from the photo
            batch = pipeline.describe(cv2.imread(str(path)))
            gallery.add_templates('P-0001', batch.embeddings[:1], [path.name], [1.0])
        snapshot = gallery.snapshot()
    # The model's threshold even for cropped faces (looser than the node's): the harder test.
    identifier = Rep155Identifier(pipeline.embedder, config, pipeline.threshold, source)
    identifier.set_gallery(snapshot)
    shown = [patient[3]] * 8 + [stranger[0]] * 15 + [stranger[1]] * 15
    named, withdrawn_at = [], None
    for index, path in enumerate(shown):
        frame = compose_frame(cv2.imread(str(path)), (640, 480), [(320, 240)], 250)
        face = pipeline.detector.detect(frame)[0]
        landmarks = FaceLandmarks(face.landmarks, pipeline.detector.landmark_set, (640, 480))
        image = (cropped_face(frame, face.box) if source == 'cropped'
                 else pipeline.align(frame, [face.landmarks])[0])
        view = FaceView('fabcd_1', normalized_roi(face.box, (640, 480)), landmarks, image)
        result = identifier.process(index / 15.0, ['fabcd_1'], [view])
        for match in result.matches:
            named.append((path in stranger, match.confidence))
            if path in stranger and match.confidence == 0.0 and withdrawn_at is None:
                withdrawn_at = index
    assert not [item for item in named if item[0] and item[1] > 0], 'the stranger was named'
    assert [item for item in named if not item[0] and item[1] > 0], 'the patient was not named'
    assert withdrawn_at is not None and withdrawn_at - 8 <= 8  # within 0.5 s at 15 fps
    pipeline.detector.close()


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_eval_pairs_measures_rep155_cropped_faces_against_photo_aligned_ones(
        teacher_model, tmp_path, capsys):
    from face_id_ros.cli.parser import main
    lines = (LFW_DIR / 'pairs.txt').read_text().splitlines()
    subset = ['2 4'] + lines[1:5] + lines[301:305] + lines[601:605] + lines[901:905]
    (tmp_path / 'pairs.txt').write_text('\n'.join(subset) + '\n')
    (tmp_path / 'images').symlink_to(LFW_DIR / 'images')
    common = ['eval-pairs', '--lfw', str(tmp_path), '--model', str(teacher_model)]
    assert main([*common, '--out', str(tmp_path / 'plain')]) == 0
    assert main([*common, '--rep155-cropped', '--out', str(tmp_path / 'rep155')]) == 0
    plain = json.loads((tmp_path / 'plain' / 'report.json').read_text())
    report = json.loads((tmp_path / 'rep155' / 'report.json').read_text())
    assert report['rep155_cropped'] and not plain['rep155_cropped']
    assert report['bare'] == plain['cosine']  # the photo-aligned protocol, unchanged
    assert report['cosine'] != plain['cosine']
    both = report['both_rep155_cropped']
    assert both['at_model_threshold']['genuine_pairs'] == 8 and both != report['cosine']
    assert 'both photos REP-155 cropped' in capsys.readouterr().out
    assert main([*common, '--rep155-cropped', '--masked', '--out', str(tmp_path / 'x')]) == 2
    assert 'choose one' in capsys.readouterr().err
