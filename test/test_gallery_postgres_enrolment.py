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
`face-id enroll --gallery-url` on real LFW faces: the enrolment rules of a SQLite gallery.

A photo is known on the server by its digest keyed with the gallery key, so the same photo
twice is one template; a face that matches another patient is refused (one person, one id);
``face-id gallery migrate`` upgrades a schema-1 server, which kept no digests, in place. A
real throw-away PostgreSQL server (conftest.py ``postgres_cluster``); the tests skip, saying
why, without one or without LFW.
"""

import shutil

from face_id_ros.cli.parser import main
from face_id_ros.core import gallery_server_schema
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.enrolment import photo_source
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key, TemplateCipher
from face_id_ros.core.gallery_postgres import PostgresGallery
from face_id_ros.core.resources import default_model_path
import numpy as np
import pytest
from test_enrolment_cli import enrolment_folder, photos_of
from test_gallery_postgres import as_bytes, raw_rows


@pytest.fixture
def key_text(monkeypatch):
    text = new_key_text()
    monkeypatch.setenv(KEY_ENV, text)
    return text


@pytest.fixture
def desk(server_url, key_text, capsys):
    """Make the server's schema with `face-id gallery migrate`; return the enroll command."""
    assert main(['gallery', 'migrate', '--gallery-url', server_url]) == 0
    assert 'schema 0 -> 2' in capsys.readouterr().out

    def enroll(folder, *options):
        return main(['enroll', str(folder), '--gallery-url', server_url, *options])
    return enroll


def open_server(server_url, key_text):
    embedder = OnnxEmbedder(default_model_path())
    return PostgresGallery.open(server_url, embedder.fingerprint, embedder.embedding_size,
                                parse_key(key_text, 'test'))


def template_counts(server_url, key_text):
    with open_server(server_url, key_text) as server:
        return {record.patient_id: record.template_count for record in server.list_patients()}


def test_enrolling_the_same_folder_twice_on_the_server_adds_nothing(
        server_url, key_text, desk, tmp_path, capsys):
    garner = photos_of('Jennifer_Garner')
    folder = enrolment_folder(tmp_path / 'photos', 'P-0001', garner[:3])
    shutil.copy(garner[0], folder / 'P-0001' / 'copy_of_the_first.jpg')
    assert desk(folder) == 0
    assert 'P-0001: enrolled 3 photo(s)' in capsys.readouterr().out  # the copy is one photo
    assert desk(folder) == 0
    output = capsys.readouterr().out
    assert output.count('the same photo is enrolled already') == 4
    assert 'P-0001: no new photo accepted, nothing enrolled' in output
    assert 'revision 1, 1 patient(s)' in output  # nothing written: no revision, no audit entry
    assert template_counts(server_url, key_text) == {'P-0001': 3}
    key = parse_key(key_text, 'test')
    with open_server(server_url, key_text) as server:
        assert server.template_sources() == {
            'P-0001': {photo_source(photo.read_bytes(), key) for photo in garner[:3]}}
        assert [entry.action for entry in server.audit()] == ['enrol']
    # One new photo in the folder: only it is added. --replace keeps exactly the folder's.
    shutil.copy(garner[3], folder / 'P-0001')
    assert desk(folder) == 0
    assert template_counts(server_url, key_text) == {'P-0001': 4}
    (folder / 'P-0001' / garner[1].name).unlink()
    assert desk(folder, '--replace') == 0
    assert template_counts(server_url, key_text) == {'P-0001': 3}
    with open_server(server_url, key_text) as server:
        assert server.template_sources()['P-0001'] == {
            photo_source(photo.read_bytes(), key) for photo in (garner[0], *garner[2:4])}
        assert [entry.action for entry in server.audit()] == ['enrol', 'add', 'replace']


def test_a_face_that_matches_another_patient_is_refused_on_the_server(
        server_url, key_text, desk, tmp_path, capsys):
    garner, powell = photos_of('Jennifer_Garner'), photos_of('Colin_Powell')
    assert desk(enrolment_folder(tmp_path / 'a', 'P-0001', garner[:3])) == 0
    # Her other photos as a new patient: refused, nothing of P-0006 written, with --replace too.
    second = enrolment_folder(tmp_path / 'b', 'P-0006', garner[3:6])
    capsys.readouterr()
    assert desk(second) == 1
    assert 'P-0006: refused, nothing enrolled: this face already matches enrolled patient ' \
           'P-0001' in capsys.readouterr().out
    assert desk(second, '--replace') == 1
    assert template_counts(server_url, key_text) == {'P-0001': 3}
    # Another person is enrolled; her photos added to P-0001 on purpose; his are refused.
    assert desk(enrolment_folder(tmp_path / 'c', 'P-0002', powell[:3])) == 0
    assert desk(second, '--patient-id', 'P-0006', '--add-to', 'P-0001') == 0
    counts = template_counts(server_url, key_text)
    assert counts['P-0001'] == 6 and counts['P-0002'] >= 1
    assert desk(enrolment_folder(tmp_path / 'd', 'P-0009', powell[3:5]),
                '--patient-id', 'P-0009', '--add-to', 'P-0001') == 1
    assert template_counts(server_url, key_text) == counts
    with open_server(server_url, key_text) as server:
        assert [(entry.action, entry.patient_id) for entry in server.audit()] == [
            ('enrol', 'P-0001'), ('enrol', 'P-0002'), ('add', 'P-0001')]


