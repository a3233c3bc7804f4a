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

"""Replaying real rosbag2 files through the real pipeline, scored against labels."""

import json

from conftest import LFW_DIR
import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.quality import assess_photo
from face_id_ros.core.ros_messages import rosbags_typestore, stamp_seconds
from face_id_ros.evaluation.bag_eval import (CameraBag, evaluate_bag, FaceRecord, FrameRecord,
                                             score_visits, summarise, summarise_by_mask)
from face_id_ros.evaluation.labels import Interval, load_labels, save_labels
from face_id_ros.evaluation.ward_benchmark import load_recipe
from face_id_ros.evaluation.wardbag import make_ward_bag, Visit, WardRecipe
import pytest
from rosbags.rosbag2 import Reader
import yaml


def enrolled_pipeline(model, gallery_path, portrait):
    """Build a pipeline with the sample portrait enrolled as P-0001 (via the quality gate)."""
    config = PipelineConfig().replace(embedder={'model': str(model)},
                                      gallery={'path': str(gallery_path), 'encryption': 'off'})
    pipeline = Pipeline(config)
    sample = assess_photo(portrait, pipeline, config.quality)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        gallery.add_templates('P-0001', [sample.embedding], ['portrait'], [sample.quality])
        pipeline.set_gallery(gallery.snapshot())
    return pipeline


def portrait_bag(folder, portrait, subjects, **recipe):
    """Write a bag of the portrait visiting once per subject, with empty stretches between."""
    photo = folder / 'portrait.jpg'
    cv2.imwrite(str(photo), portrait)
    recipe = WardRecipe(**{'fps': 10.0, 'visit_seconds': (1.5, 1.5),
                           'gap_seconds': (0.5, 0.5), **recipe})
    intervals = make_ward_bag(folder / 'bag', [Visit(subject, str(photo))
                                               for subject in subjects], recipe,
                              progress=False)
    return folder / 'bag', intervals


def read_messages(bag):
    store = rosbags_typestore()
    with Reader(bag) as reader:
        return [(connection.topic, connection.msgtype, stamp,
                 store.deserialize_cdr(raw, connection.msgtype))
                for connection, stamp, raw in reader.messages()]


@pytest.mark.parametrize('storage, encoding', [('sqlite3', 'bgr8'), ('mcap', 'jpeg')])
def test_report_counts_match_the_labels(tmp_path, teacher_model, portrait, storage, encoding):
    # The visit labelled 'stranger' shows the enrolled patient too: confirming her there is
    # exactly the error the report must count as a wrong confirmation.
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001', 'stranger', 'P-0001'],
                                  storage=storage, encoding=encoding)
    pipeline = enrolled_pipeline(teacher_model, tmp_path / 'gallery.db', portrait)
    report, records = evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast',
                                   progress=False)
    overall = report['overall']
    assert (overall['patient_visits'], overall['confirmed_correct']) == (2, 2)
    assert (overall['stranger_visits'], overall['strangers_confirmed']) == (1, 1)
    assert overall['confirmed_wrong'] == 1 and overall['empty_stretches_confirmed'] == 0
    assert [visit['outcome'] for visit in report['visits']] == ['correct', 'wrong', 'correct']
    assert report['visits'][1]['confirmed_as'] == ['P-0001']
    assert report['frames'] == report['processed'] == 4 * 5 + 3 * 15
    assert report['dropped'] == 0
    assert 0.0 < overall['time_to_confirm_s']['median'] <= 1.0
    assert report['msgtype'].endswith('Image' if encoding == 'bgr8' else 'CompressedImage')
    assert all(not record.faces for record in records
               if not any(item.is_visit and item.contains(record.seconds)
                          for item in intervals))


