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

"""Synthetic ward-round bags and their labels, read back with rosbags and a real detector."""

import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import DetectorConfig
from face_id_ros.core.detection import make_detector
from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.image_codec import decode_any
from face_id_ros.core.ros_messages import rosbags_typestore
from face_id_ros.evaluation.labels import load_labels, parse_labels, save_labels, subject_at
from face_id_ros.evaluation.wardbag import make_ward_bag, plan_visits, Visit, WardRecipe
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
import yaml

# The keys Humble's rosbag2 (metadata version 5) reads, and nothing newer.
HUMBLE_KEYS = {'version', 'storage_identifier', 'duration', 'starting_time', 'message_count',
               'topics_with_message_count', 'compression_format', 'compression_mode',
               'relative_file_paths', 'files'}


@pytest.fixture(scope='module')
def photo(tmp_path_factory, portrait):
    path = tmp_path_factory.mktemp('photos') / 'P-0001' / 'portrait.jpg'
    path.parent.mkdir()
    cv2.imwrite(str(path), portrait)
    return path


def small_recipe(**values):
    return WardRecipe(**{'fps': 10.0, 'visit_seconds': (1.5, 1.5), 'gap_seconds': (0.5, 0.5),
                         **values})


def read_frames(bag):
    store = rosbags_typestore()
    with Reader(bag) as reader:
        start = reader.start_time
        connections = list(reader.connections)
        frames = [(stamp, store.deserialize_cdr(raw, connection.msgtype))
                  for connection, stamp, raw in reader.messages()]
    return start, connections, frames


@pytest.mark.parametrize('storage, encoding', [('sqlite3', 'bgr8'), ('mcap', 'jpeg')])
def test_visit_frames_show_a_detectable_face_and_empty_frames_none(tmp_path, photo, storage,
                                                                   encoding):
    recipe = small_recipe(storage=storage, encoding=encoding)
    visits = [Visit('P-0001', str(photo)), Visit('stranger', str(photo))]
    intervals = make_ward_bag(tmp_path / 'bag', visits, recipe, progress=False)
    assert [item.subject for item in intervals] == ['nobody', 'P-0001', 'nobody', 'stranger',
                                                    'nobody']
    start, connections, frames = read_frames(tmp_path / 'bag')
    assert [(item.topic, item.msgtype) for item in connections] == [
        (recipe.camera_topic, recipe.msgtype)]
    assert len(frames) == 5 + 15 + 5 + 15 + 5
    detector = make_detector(DetectorConfig())
    found = {'nobody': [], 'visit': []}
    for stamp, message in frames:
        assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == stamp
        image = decode_any(message)
        assert image.shape == (480, 640, 3)
        interval = subject_at(intervals, (stamp - start) / 1e9)
        widths = [face.box[2] - face.box[0] for face in detector.detect(image)]
        found['visit' if interval.is_visit else 'nobody'].append(widths)
    assert all(not widths for widths in found['nobody'])
    detected = [widths[0] for widths in found['visit'] if widths]
    assert len(detected) >= 0.9 * len(found['visit'])
    assert 75 <= min(detected) and max(detected) <= 240  # the 90-220 px recipe, give or take


def test_sqlite3_bags_carry_metadata_humble_reads(tmp_path, photo):
    make_ward_bag(tmp_path / 'bag', [Visit('P-0001', str(photo))], small_recipe(),
                  progress=False)
    info = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']
    assert info['version'] == 5 and set(info) == HUMBLE_KEYS
    topic = info['topics_with_message_count'][0]['topic_metadata']
    assert set(topic) == {'name', 'type', 'serialization_format', 'offered_qos_profiles'}
    assert isinstance(topic['offered_qos_profiles'], str)  # v9 writes a list Humble rejects
    assert info['storage_identifier'] == 'sqlite3'
    assert (tmp_path / 'bag' / info['relative_file_paths'][0]).is_file()
    assert info['message_count'] == 5 + 15 + 5


def test_the_same_seed_rebuilds_the_same_bag_and_another_seed_does_not(tmp_path, photo):
    visits = [Visit('P-0001', str(photo))]
    runs = {}
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        recipe = small_recipe(storage='mcap', encoding='jpeg', seed=seed,
                              visit_seconds=(0.5, 1.0), gap_seconds=(0.2, 0.5))
        intervals = make_ward_bag(tmp_path / name, visits, recipe, progress=False)
        runs[name] = intervals, [bytes(message.data) for _, message in
                                 read_frames(tmp_path / name)[2]]
    assert runs['a'] == runs['b']
    assert runs['a'][1] != runs['c'][1]