def test_migrate_upgrades_a_schema_1_server_in_place_and_it_keeps_digests_only(
        server_url, key_text, tiny_model, postgres_cluster, monkeypatch, capsys):
    """A server an older release made and wrote to: its rows stay, new ones carry digests."""
    import psycopg
    key = parse_key(key_text, 'test')
    embedder = OnnxEmbedder(str(tiny_model))
    common = ['--gallery-url', server_url, '--model', str(tiny_model)]
    with monkeypatch.context() as older_release:
        older_release.setattr(gallery_server_schema, 'SERVER_SCHEMA_VERSION', 1)
        assert main(['gallery', 'migrate'] + common) == 0
        assert 'schema 0 -> 1' in capsys.readouterr().out
    # One template as a schema-1 release wrote it: sealed to its row, no source column.
    embedding = np.random.default_rng(1).normal(size=embedder.embedding_size).astype('<f4')
    with psycopg.connect(server_url, autocommit=True) as db:
        assert 'source' not in [row[0] for row in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'face_id'"
            " AND table_name = 'templates'")]
        gallery_id = db.execute("SELECT value FROM face_id.meta WHERE key = 'gallery_id'"
                                ).fetchone()[0]
        with db.transaction():
            template_id = db.execute("SELECT nextval('face_id.templates_template_id_seq')"
                                     ).fetchone()[0]
            sealed = TemplateCipher(key, gallery_id).seal(embedding.tobytes(), template_id,
                                                          'P-0001', 'embedding')
            db.execute('UPDATE face_id.revision SET revision = 1')
            db.execute("INSERT INTO face_id.patients VALUES ('P-0001', 1.0, 1)")
            db.execute('INSERT INTO face_id.templates (template_id, patient_id, revision,'
                       " embedding, enrolled, quality) VALUES (%s, 'P-0001', 1, %s, 1.0, 0.9)",
                       (template_id, sealed))
            db.execute('INSERT INTO face_id.audit (revision, operator, action, patient_id,'
                       " templates) VALUES (1, 'old desk', 'enrol', 'P-0001', 1)")
    with pytest.raises(GalleryError, match='schema version 1; this software reads version 2: '
                                           'run `face-id gallery migrate`'):
        PostgresGallery.open(server_url, embedder.fingerprint, embedder.embedding_size, key)
    assert main(['gallery', 'migrate'] + common) == 0
    assert ('schema 1 -> 2, aes-256-gcm: revision 1, 1 patient(s), 1 template(s)'
            in capsys.readouterr().out)
    assert main(['gallery', 'migrate'] + common) == 0
    assert 'schema 2 -> 2' in capsys.readouterr().out
    with PostgresGallery.open(server_url, embedder.fingerprint, embedder.embedding_size,
                              key) as server:
        snapshot = server.snapshot()
        assert snapshot.revision == 1 and list(snapshot.patient_ids) == ['P-0001']
        np.testing.assert_allclose(snapshot.templates[0], embedding / np.linalg.norm(embedding),
                                   atol=1e-6)
        assert server.template_sources() == {}  # the old row has no digest
        digest = photo_source(b'the bytes of a photo', key)
        server.add_templates('P-0001', [embedding], [digest], [0.9])
        # A name, an unkeyed digest and a camera are dropped: the server keeps digests only.
        server.add_templates('P-0002', np.eye(3, embedder.embedding_size),
                             ['/photos/Jane_Doe.jpg', photo_source(b'another photo'),
                              'camera /front #0'], [1, 1, 1])
        assert server.template_sources() == {'P-0001': {digest}}
    with psycopg.connect(postgres_cluster.admin_url.replace(
            '/face_id?', f"/{server_url.rsplit('/', 1)[1]}?"), autocommit=True) as admin:
        with pytest.raises(psycopg.errors.CheckViolation, match='source_is_a_keyed_digest'):
            admin.execute("UPDATE face_id.templates SET source = 'Jane_Doe.jpg'")
    everything = b'\x00'.join(as_bytes(cell) for rows in raw_rows(postgres_cluster,
                                                                  server_url).values()
                              for row in rows for cell in row)
    assert digest.encode() in everything
    assert b'Jane_Doe' not in everything and b'.jpg' not in everything