def test_output_bag_holds_detection_arrays_with_the_source_headers(tmp_path, tiny_model,
                                                                   portrait):
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001'], storage='mcap',
                                  encoding='jpeg')
    pipeline = enrolled_pipeline(tiny_model, tmp_path / 'gallery.db', portrait)
    report, _ = evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast',
                             output_bag=tmp_path / 'out', progress=False)
    images = read_messages(bag)
    published = read_messages(tmp_path / 'out')
    assert len(published) == len(images) == report['processed']
    assert {(topic, msgtype) for topic, msgtype, _, _ in published} == {
        ('/patient_id', 'vision_msgs/msg/Detection2DArray')}
    earlier = []
    for (_, _, received, image), (_, _, sent, array) in zip(images, published):
        assert array.header == image.header
        assert sent > received  # published once processed, never before the frame arrived
        for detection in array.detections:
            # The image's header when the identity was embedded in it; else the stamp of the
            # earlier frame whose embedding the tracker carried, same frame id.
            if detection.header != image.header:
                assert detection.header.frame_id == image.header.frame_id
                carried = stamp_seconds(detection.header.stamp)
                assert min(abs(carried - stamp) for stamp in earlier) < 1e-6
            assert detection.id.startswith('face-')
            assert detection.results[0].hypothesis.class_id in ('P-0001', 'unknown', 'pending')
            assert 0 < detection.bbox.center.position.x < 640
        earlier.append(stamp_seconds(image.header.stamp))
    assert sum(bool(array.detections) for _, _, _, array in published) >= 12
    metadata = yaml.safe_load((tmp_path / 'out' / 'metadata.yaml').read_text())
    assert metadata['rosbag2_bagfile_information']['version'] == 5


def test_worker_processes_change_the_speed_not_the_decisions(tmp_path, tiny_model, portrait):
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001', 'stranger'],
                                  encoding='jpeg')
    pipeline = enrolled_pipeline(tiny_model, tmp_path / 'gallery.db', portrait)
    alone, alone_records = evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast',
                                        progress=False)
    pooled, pooled_records = evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast',
                                          output_bag=tmp_path / 'out', progress=False,
                                          workers=2)
    assert (alone['workers'], pooled['workers']) == (1, 2)
    # Only the times differ: they include each frame's processing latency.
    outcomes = [visit['outcome'] for visit in alone['visits']]
    assert outcomes[0] == 'correct'
    assert [visit['outcome'] for visit in pooled['visits']] == outcomes
    assert decisions(pooled_records) == decisions(alone_records)  # track ids keep counting
    assert [record.seconds for record in pooled_records] == [
        record.seconds for record in alone_records]
    stages = {'decode', 'detect', 'look', 'align', 'embed', 'match'}
    assert set(pooled['stage_median_ms']) == stages
    assert len(read_messages(tmp_path / 'out')) == pooled['processed'] == len(pooled_records)
    with pytest.raises(FaceIdError, match='workers'):
        evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast', progress=False, workers=0)


def decisions(records):
    """Return each frame's face decisions, without the track ids."""
    return [[(face.status, face.patient_id, face.best_id, face.best_cosine)
             for face in record.faces] for record in records]


def test_recorded_pace_keeps_up_with_a_slow_camera(tmp_path, tiny_model, portrait):
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001'], fps=5.0)
    pipeline = enrolled_pipeline(tiny_model, tmp_path / 'gallery.db', portrait)
    report, records = evaluate_bag(CameraBag(bag), intervals, pipeline, 'recorded',
                                   progress=False)
    assert report['dropped'] == 0 and report['processed'] == report['frames']
    # The replay clock ran at the recorded pace: about the bag's duration, not much faster.
    assert report['wall_s'] >= report['duration_s'] - 0.3
    assert all(record.done >= record.seconds for record in records)


