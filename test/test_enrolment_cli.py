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
`face-id enroll` on real LFW faces with the shipped model.

One person, one id; one template per photo; nothing in the gallery's bytes that names a photo
or a person; demo and gallery-crash as a new user meets them.
"""

from contextlib import closing
import os
import shutil
import sqlite3

from conftest import LFW_DIR
from face_id_ros.cli.parser import main
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery, migrate
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key
import numpy as np
import pytest

PEOPLE = {'P-0001': 'Jennifer_Garner', 'P-0002': 'Colin_Powell'}


def photos_of(person):
    photos = sorted((LFW_DIR / 'images' / person).glob('*.jpg'))
    if len(photos) < 6:
        pytest.skip('../shared LFW is absent')
    return photos


def enrolment_folder(root, patient_id, photos):
    folder = root / patient_id
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    return root


@pytest.fixture
def key_text(monkeypatch):
    text = new_key_text()
    monkeypatch.setenv(KEY_ENV, text)
    return text


def enroll(tmp_path, folder, *options):
    return main(['enroll', str(folder), '--gallery', str(tmp_path / 'gallery.db'), *options])


def template_counts(tmp_path, capsys):
    capsys.readouterr()
    assert main(['gallery', 'list', '--gallery', str(tmp_path / 'gallery.db')]) == 0
    return {line.split('\t')[0]: int(line.split('\t')[1].split()[0])
            for line in capsys.readouterr().out.splitlines()}


def test_the_same_person_under_a_second_id_is_refused_unless_added_on_purpose(
        tmp_path, key_text, capsys):
    garner, powell = photos_of('Jennifer_Garner'), photos_of('Colin_Powell')
    assert enroll(tmp_path, enrolment_folder(tmp_path / 'a', 'P-0001', garner[:3])) == 0
    # Her other photos as a new patient: refused, nothing of P-0006 written.
    second = enrolment_folder(tmp_path / 'b', 'P-0006', garner[3:6])
    capsys.readouterr()
    assert enroll(tmp_path, second) == 1
    output = capsys.readouterr().out
    assert 'P-0006: refused, nothing enrolled: this face already matches enrolled patient ' \
           'P-0001' in output
    assert '--patient-id P-0006 --add-to <that id>' in output
    assert template_counts(tmp_path, capsys) == {'P-0001': 3}
    # --replace does not get round it either.
    assert enroll(tmp_path, second, '--replace') == 1
    # Another person is enrolled without a word; her photos added to P-0001 on purpose.
    assert enroll(tmp_path, enrolment_folder(tmp_path / 'c', 'P-0002', powell[:3])) == 0
    assert enroll(tmp_path, second, '--patient-id', 'P-0006', '--add-to', 'P-0001') == 0
    counts = template_counts(tmp_path, capsys)
    assert counts['P-0001'] == 6 and counts['P-0002'] >= 1
    # Adding Powell's photos to her is refused: they match P-0002.
    assert enroll(tmp_path, enrolment_folder(tmp_path / 'd', 'P-0009', powell[3:5]),
                  '--patient-id', 'P-0009', '--add-to', 'P-0001') == 1
    assert main(['enroll', str(second), '--gallery', str(tmp_path / 'gallery.db'),
                 '--add-to', 'P-0001']) == 2
    assert '--add-to adds one sub-folder' in capsys.readouterr().err
    assert template_counts(tmp_path, capsys) == counts


def test_enrolling_the_same_photos_again_adds_nothing(tmp_path, key_text, capsys):
    garner = photos_of('Jennifer_Garner')
    folder = enrolment_folder(tmp_path / 'photos', 'P-0001', garner[:3])
    shutil.copy(garner[0], folder / 'P-0001' / 'copy_of_the_first.jpg')
    assert enroll(tmp_path, folder) == 0
    assert 'P-0001: enrolled 3 photo(s)' in capsys.readouterr().out  # the copy is one photo
    assert enroll(tmp_path, folder) == 0
    output = capsys.readouterr().out
    assert output.count('the same photo is enrolled already') == 4
    assert 'P-0001: no new photo accepted, nothing enrolled' in output
    assert template_counts(tmp_path, capsys) == {'P-0001': 3}
    # One new photo in the folder: only it is added. --replace keeps exactly the folder's.
    shutil.copy(garner[3], folder / 'P-0001')
    assert enroll(tmp_path, folder) == 0
    assert template_counts(tmp_path, capsys) == {'P-0001': 4}
    (folder / 'P-0001' / garner[1].name).unlink()
    assert enroll(tmp_path, folder, '--replace') == 0
    assert template_counts(tmp_path, capsys) == {'P-0001': 3}


def test_masked_photos_are_stored_masked_and_the_enrolment_says_if_they_count(
        tmp_path, key_text, capsys):
    garner = photos_of('Jennifer_Garner')
    assert enroll(tmp_path, enrolment_folder(tmp_path / 'a', 'P-0001', garner[:2]),
                  '--masked') == 0
    output = capsys.readouterr().out
    assert 'P-0001: enrolled 2 photo(s), 2 masked' in output
    # The shipped 2.0.0 has no masked-template threshold, and says such templates name nobody.
    assert 'this model has no threshold for masked templates: they name nobody' in output


def test_the_gallery_files_name_no_photo_and_no_person_and_only_the_owner_reads_them(
        tmp_path, key_text, capsys):
    garner = photos_of('Jennifer_Garner')
    folder = enrolment_folder(tmp_path / 'photos', 'P-0001', garner[:2])
    path = tmp_path / 'ward' / 'gallery.db'
    with Gallery.open(path, 'f' * 64, 8, key=parse_key(key_text, 'test')):
        pass  # only to hold the WAL open below; the enrolment makes the real gallery
    path.unlink()
    assert main(['enroll', str(folder), '--gallery', str(path)]) == 0
    # A second connection keeps the write-ahead log and shared memory on disk to inspect.
    with closing(sqlite3.connect(path)) as reader:
        reader.execute('SELECT COUNT(*) FROM templates').fetchone()
        assert main(['enroll', str(folder), '--gallery', str(path),
                     '--replace']) == 0  # writes into the WAL the reader keeps
        names = {'gallery.db', 'gallery.db-wal', 'gallery.db-shm'}
        assert names <= set(os.listdir(path.parent))
        data = b''
        for name in names:
            assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name
            data += (path.parent / name).read_bytes()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for secret in ('Jennifer', 'Garner', garner[0].name, garner[0].stem, 'photos'):
        for encoding in ('utf-8', 'utf-16-le'):
            assert secret.encode(encoding) not in data, secret


def test_migrate_removes_the_photo_paths_an_older_release_wrote(tmp_path, key_text):
    path = tmp_path / 'gallery.db'
    key = parse_key(key_text, 'test')
    rows = np.eye(4, dtype=np.float32)[:2]
    with Gallery.open(path, 'f' * 64, 4, key=key) as gallery:
        gallery.add_templates('P-0001', rows, ['enrol/P-0001/Jennifer_Garner_0001.jpg',
                                               'camera /front #0'], [0.9, 0.8])
        revision = gallery.revision
    summary = migrate(path, key)
    assert (summary['from_schema'], summary['photo_names_removed']) == (2, 1)
    data = path.read_bytes() + b''.join(
        (tmp_path / name).read_bytes() for name in os.listdir(tmp_path) if name != path.name)
    assert b'Jennifer' not in data and b'camera /front #0' in data
    with Gallery.open(path, 'f' * 64, 4, create=False, key=key) as gallery:
        assert gallery.revision == revision
        np.testing.assert_array_equal(gallery.snapshot().templates, rows)
        assert gallery.template_sources() == {
            'P-0001': {'photo (name removed by migrate)', 'camera /front #0'}}
    with pytest.raises(GalleryError, match='names no photo: nothing to migrate'):
        migrate(path, key)


def test_demo_removes_its_temporary_folder(tmp_path, tiny_model, monkeypatch, capsys):
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    main(['demo', '--model', str(tiny_model), '--frames', '2'])
    assert os.listdir(tmp_path) == []
    assert 'face_id_demo_' not in capsys.readouterr().out


def test_gallery_crash_ends_with_a_verdict_line(tmp_path, capsys):
    assert main(['gallery-crash', '--kills', '3', '--rounds', '1', '--encryption', 'off',
                 '--out', str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith('PASS: every kill left the last committed revision intact; 3 '
                           'kills, 1 concurrent rounds')
