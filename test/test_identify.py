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
A stranger in a confirmed patient's place is never named; photos are judged on their own.

On real LFW faces and the shipped model: the swap cases that the tracker named as the
patient before the look test (``face-id swap-benchmark`` found them), through the pipeline,
the ``/patient_id`` message and the gate's rules, and through ``face-id identify
--sequence``. Then what ``identify`` does with photos: each judged alone, an unreadable one
reported and skipped, annotated copies that never overwrite each other.
"""

import json

from conftest import LFW_DIR
import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.image_files import read_image
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.ros_messages import rosbags_typestore
from face_id_ros.evaluation.swap_benchmark import run_case, SwapCase
import pytest

# (patient's photo, stranger's photo): each stranger was reported `confirmed` as the patient
# on the frame after three of the patient's, and granted a dispense by the gate, before the
# look test (swap-benchmark seed 0; the last one is the issue's `identify B B B S` case).
SWAPS = [
    ('George_Lopez/George_Lopez_0001.jpg', 'Darren_Clarke/Darren_Clarke_0001.jpg'),
    ('Kalpana_Chawla/Kalpana_Chawla_0001.jpg', 'Benjamin_Netanyahu/Benjamin_Netanyahu_0001.jpg'),
    ('Sam_Bith/Sam_Bith_0001.jpg', 'Eduard_Shevardnadze/Eduard_Shevardnadze_0001.jpg'),
    ('Erik_Morales/Erik_Morales_0001.jpg', 'Hisham_Halawi/Hisham_Halawi_0001.jpg'),
    ('Mian_Khursheed_Mehmood_Kasuri/Mian_Khursheed_Mehmood_Kasuri_0002.jpg',
     'Laurie_Chan/Laurie_Chan_0001.jpg'),
    ('Tony_Blair/Tony_Blair_0018.jpg', 'Amanda_Bynes/Amanda_Bynes_0001.jpg'),
]
needs_lfw = pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared/data LFW is absent')


def lfw(relative):
    """Return the path of an LFW photo."""
    return str(LFW_DIR / 'images' / relative)


@pytest.fixture(scope='module')
def swap_gallery(tmp_path_factory):
    """Return (config, gallery path) with each swap's patient enrolled from their photo."""
    if not LFW_DIR.is_dir():
        pytest.skip('../shared/data LFW is absent')
    path = tmp_path_factory.mktemp('swap') / 'g.db'
    config = PipelineConfig().replace(gallery={'path': str(path), 'encryption': 'off'})
    pipeline = Pipeline(config)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        for index, (patient, _) in enumerate(SWAPS):
            embeddings = pipeline.describe(read_image(lfw(patient))).embeddings[:1]
            gallery.add_templates(f'P-{index + 1:04d}', embeddings, ['lfw'], [1.0])
    return config, path


@needs_lfw
def test_a_stranger_in_a_confirmed_patients_place_is_never_named_pipeline_message_gate(
        swap_gallery):
    config, path = swap_gallery
    pipeline = Pipeline(config)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size, create=False) as gallery:
        pipeline.set_gallery(gallery.snapshot())
    typestore = rosbags_typestore()
    worker = FrameWorker(pipeline, typestore.types)
    for index, (patient, stranger) in enumerate(SWAPS):
        case = SwapCase(f'P-{index + 1:04d}', lfw(patient), lfw(stranger))
        run_case(worker, typestore, case, {case.patient_photo: read_image(lfw(patient))},
                 patient_frames=3, stranger_frames=3, fps=15.0)
        assert case.patient_confirmed, case
        # The look test sees another face: the stranger is embedded at once, every frame.
        assert case.stranger_fresh == [[True]] * 3, case
        assert not case.failed, case  # not confirmed, not on /patient_id, no dispense