def test_visits_are_planned_with_unused_photos_in_a_seeded_order():
    patients = {'P-0001': ['a1', 'a2', 'a3'], 'P-0002': ['b1']}
    visits = plan_visits(patients, {'x': ['x1'], 'y': ['y1', 'y2']}, 2, seed=5)
    assert visits == plan_visits(patients, {'x': ['x1'], 'y': ['y1', 'y2']}, 2, seed=5)
    assert sorted(visit.subject for visit in visits) == ['P-0001', 'P-0001', 'P-0002',
                                                         'P-0002', 'stranger', 'stranger']
    first_photos = [visit.photo for visit in visits if visit.subject == 'P-0001']
    assert len(set(first_photos)) == 2 and set(first_photos) <= {'a1', 'a2', 'a3'}


def test_a_share_of_patient_and_stranger_visits_is_masked_without_changing_the_round():
    patients = {f'P-{index:04d}': [f'p{index}a', f'p{index}b'] for index in range(1, 11)}
    strangers = {f's{index}': [f's{index}'] for index in range(10)}
    plain = plan_visits(patients, strangers, 2, seed=7)
    masked = plan_visits(patients, strangers, 2, seed=7, masked_share=0.3)
    assert masked == plan_visits(patients, strangers, 2, seed=7, masked_share=0.3)
    assert [(visit.subject, visit.photo) for visit in masked] == [
        (visit.subject, visit.photo) for visit in plain]
    assert not any(visit.masked for visit in plain)
    patient_masks = [visit.masked for visit in masked if visit.subject != 'stranger']
    stranger_masks = [visit.masked for visit in masked if visit.subject == 'stranger']
    assert (sum(patient_masks), sum(stranger_masks)) == (6, 3)  # 30% of 20 and of 10
    other_seed = plan_visits(patients, strangers, 2, seed=8, masked_share=0.3)
    assert [visit.masked for visit in other_seed] != [visit.masked for visit in masked]
    with pytest.raises(FaceIdError, match='masked_share'):
        WardRecipe(masked_share=1.5)


def test_masked_visits_wear_a_mask_over_mouth_and_nose_in_every_frame(tmp_path, photo):
    # The same recipe and seed, once masked: the scenes are identical but for the mask.
    recipe = small_recipe(encoding='bgr8')
    frames = {}
    for masked in (False, True):
        bag = tmp_path / f'masked_{masked}'
        intervals = make_ward_bag(bag, [Visit('P-0001', str(photo), masked)], recipe,
                                  progress=False)
        assert [item.masked for item in intervals] == [False, masked, False]
        start, _, messages = read_frames(bag)
        frames[masked] = [(subject_at(intervals, (stamp - start) / 1e9), decode_any(message))
                          for stamp, message in messages]
    detector = make_detector(DetectorConfig())
    visit_frames = 0
    for (interval, plain), (_, masked) in zip(frames[False], frames[True]):
        changed = np.abs(plain.astype(np.int16) - masked.astype(np.int16)).max(axis=2) > 40
        if not interval.is_visit:
            assert not changed.any()
            continue
        faces = detector.detect(plain)
        if not faces:
            continue
        visit_frames += 1
        (right_eye, left_eye, _, mouth), box = faces[0].landmarks, faces[0].box
        rows, columns = np.nonzero(changed)
        face_area = (box[2] - box[0]) * (box[3] - box[1])
        assert len(rows) > 0.15 * face_area  # a mask, not a few stray pixels
        # It covers the mouth and lies below the eyes, within the face's width.
        assert changed[int(mouth[1]), int(mouth[0])]
        assert np.percentile(rows, 2) > min(right_eye[1], left_eye[1])
        assert box[0] - 0.1 * (box[2] - box[0]) < np.median(columns) < box[2]
    assert visit_frames >= 12


def test_a_photo_without_a_detectable_face_is_shown_unmasked_and_labelled_so(tmp_path):
    wall = tmp_path / 'wall.png'
    cv2.imwrite(str(wall), np.full((250, 250, 3), (150, 170, 180), np.uint8))
    intervals = make_ward_bag(tmp_path / 'bag', [Visit('stranger', str(wall), True)],
                              small_recipe(), progress=False)
    assert [(item.subject, item.masked) for item in intervals] == [
        ('nobody', False), ('stranger', False), ('nobody', False)]


