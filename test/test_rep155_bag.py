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

"""Ward bags with REP-155 face topics: written by --rep155, scored by eval-bag --rep155."""

import json

import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.rep155 import FACES_TRACKED, parse_face_topic
from face_id_ros.evaluation.bag_eval import CameraBag, evaluate_bag
from face_id_ros.evaluation.rep155_bag import evaluate_rep155_bag, Rep155Recorder
from face_id_ros.evaluation.wardbag import make_ward_bag, Visit, WardRecipe
from rosbags.rosbag2 import Reader
from test_bag_eval import enrolled_pipeline


def rep155_bag(folder, portrait, subjects, model):
    """Write a ward bag of the portrait visiting once per subject, with REP-155 face topics."""
    photo = folder / 'portrait.jpg'
    cv2.imwrite(str(photo), portrait)
    recipe = WardRecipe(fps=10.0, visit_seconds=(1.5, 1.5), gap_seconds=(0.5, 0.5))
    with Rep155Recorder(PipelineConfig().replace(embedder={'model': str(model)})) as recorder:
        intervals = make_ward_bag(folder / 'bag', [Visit(subject, str(photo))
                                                   for subject in subjects], recipe,
                                  progress=False, frame_hook=recorder)
    return folder / 'bag', intervals


def read_frames(bag):
    """Return the receive times of the bag's camera frames."""
    with Reader(bag) as reader:
        connections = [item for item in reader.connections if item.topic.startswith('/camera')]
        return [stamp for _, stamp, _ in reader.messages(connections)]


def test_the_bag_holds_a_face_list_per_frame_and_each_face_s_four_topics(
        tmp_path, tiny_model, portrait):
    bag, intervals = rep155_bag(tmp_path, portrait, ['P-0001'], tiny_model)
    with Reader(bag) as reader:
        counts = {item.topic: item.msgcount for item in reader.connections}
        types = {item.topic: item.msgtype for item in reader.connections}
    frames = counts['/camera/image_raw/compressed']
    assert counts[FACES_TRACKED] == frames == 5 + 15 + 5
    faces = {parse_face_topic(topic) for topic in counts} - {None}
    face_ids = {face_id for face_id, _ in faces}
    assert len(face_ids) == 1  # one visit, one track, one face id
    assert {name for _, name in faces} == {'roi', 'cropped', 'aligned', 'landmarks'}
    assert types[f'/humans/faces/{face_ids.pop()}/landmarks'] == 'hri_msgs/msg/FacialLandmarks'
    assert len({counts[topic] for topic in counts if parse_face_topic(topic)}) == 1
    # the camera replay ignores the face crops, though they are images too
    assert CameraBag(bag).topic == '/camera/image_raw/compressed'


def test_rep155_scoring_counts_a_confirmed_stranger_as_wrong(tmp_path, teacher_model,
                                                             portrait):
    # The visit labelled 'stranger' shows the enrolled patient: naming her there is exactly
    # the error both the scoring and the candidate-match check must count.
    bag, intervals = rep155_bag(tmp_path, portrait, ['P-0001', 'stranger', 'P-0001'],
                                teacher_model)
    pipeline = enrolled_pipeline(teacher_model, tmp_path / 'gallery.db', portrait)
    camera, _ = evaluate_bag(CameraBag(bag), intervals, pipeline, 'fast', progress=False)
    report, records = evaluate_rep155_bag(bag, intervals, pipeline, 'aligned', progress=False)
    overall = report['overall']
    assert [visit['outcome'] for visit in report['visits']] == ['correct', 'wrong', 'correct']
    assert overall['confirmed_wrong'] == 1 and overall['strangers_confirmed'] == 1
    assert report['candidate_matches']['naming_someone_not_in_view'] > 0
    assert report['frames'] == camera['frames'] and report['faces_skipped'] == 0
    assert report['threshold'] == pipeline.threshold
    cropped, _ = evaluate_rep155_bag(bag, intervals, pipeline, 'cropped', progress=False)
    assert cropped['faces_skipped'] == 0 and cropped['overall']['confirmed_wrong'] == 1


def test_make_ward_bag_and_eval_bag_commands_speak_rep155(tmp_path, tiny_model, portrait,
                                                          capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, new_key_text())  # the shipped config encrypts the gallery
    photos = tmp_path / 'visits' / 'P-0001'
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / 'portrait.jpg'), portrait)
    bag = tmp_path / 'round'
    assert main(['make-ward-bag', str(photos.parent), '--out', str(bag), '--rep155',
                 '--fps', '5']) == 0
    assert 'REP-155 face topics' in capsys.readouterr().out
    common = ['--model', str(tiny_model), '--gallery', str(tmp_path / 'gallery.db')]
    assert main(['enroll', str(photos.parent), *common]) == 0
    out = tmp_path / 'eval'
    assert main(['eval-bag', str(bag), '--labels', f'{bag}.labels.yaml', '--rep155',
                 'aligned', '--out', str(out), '--quiet', *common]) == 0
    printed = capsys.readouterr().out
    assert 'REP-155 identifier (aligned)' in printed and 'confirmed WRONG: 0' in printed
    report = json.loads((out / 'report.json').read_text())
    assert report['face_source'] == 'aligned'
    assert report['frames'] == len(read_frames(bag)) and len(report['visits']) == 1