def test_recorded_pace_drops_frames_a_slow_worker_cannot_take(tmp_path, teacher_model,
                                                              portrait):
    # 200 frames/s leave 5 ms a frame, less than detection plus a MobileFaceNet embedding.
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001'], fps=200.0,
                                  visit_seconds=(0.4, 0.4), gap_seconds=(0.05, 0.05))
    pipeline = enrolled_pipeline(teacher_model, tmp_path / 'gallery.db', portrait)
    report, records = evaluate_bag(CameraBag(bag), intervals, pipeline, 'recorded',
                                   progress=False)
    assert report['dropped'] > 0
    assert report['processed'] + report['dropped'] == report['frames'] == 10 + 80 + 10
    assert report['real_time_factor'] < 1.0
    stamps = [record.seconds for record in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert report['overall']['confirmed_correct'] == 1  # the tracker copes with the gaps


def face(status, patient_id=None, best='P-0001'):
    return FaceRecord('face-1', status, patient_id, best, 0.5)


def test_visit_outcomes_follow_the_worst_and_then_the_last_decision():
    intervals = [Interval(0.0, 1.0, 'P-0001'), Interval(1.0, 2.0, 'P-0002'),
                 Interval(2.0, 3.0, 'stranger'), Interval(3.0, 4.0, 'P-0003'),
                 Interval(4.0, 5.0, 'nobody'), Interval(5.0, 6.0, 'P-0004')]
    timeline = [
        (0.1, [face('pending')]), (0.2, [face('confirmed', 'P-0001')]),
        (1.1, [face('confirmed', 'P-0002')]), (1.2, [face('confirmed', 'P-0009')]),
        (2.1, [face('unknown')]), (2.2, [face('pending')]),
        (3.1, [face('pending')]), (3.2, [face('unknown')]),
        (4.5, [face('confirmed', 'P-0001')]), (5.5, []),
    ]
    records = [FrameRecord(seconds, seconds + 0.05, 5.0, 5.0, tuple(faces))
               for seconds, faces in timeline]
    frames = [index / 10 for index in range(60)]
    visits = score_visits(intervals, records, frames)
    assert [visit['outcome'] for visit in visits] == ['correct', 'wrong', 'pending',
                                                      'unknown', 'wrong', 'pending']
    assert visits[0]['time_to_confirm_s'] == pytest.approx(0.25)
    assert visits[1]['confirmed_as'] == ['P-0009'] and visits[1]['time_to_confirm_s'] is None
    overall = summarise(visits)
    assert overall['confirmed_wrong'] == 2  # P-0002 named P-0009, and a face in an empty ward
    assert (overall['patients_confirmed_wrong'], overall['empty_stretches_confirmed']) == (1, 1)
    assert (overall['confirmed_correct'], overall['patient_visits']) == (1, 4)
    assert (overall['patients_unknown'], overall['patients_pending']) == (1, 1)
    assert overall['strangers_pending'] == 1


def test_masked_and_unmasked_visits_are_summed_up_apart():
    intervals = [Interval(0.0, 1.0, 'P-0001'), Interval(1.0, 2.0, 'P-0002', masked=True),
                 Interval(2.0, 3.0, 'stranger', masked=True), Interval(3.0, 4.0, 'nobody'),
                 Interval(4.0, 5.0, 'P-0003', masked=True), Interval(5.0, 6.0, 'stranger')]
    timeline = [(0.2, 'confirmed', 'P-0001'), (1.5, 'confirmed', 'P-0002'),
                (2.5, 'confirmed', 'P-0001'), (3.5, 'confirmed', 'P-0003'),
                (4.5, 'unknown', None), (5.5, 'unknown', None)]
    records = [FrameRecord(seconds, seconds + 0.05, 5.0, 5.0, (face(status, patient),))
               for seconds, status, patient in timeline]
    visits = score_visits(intervals, records, [index / 10 for index in range(60)])
    assert [visit['masked'] for visit in visits] == [False, True, True, False, True, False]
    by_mask = summarise_by_mask(visits)
    masked, unmasked = by_mask['masked'], by_mask['unmasked']
    assert (masked['patient_visits'], masked['confirmed_correct']) == (2, 1)
    assert (masked['stranger_visits'], masked['strangers_confirmed']) == (1, 1)
    assert masked['confirmed_wrong'] == 1  # the masked stranger named P-0001
    assert masked['time_to_confirm_s']['median'] == pytest.approx(0.55)
    assert (unmasked['patient_visits'], unmasked['confirmed_correct']) == (1, 1)
    assert (unmasked['stranger_visits'], unmasked['strangers_unknown']) == (1, 1)
    assert unmasked['confirmed_wrong'] == 0  # the empty stretch's confirmation is in neither
    assert summarise(visits)['confirmed_wrong'] == 2
    assert not any(key.startswith('empty') for key in masked)


def test_eval_bag_command_writes_report_plots_and_bag(tmp_path, tiny_model, portrait, capsys,
                                                      monkeypatch):
    monkeypatch.setenv(KEY_ENV, new_key_text())  # the shipped config encrypts the gallery
    bag, intervals = portrait_bag(tmp_path, portrait, ['P-0001'])
    labels = save_labels(tmp_path / 'labels.yaml', intervals)
    photos = tmp_path / 'enrol' / 'P-0001'
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / 'portrait.jpg'), portrait)
    common = ['--model', str(tiny_model), '--gallery', str(tmp_path / 'gallery.db')]
    assert main(['enroll', str(photos.parent), *common]) == 0
    out = tmp_path / 'eval'
    for _ in range(2):  # a second run replaces the first run's output bag
        assert main(['eval-bag', str(bag), '--labels', str(labels), '--out', str(out),
                     '--pace', 'fast', '--quiet', *common]) == 0
    printed = capsys.readouterr().out
    assert 'confirmed WRONG: 0' in printed
    report = json.loads((out / 'report.json').read_text())
    assert report['frames'] == 5 + 15 + 5 and len(report['visits']) == 1
    for name in ('timeline.png', 'scores.png', 'latency.png'):
        assert cv2.imread(str(out / name)) is not None
    assert len(read_messages(out / 'patient_id')) == report['processed']


