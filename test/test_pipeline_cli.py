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

"""The pipeline and the ``face-id`` tool end to end, on real photos and real ONNX sessions."""

import dataclasses
import json
from pathlib import Path
import shutil

from conftest import build_tiny_embedder, LFW_DIR, PACKAGE_ROOT
import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.embedding import model_fingerprint
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.evaluation.samples import compose_frame
import numpy as np
import pytest


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(autouse=True)
def gallery_key(monkeypatch):
    """Give the commands of each test one key: the shipped config encrypts galleries."""
    monkeypatch.setenv(KEY_ENV, new_key_text())


@pytest.fixture
def enrolment_folder(tmp_path, portrait):
    """One patient folder with a good photo and one photo for each rejection reason."""
    folder = tmp_path / 'photos' / 'P-0001'
    write(folder / 'good.jpg', portrait)
    write(folder / 'blurred.jpg', cv2.GaussianBlur(portrait, (0, 0), 6))
    write(folder / 'empty.jpg', np.full((480, 640, 3), 120, np.uint8))
    write(folder / 'two.jpg', compose_frame(portrait, (640, 480), [(160, 240), (480, 240)], 300))
    write(folder / 'small.jpg', compose_frame(portrait, (320, 240), [(160, 120)], 170))
    return folder.parent


def test_enrolment_keeps_good_photos_and_says_why_others_are_rejected(
        tmp_path, tiny_model, enrolment_folder, capsys):
    gallery = tmp_path / 'gallery.db'
    status = main(['enroll', str(enrolment_folder), '--gallery', str(gallery),
                   '--model', str(tiny_model)])
    output = capsys.readouterr().out
    assert status == 0
    assert 'blurred.jpg: face too blurred' in output
    assert 'empty.jpg: no face found' in output
    assert 'two.jpg: 2 faces found' in output
    assert 'small.jpg: face too small' in output
    assert 'P-0001: enrolled 1 photo(s)' in output
    assert main(['gallery', 'list', '--gallery', str(gallery), '--model', str(tiny_model)]) == 0
    assert 'P-0001\t1 template(s)' in capsys.readouterr().out


def test_names_are_refused_as_patient_ids(tmp_path, tiny_model, portrait, capsys):
    write(tmp_path / 'photos' / 'Grace Hopper' / 'good.jpg', portrait)
    status = main(['enroll', str(tmp_path / 'photos'), '--gallery', str(tmp_path / 'g.db'),
                   '--model', str(tiny_model)])
    assert status == 2
    assert 'Grace Hopper' in capsys.readouterr().err


def test_a_gallery_made_by_another_model_is_refused(
        tmp_path, tiny_model, enrolment_folder, capsys):
    gallery = str(tmp_path / 'gallery.db')
    assert main(['enroll', str(enrolment_folder), '--gallery', gallery,
                 '--model', str(tiny_model)]) == 0
    other = build_tiny_embedder(tmp_path / 'other.onnx', seed=7)
    assert main(['gallery', 'info', '--gallery', gallery, '--model', str(other)]) == 2
    assert 're-enrol with this model' in capsys.readouterr().err


def test_gallery_remove_bumps_the_revision(tmp_path, tiny_model, enrolment_folder, capsys):
    gallery = str(tmp_path / 'gallery.db')
    common = ['--gallery', gallery, '--model', str(tiny_model)]
    main(['enroll', str(enrolment_folder)] + common)
    assert main(['gallery', 'remove', 'P-0001'] + common) == 0
    capsys.readouterr()
    assert main(['gallery', 'info'] + common) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['revision'] == 2 and info['patients'] == 0


def test_pipeline_reports_no_faces_on_an_empty_frame(tiny_model):
    pipeline = Pipeline(PipelineConfig().replace(embedder={'model': str(tiny_model)}))
    result = pipeline.process(np.zeros((480, 640, 3), np.uint8), 0.0)
    assert result.faces == [] and set(result.timings_ms) == {'detect', 'look', 'align',
                                                             'embed', 'match'}


def test_teacher_confirms_the_enrolled_portrait_and_never_names_a_stranger(
        teacher_model, portrait, tmp_path):
    config = PipelineConfig().replace(embedder={'model': str(teacher_model)})
    pipeline = Pipeline(config)
    batch = pipeline.describe(portrait)
    with Gallery.open(tmp_path / 'g.db', pipeline.embedder.fingerprint, 128) as gallery:
        gallery.add_templates('P-0001', batch.embeddings, ['portrait'], [1.0])
        pipeline.set_gallery(gallery.snapshot())
    statuses = []
    for index in range(4):
        frame = compose_frame(portrait, (640, 480), [(250 + 20 * index, 240)], 280,
                              brightness=0.8 + 0.1 * index)
        result = pipeline.process(frame, index / 15.0)
        statuses.append((result.faces[0].status, result.faces[0].patient_id))
    assert statuses[0] == ('pending', None)
    assert statuses[-1] == ('confirmed', 'P-0001')
    # A different face (the portrait mirrored is still her, so use an LFW stranger if present).
    if LFW_DIR.is_dir():
        stranger = cv2.imread(str(LFW_DIR / 'images' / 'Al_Gore' / 'Al_Gore_0002.jpg'))
        pipeline.tracker.reset()
        for index in range(5):
            result = pipeline.process(stranger, 10.0 + index / 15.0)
        assert [face.status for face in result.faces] == ['unknown']