def test_labels_round_trip(tmp_path):
    intervals = parse_labels({'intervals': [
        {'start': 2.0, 'end': 4.5, 'subject': 'P-0042'},
        {'start': 0, 'end': 2.0, 'subject': 'nobody'},
        {'start': 5.0, 'end': 7.25, 'subject': 'stranger', 'masked': True}]})
    assert [item.subject for item in intervals] == ['nobody', 'P-0042', 'stranger']
    assert [item.masked for item in intervals] == [False, False, True]  # absent: unmasked
    saved = save_labels(tmp_path / 'labels.yaml', intervals)
    assert load_labels(saved) == intervals
    rows = yaml.safe_load(saved.read_text())['intervals']
    assert [row.get('masked') for row in rows] == [None, False, True]  # per visit
    assert subject_at(intervals, 4.5) is None  # end is exclusive; 4.5-5.0 is unlabelled
    assert subject_at(intervals, 2.0).subject == 'P-0042'


@pytest.mark.parametrize('mapping, reason', [
    ([{'start': 0, 'end': 1, 'subject': 'nobody'}], 'the one key "intervals"'),
    ({'intervals': []}, 'non-empty list'),
    ({'intervals': [{'start': 0, 'end': 1}]}, 'interval 1: expected the keys'),
    ({'intervals': [{'start': 2, 'end': 1, 'subject': 'nobody'}]}, 'end 1.0 must be after'),
    ({'intervals': [{'start': -1, 'end': 1, 'subject': 'nobody'}]}, 'non-negative'),
    ({'intervals': [{'start': '0:01', 'end': 2, 'subject': 'nobody'}]}, 'expected seconds'),
    ({'intervals': [{'start': 0, 'end': 1, 'subject': 'Grace Hopper'}]}, 'neither a patient'),
    ({'intervals': [{'start': 0, 'end': 2, 'subject': 'P-0001'},
                    {'start': 1.5, 'end': 3, 'subject': 'nobody'}]}, 'intervals overlap'),
    ({'intervals': [{'start': 0, 'end': 1, 'subject': 'P-0001', 'masked': 'yes'}]},
     'masked: expected true or false'),
    ({'intervals': [{'start': 0, 'end': 1, 'subject': 'nobody', 'masked': True}]},
     'nobody can be masked'),
    ({'intervals': [{'start': 0, 'end': 1, 'subject': 'P-0001', 'mask': True}]},
     'optionally masked'),
])
def test_bad_labels_are_refused_with_the_reason(mapping, reason):
    with pytest.raises(FaceIdError, match=reason):
        parse_labels(mapping)


def test_unreadable_labels_file_is_refused(tmp_path):
    path = tmp_path / 'labels.yaml'
    path.write_text('intervals: [start: 0')
    with pytest.raises(FaceIdError, match='not valid YAML'):
        load_labels(path)
    with pytest.raises(FaceIdError, match='cannot read labels'):
        load_labels(tmp_path / 'missing.yaml')


def test_make_ward_bag_command_writes_bag_and_labels(tmp_path, photo, capsys):
    bag = tmp_path / 'round'
    status = main(['make-ward-bag', str(photo.parent.parent), '--out', str(bag),
                   '--visits-per-patient', '2', '--fps', '5', '--encoding', 'bgr8',
                   '--storage', 'mcap', '--masked-share', '0.5'])
    assert status == 0
    intervals = load_labels(f'{bag}.labels.yaml')
    assert [item.subject for item in intervals if item.is_visit] == ['P-0001', 'P-0001']
    assert sorted(item.masked for item in intervals if item.is_visit) == [False, True]
    _, connections, frames = read_frames(bag)
    assert connections[0].topic == '/camera/image_raw'
    assert connections[0].msgtype == 'sensor_msgs/msg/Image'
    assert np.isclose(frames[1][0] - frames[0][0], 2e8)
    assert '2 visits (0 by strangers, 1 masked)' in capsys.readouterr().out


def test_make_ward_bag_refuses_folders_not_named_by_patient_id(tmp_path, photo, capsys):
    folder = tmp_path / 'people' / 'Grace_Hopper'
    folder.mkdir(parents=True)
    (folder / 'portrait.jpg').write_bytes(photo.read_bytes())
    assert main(['make-ward-bag', str(folder.parent), '--out', str(tmp_path / 'bag')]) == 2
    assert "folders ['Grace_Hopper'] are not patient ids" in capsys.readouterr().err
    assert not (tmp_path / 'bag').exists()