def test_bags_without_the_camera_topic_are_refused(tmp_path, portrait):
    bag, _ = portrait_bag(tmp_path, portrait, ['P-0001'])
    with pytest.raises(FaceIdError, match='no Image or CompressedImage topic /front_camera'):
        CameraBag(bag, '/front_camera')
    with pytest.raises(FaceIdError, match='cannot read bag'):
        CameraBag(tmp_path / 'missing')


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_ward_benchmark_runs_end_to_end_on_lfw(tmp_path, teacher_model, capsys):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(yaml.safe_dump({
        'patients': 2, 'enrol_photos': 2, 'visits_per_patient': 1, 'strangers': 1,
        'bag': {'fps': 10.0, 'visit_seconds': [1.0, 1.0], 'gap_seconds': [0.3, 0.3],
                'seed': 1}}))
    out = tmp_path / 'bench'
    assert main(['ward-benchmark', '--lfw', str(LFW_DIR), '--recipe', str(recipe),
                 '--model', str(teacher_model), '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'report.json').read_text())
    for pace in ('fast', 'recorded'):
        overall = summary[pace]['overall']
        assert (overall['patient_visits'], overall['stranger_visits']) == (2, 1)
        assert overall['confirmed_wrong'] == 0
        assert (out / pace / 'patient_id' / 'metadata.yaml').is_file()
    visits = [item.subject for item in load_labels(out / 'ward_round.labels.yaml')
              if item.is_visit]
    assert sorted(visits) == ['P-0001', 'P-0002', 'stranger']
    assert 'recorded pace' in capsys.readouterr().out


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_masked_ward_benchmark_enrols_masked_templates_and_scores_masked_visits_apart(
        tmp_path, teacher_model, capsys):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(yaml.safe_dump({
        'patients': 2, 'enrol_photos': 2, 'visits_per_patient': 2, 'strangers': 2,
        'bag': {'fps': 10.0, 'visit_seconds': [1.0, 1.0], 'gap_seconds': [0.3, 0.3],
                'masked_share': 0.5, 'seed': 1}}))
    out = tmp_path / 'bench'
    assert main(['ward-benchmark', '--lfw', str(LFW_DIR), '--recipe', str(recipe),
                 '--model', str(teacher_model), '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'report.json').read_text())
    assert summary['settings']['enrol_masked_templates'] is True  # auto, with masked visits
    embedder = OnnxEmbedder(teacher_model)
    with Gallery.open(out / 'gallery.db', embedder.fingerprint, embedder.embedding_size,
                      create=False) as gallery:
        snapshot = gallery.snapshot()
    owners_of_masked = set(snapshot.patient_ids[snapshot.owners[snapshot.masked]])
    assert snapshot.masked.sum() == summary['masked_templates'] >= 2
    assert (~snapshot.masked).sum() == 4  # the unmasked templates are those of before
    assert owners_of_masked <= {'P-0001', 'P-0002'}
    labels = load_labels(out / 'ward_round.labels.yaml')
    assert sum(item.masked for item in labels if item.is_patient) == 2  # half of 4 visits
    assert sum(item.masked for item in labels if item.subject == 'stranger') == 1
    for pace in ('fast', 'recorded'):
        report = summary[pace]
        masked, unmasked = report['by_mask']['masked'], report['by_mask']['unmasked']
        assert (masked['patient_visits'], masked['stranger_visits']) == (2, 1)
        assert (unmasked['patient_visits'], unmasked['stranger_visits']) == (2, 1)
        assert report['overall']['confirmed_wrong'] == 0
        assert sum(visit['masked'] for visit in report['visits']) == 3
        assert cv2.imread(str(out / pace / 'timeline.png')) is not None
    printed = capsys.readouterr().out
    assert 'masked templates' in printed and '3 masked' in printed
    assert printed.count('median confirm') == 2  # the masked/unmasked table, once per pace


def test_ward_recipe_refuses_a_bad_masked_templates_setting(tmp_path):
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(yaml.safe_dump({
        'patients': 2, 'enrol_photos': 2, 'visits_per_patient': 1, 'strangers': 1,
        'enrol_masked_templates': 'sometimes'}))
    with pytest.raises(FaceIdError, match='enrol_masked_templates must be true, false or auto'):
        load_recipe(recipe)