@needs_lfw
def test_identify_sequence_embeds_the_stranger_afresh_and_never_confirms_him(swap_gallery,
                                                                             capsys):
    config, path = swap_gallery
    patient, stranger = SWAPS[-1]
    status = main(['identify', '--sequence', lfw(patient), lfw(patient), lfw(patient),
                   lfw(stranger), '--gallery', str(path), '--config', write_config(path)])
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record['mode'] for record in records] == ['sequence'] * 4
    assert [record['faces'][0]['status'] for record in records[:3]] == [
        'pending', 'pending', 'confirmed']
    [face] = records[3]['faces']
    assert face['fresh'] is True
    assert face['status'] != 'confirmed' and face['patient_id'] is None


def write_config(gallery_path):
    """Write a config for an unencrypted gallery beside it; return its path."""
    config = gallery_path.parent / 'plain.yaml'
    config.write_text("gallery:\n  encryption: 'off'\n")
    return str(config)


@needs_lfw
def test_photos_are_judged_each_on_its_own(swap_gallery, capsys):
    _, path = swap_gallery
    patient, stranger = SWAPS[-1]
    assert main(['identify', lfw(patient), lfw(stranger), lfw(patient), '--gallery',
                 str(path), '--config', write_config(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    faces = [record['faces'][0] for record in records]
    assert [record['mode'] for record in records] == ['still'] * 3
    # One good photo confirms; the stranger's photo is unknown; nothing is carried over.
    assert [(face['status'], face['patient_id']) for face in faces] == [
        ('confirmed', 'P-0006'), ('unknown', None), ('confirmed', 'P-0006')]
    assert all(face['fresh'] for face in faces)
    # One scale: the score is the cosine (clipped at 0), the threshold's scale.
    assert faces[0]['candidates'][0]['score'] == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= faces[1]['candidates'][0]['score'] < 0.5333


def test_identify_goes_on_past_an_unreadable_file_and_fails_at_the_end(
        tmp_path, tiny_model, portrait, capsys):
    folder = tmp_path / 'photos'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.jpg'), portrait)
    (folder / 'b.jpg').write_bytes(b'not a picture at all')
    cv2.imwrite(str(folder / 'c.jpg'), portrait)
    gallery = tmp_path / 'g.db'
    with Gallery.open(gallery, Pipeline(PipelineConfig().replace(
            embedder={'model': str(tiny_model)})).embedder.fingerprint, 16):
        pass
    status = main(['identify', str(folder), '--gallery', str(gallery), '--model',
                   str(tiny_model), '--config', write_config(gallery)])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert status == 1
    names = [record['frame'].rsplit('/', 1)[1] for record in records]
    assert names == ['a.jpg', 'b.jpg', 'c.jpg']
    assert 'error' in records[1] and 'faces' not in records[1]
    assert len(records[0]['faces']) == len(records[2]['faces']) == 1
    assert 'skipped' in captured.err and 'b.jpg' in captured.err


def test_annotated_copies_of_same_named_photos_do_not_overwrite_each_other(
        tmp_path, tiny_model, portrait, capsys):
    first = tmp_path / 'ward_a' / 'photo.jpg'
    second = tmp_path / 'ward_b' / 'photo.jpg'
    for path, image in ((first, portrait), (second, portrait[:, ::-1].copy())):
        path.parent.mkdir()
        cv2.imwrite(str(path), image)
    gallery = tmp_path / 'g.db'
    with Gallery.open(gallery, Pipeline(PipelineConfig().replace(
            embedder={'model': str(tiny_model)})).embedder.fingerprint, 16):
        pass
    out = tmp_path / 'annotated'
    assert main(['identify', str(first), str(second), '--annotate', str(out), '--gallery',
                 str(gallery), '--model', str(tiny_model), '--config',
                 write_config(gallery)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = [record['annotated'] for record in records]
    assert len(set(written)) == 2 and sorted(path.name for path in out.iterdir()) == [
        '00000_photo_annotated.jpg', '00001_photo_annotated.jpg']
    images = [cv2.imread(path) for path in written]
    assert not (images[0] == images[1]).all()  # each copy shows its own photo