def test_identify_prints_one_json_line_per_image(tmp_path, tiny_model, portrait, capsys):
    image = write(tmp_path / 'in' / 'frame.jpg', portrait)
    status = main(['identify', str(image), '--gallery', str(tmp_path / 'g.db'),
                   '--model', str(tiny_model), '--annotate', str(tmp_path / 'annotated')])
    assert status == 2  # no gallery yet: identify never creates one
    main(['enroll', str(write(tmp_path / 'p' / 'P-0001' / 'a.jpg', portrait).parent.parent),
          '--gallery', str(tmp_path / 'g.db'), '--model', str(tiny_model)])
    capsys.readouterr()
    assert main(['identify', str(image), '--gallery', str(tmp_path / 'g.db'),
                 '--model', str(tiny_model), '--annotate', str(tmp_path / 'annotated')]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # A photo is judged on its own: the enrolled face is confirmed from one photo.
    assert record['mode'] == 'still'
    assert len(record['faces']) == 1 and record['faces'][0]['status'] == 'confirmed'
    assert record['faces'][0]['fresh'] is True
    assert record['faces'][0]['candidates'][0]['patient_id'] == 'P-0001'
    assert record['annotated'] == str(tmp_path / 'annotated' / '00000_frame_annotated.jpg')
    assert cv2.imread(record['annotated']) is not None


def test_demo_confirms_the_sample_portrait_with_the_teacher(teacher_model, tmp_path, capsys):
    assert main(['demo', '--model', str(teacher_model), '--frames', '8',
                 '--out', str(tmp_path)]) == 0
    assert 'P-0001 confirmed at frame' in capsys.readouterr().out
    assert (tmp_path / 'confirmed.jpg').is_file()


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_eval_pairs_runs_the_protocol_on_an_lfw_subset(teacher_model, tmp_path, capsys):
    lines = (LFW_DIR / 'pairs.txt').read_text().splitlines()
    subset = ['2 4'] + lines[1:5] + lines[301:305] + lines[601:605] + lines[901:905]
    (tmp_path / 'pairs.txt').write_text('\n'.join(subset) + '\n')
    (tmp_path / 'images').symlink_to(LFW_DIR / 'images')
    assert main(['eval-pairs', '--lfw', str(tmp_path), '--model', str(teacher_model),
                 '--out', str(tmp_path / 'out')]) == 0
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert report['pairs'] == 16
    assert report['cosine']['accuracy_mean'] >= 0.75
    fixed = report['at_model_threshold']  # the teacher file's own threshold, 0.4
    assert (fixed['threshold'], fixed['genuine_pairs'], fixed['impostor_pairs']) == (0.4, 8, 8)
    assert fixed['genuine_accepted'] > fixed['impostor_accepted']
    for plot in ('roc.png', 'cosine_histogram.png'):
        assert cv2.imread(str(tmp_path / 'out' / plot)) is not None
    assert 'cosine    accuracy' in capsys.readouterr().out

    assert main(['eval-pairs', '--lfw', str(tmp_path), '--model', str(teacher_model),
                 '--masked', '--out', str(tmp_path / 'masked')]) == 0
    masked = json.loads((tmp_path / 'masked' / 'report.json').read_text())
    assert masked['second_photo_masked'] and not report['second_photo_masked']
    assert masked['bare'] == report['cosine']  # the bare protocol comes along, unchanged
    assert masked['cosine'] != report['cosine']
    assert 'bare pairs (no mask)' in capsys.readouterr().out


def test_bench_prints_every_stage(tiny_model, capsys):
    assert main(['bench', '--model', str(tiny_model), '--frames', '5', '--face-width',
                 '300']) == 0
    output = capsys.readouterr().out
    for stage in ('decode', 'detect', 'align', 'embed', 'match', 'total', 'frames/s'):
        assert stage in output


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_eval_openset_lists_every_photo_given_someone_elses_id(tiny_model, tmp_path, capsys):
    people = ['Abdullah_Gul', 'Adrien_Brody', 'Al_Gore', 'Al_Sharpton', 'Aaron_Peirsol',
              'Aaron_Sorkin', 'Abel_Pacheco']
    (tmp_path / 'images').mkdir()
    for person in people:
        (tmp_path / 'images' / person).symlink_to(LFW_DIR / 'images' / person)
    # A random-weight model at a low threshold: it gives photos the wrong ids.
    config = tmp_path / 'face_id.yaml'
    config.write_text('matcher:\n  threshold: 0.6\n  allow_below_model_threshold: true\n')
    assert main(['eval-openset', '--lfw', str(tmp_path), '--model', str(tiny_model),
                 '--config', str(config), '--patients', '3', '--strangers', '4',
                 '--min-photos', '6', '--out', str(tmp_path / 'out')]) == 0
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert report['model_sha256'] == model_fingerprint(tiny_model)
    result = report['at_default']
    listed = report['false_accepts']
    assert len(listed) == result['wrong_patient'] + result['stranger_accepted'] > 0
    for accepted in listed:
        assert accepted['truth'] not in accepted['accepted_as']
        assert Path(accepted['photo']).is_file()
    assert 'accepted as P-' in capsys.readouterr().out
    # Raising the threshold never accepts more strangers.
    swept = [row['stranger_accepted'] for row in report['sweep']]
    assert swept == sorted(swept, reverse=True)
    assert [row['threshold'] for row in report['sweep']][-3:] == [0.97, 0.98, 0.99]


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_calibrate_threshold_scores_only_pairs_of_different_people(
        teacher_model, tmp_path, capsys):
    # Three people, one folder each; LFW photos stand in for aligned canvases here.
    people = {'Abdullah_Gul': 4, 'Adrien_Brody': 3, 'Al_Sharpton': 2}
    for person, count in people.items():
        (tmp_path / person).mkdir()
        for photo in sorted((LFW_DIR / 'images' / person).iterdir())[:count]:
            (tmp_path / person / photo.name).symlink_to(photo)
    assert main(['calibrate-threshold', str(teacher_model), str(tmp_path), '--far', '0.5',
                 '--margin', '69']) == 0
    output = capsys.readouterr().out
    # 9 faces give 36 pairs; 6 + 3 + 1 of them show one person twice.
    assert '9 faces of 3 people' in output and 'bare faces: 26 impostor pairs' in output
    threshold = float(output.split('threshold at FAR 0.5: ')[1].split()[0])
    assert -1.0 <= threshold < 0.5   # the teacher scores different people low
    # Masked faces of different people, each with another mask: 52 ordered pairs.
    assert 'masked faces: 52 impostor pairs' in output
    masked = float(output.split('masked-template threshold at FAR 0.5: ')[1].split()[0])
    assert masked >= threshold
    assert 'too few' not in output   # 26 pairs resolve a FAR of 0.5
    # 26 pairs cannot measure a FAR of 1e-5: the normal tail, above every pair, is used.
    assert main(['calibrate-threshold', str(teacher_model), str(tmp_path), '--far', '1e-5',
                 '--margin', '69']) == 0
    output = capsys.readouterr().out
    tail = float(output.split('normal tail ')[1].split()[0])
    assert 'too few' in output and f'threshold at FAR 1e-05: {tail:.4f}' in output
    assert tail > float(output.split('max ')[1].split(';')[0])
    assert ('names nobody' in output) == (tail >= 1.0)
    for person in ('Abdullah_Gul', 'Adrien_Brody'):
        shutil.rmtree(tmp_path / person)
    assert main(['calibrate-threshold', str(teacher_model), str(tmp_path)]) == 2
    assert 'impostor pairs need two' in capsys.readouterr().err


def test_set_thresholds_changes_only_the_thresholds_and_version(tmp_path, capsys):
    from face_id_ros.core.embedding import OnnxEmbedder
    shipped = PACKAGE_ROOT / 'models' / 'face_embedder.onnx'
    target = tmp_path / 'retuned.onnx'
    assert main(['model', 'set-thresholds', str(shipped), str(target), '--version', '9.9',
                 '--cosine-threshold', '0.6', '--masked-cosine-threshold', '0.7']) == 0
    before, after = OnnxEmbedder(str(shipped)), OnnxEmbedder(str(target))
    assert after.metadata == dataclasses.replace(
        before.metadata, version='9.9', cosine_threshold=0.6, masked_cosine_threshold=0.7)
    crops = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), np.uint8)
    assert np.array_equal(before.embed(crops), after.embed(crops))
    assert after.fingerprint != before.fingerprint  # galleries must enrol again
    # A masked threshold below the bare one would name masked strangers: refused.
    assert main(['model', 'set-thresholds', str(shipped), str(tmp_path / 'bad.onnx'),
                 '--version', '9.9', '--cosine-threshold', '0.6',
                 '--masked-cosine-threshold', '0.5']) == 2
    assert 'masked_cosine_threshold' in capsys.readouterr().err
    assert not (tmp_path / 'bad.onnx').exists()


def test_model_latency_times_models_against_each_other(tiny_model, capsys):
    from face_id_ros.cli.parser import main
    shipped = str(PACKAGE_ROOT / 'models' / 'face_embedder.onnx')
    assert main(['model', 'latency', str(tiny_model), shipped, '--rounds', '2',
                 '--runs', '3']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f'{tiny_model}: median ') and lines[0].endswith(' 1.000')
    assert lines[1].startswith(f'{shipped}: median ')
    assert float(lines[1].rsplit(' ', 1)[1]) > 0
