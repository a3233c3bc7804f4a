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
Templates at rest: encryption, the key, secure removal and the migration of old galleries.

The checks read the gallery's raw bytes (the database file, its write-ahead log and shared
memory index) the way someone with a copy of the files would, and search them for the
float32 bytes of stored embeddings and for stored PNG crops.
"""

from contextlib import closing
import os
import sqlite3

import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core import gallery as gallery_module
from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery, migrate
from face_id_ros.core.gallery_crypto import (KEY_ENV, key_from_config, new_key_text, parse_key,
                                             read_key_file, write_key_file)
import numpy as np
import pytest

SIZE = 16
MODEL = 'pruned-mnv2/1.0/sha256:1f2e'
# The schema-1 layout, frozen here: the format `face-id gallery migrate` converts from.
SCHEMA_1 = (
    'CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)',
    'CREATE TABLE patients (patient_id TEXT PRIMARY KEY, created REAL NOT NULL)',
    'CREATE TABLE templates ('
    ' template_id INTEGER PRIMARY KEY AUTOINCREMENT,'
    ' patient_id TEXT NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,'
    ' embedding BLOB NOT NULL, enrolled REAL NOT NULL, source TEXT NOT NULL,'
    ' quality REAL NOT NULL, image BLOB)',
    'CREATE INDEX templates_by_patient ON templates(patient_id)',
)


def key(text=None):
    return parse_key(text or new_key_text(), 'test key')


def unit_rows(seed, count):
    rows = np.random.default_rng(seed).normal(size=(count, SIZE))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def crop(seed):
    """Return a random 32x32 BGR crop and its PNG bytes, as the gallery stores it."""
    image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return image, cv2.imencode('.png', image)[1].tobytes()


def enrol(gallery, patient_id, seed, count=2):
    """Enrol ``count`` templates with crops; return their float32 bytes and PNG bytes."""
    rows = unit_rows(seed, count)
    crops = [crop(seed * 100 + index) for index in range(count)]
    gallery.add_templates(patient_id, rows, [f'{patient_id}-{index}.jpg' for index in
                                             range(count)], [0.9] * count,
                          images=[image for image, _ in crops])
    return [row.astype('<f4').tobytes() for row in rows], [png for _, png in crops]


def file_bytes(path):
    """Everything a copy of the gallery holds: the file, its WAL and its shared memory."""
    return b''.join(open(f'{path}{suffix}', 'rb').read()
                    for suffix in ('', '-wal', '-shm') if os.path.exists(f'{path}{suffix}'))


def found(secrets, data):
    """Return how many of ``secrets`` (whole, or 16 bytes from their middle) occur in ``data``."""
    def middle(secret):
        start = (len(secret) - 16) // 2  # PNGs all start alike, so not from the start
        return secret[start:start + 16]
    return sum(secret in data or middle(secret) in data for secret in secrets)


@pytest.fixture
def path(tmp_path):
    return tmp_path / 'gallery.db'


@pytest.mark.parametrize('encrypted', [False, True])
def test_a_copied_gallery_reveals_templates_and_crops_only_without_encryption(path, encrypted):
    with Gallery.open(path, MODEL, SIZE, store_images=True,
                      key=key() if encrypted else None) as gallery:
        embeddings, crops = enrol(gallery, 'P-0001', seed=1, count=3)
        while_open = file_bytes(path)
        assert gallery.info()['encryption'] == ('aes-256-gcm' if encrypted else 'none')
    after_close = file_bytes(path)
    expected = 0 if encrypted else 3  # the unencrypted control shows the search finds them
    assert found(embeddings, while_open) == found(embeddings, after_close) == expected
    assert found(crops, while_open) == found(crops, after_close) == expected
    assert (b'IHDR' in after_close) is not encrypted


def test_an_encrypted_gallery_reads_back_with_its_key(path):
    gallery_key = key()
    rows = unit_rows(4, 3)
    with Gallery.open(path, MODEL, SIZE, store_images=True, key=gallery_key) as gallery:
        gallery.add_templates('P-0001', rows, ['a', 'b', 'c'], [0.9] * 3,
                              images=[crop(1)[0], None, crop(2)[0]], masked=[True, False, True])
    with Gallery.open(path, MODEL, SIZE, create=False, key=gallery_key) as reopened:
        snapshot = reopened.snapshot()
        assert reopened.info()['templates'] == 3
    np.testing.assert_array_equal(snapshot.templates, rows)
    assert list(snapshot.masked) == [True, False, True]


def test_the_wrong_key_or_no_key_is_refused_at_open(path):
    with Gallery.open(path, MODEL, SIZE, key=key()) as gallery:
        enrol(gallery, 'P-0001', seed=1)
    with pytest.raises(GalleryError, match='encrypted with another key: the test key'):
        Gallery.open(path, MODEL, SIZE, create=False, key=key())
    with pytest.raises(GalleryError, match='is encrypted .aes-256-gcm.: open it with its key'):
        Gallery.open(path, MODEL, SIZE, create=False)


def test_an_unencrypted_gallery_is_refused_when_a_key_is_given(path):
    with Gallery.open(path, MODEL, SIZE) as gallery:
        enrol(gallery, 'P-0001', seed=1)
    with pytest.raises(GalleryError, match='is not encrypted.*face-id gallery migrate'):
        Gallery.open(path, MODEL, SIZE, key=key())


def test_a_blob_moved_to_another_row_does_not_open(path):
    with Gallery.open(path, MODEL, SIZE, key=key()) as gallery:
        enrol(gallery, 'P-0001', seed=1, count=1)
        enrol(gallery, 'P-0002', seed=2, count=1)
        with closing(sqlite3.connect(path)) as raw, raw:
            first = raw.execute('SELECT embedding FROM templates WHERE template_id = 1'
                                ).fetchone()[0]
            raw.execute('UPDATE templates SET embedding = ? WHERE template_id = 2', (first,))
        with pytest.raises(GalleryError, match=r'embedding of template 2 \(P-0002\) does not '
                                               'authenticate'):
            gallery.snapshot()


def test_the_key_comes_from_a_private_key_file_or_the_environment(tmp_path, monkeypatch):
    key_path = tmp_path / 'gallery.key'
    write_key_file(key_path)
    assert key_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(GalleryError, match='is never overwritten'):
        write_key_file(key_path)
    from_file = key_from_config(GalleryConfig(key_file=str(key_path)), environ={})
    assert from_file.secret == read_key_file(key_path).secret and len(from_file.secret) == 32
    assert 'secret' not in repr(from_file) or repr(from_file.secret) not in repr(from_file)
    text = new_key_text()
    from_environment = key_from_config(GalleryConfig(), environ={KEY_ENV: text})
    assert from_environment.secret == parse_key(text, 'x').secret
    assert from_environment.source == f'environment variable {KEY_ENV}'
    assert key_from_config(GalleryConfig(encryption='off'), environ={KEY_ENV: text}) is None
    with pytest.raises(GalleryError, match='no key is given.*face-id gallery keygen'):
        key_from_config(GalleryConfig(), environ={})
    with pytest.raises(GalleryError, match='not a gallery key'):
        key_from_config(GalleryConfig(), environ={KEY_ENV: 'c2hvcnQ='})
    key_path.chmod(0o644)
    with pytest.raises(GalleryError, match=f'can be read by others .mode 644.: run `chmod 600 '
                                           f'{key_path}`'):
        read_key_file(key_path)


def test_from_config_opens_with_the_configured_key(path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, new_key_text())
    config = GalleryConfig(path=str(path))
    with Gallery.from_config(config, MODEL, SIZE) as gallery:
        enrol(gallery, 'P-0001', seed=1)
        assert gallery.info()['encryption'] == 'aes-256-gcm'
    monkeypatch.setenv(KEY_ENV, new_key_text())
    with pytest.raises(GalleryError, match=f'another key: the environment variable {KEY_ENV}'):
        Gallery.from_config(config, MODEL, SIZE)


@pytest.mark.parametrize('encrypted', [False, True])
def test_a_removed_patient_leaves_no_bytes_in_the_file_or_its_log(path, encrypted):
    with Gallery.open(path, MODEL, SIZE, store_images=True,
                      key=key() if encrypted else None) as gallery:
        removed, removed_crops = enrol(gallery, 'P-0001', seed=1, count=3)
        kept, kept_crops = enrol(gallery, 'P-0002', seed=2, count=2)
        with closing(sqlite3.connect(path)) as raw:
            stored = [blob for (blob,) in raw.execute(
                "SELECT embedding FROM templates WHERE patient_id = 'P-0001'")]
        with Gallery.open(path, MODEL, SIZE, create=False,
                          key=gallery._key) as reader:  # the node's reader stays open
            assert found(stored, file_bytes(path)) == 3
            gallery.remove_patient('P-0001')
            data = file_bytes(path)
            assert os.path.getsize(f'{path}-wal') == 0  # checkpointed and truncated
            assert list(reader.snapshot().patient_ids) == ['P-0002']
    assert found(stored, data) == 0 and b'P-0001' not in data
    assert found(removed, data) == 0 and found(removed_crops, data) == 0
    if not encrypted:  # the control: what stays is found
        assert found(kept, data) == 2 and found(kept_crops, data) == 2


def test_replacing_templates_wipes_the_old_ones(path):
    with Gallery.open(path, MODEL, SIZE) as gallery:
        old, _ = enrol(gallery, 'P-0001', seed=1, count=3)
        gallery.add_templates('P-0001', unit_rows(9, 1), ['new.jpg'], [0.9], replace=True)
        data = file_bytes(path)
    assert found(old, data) == 0
    assert found([unit_rows(9, 1)[0].astype('<f4').tobytes()], data) == 1


def schema_1_gallery(path, patients):
    """Write a schema-1 gallery as the previous release did; return its rows' float bytes."""
    stored = {}
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute('PRAGMA journal_mode = WAL')
        for statement in SCHEMA_1:
            raw.execute(statement)
        raw.executemany('INSERT INTO meta VALUES (?, ?)', [
            ('schema_version', 1), ('model_fingerprint', MODEL), ('embedding_size', SIZE),
            ('revision', 7)])
        for seed, patient_id in enumerate(patients, 1):
            raw.execute('INSERT INTO patients VALUES (?, ?)', (patient_id, 1000.0 + seed))
            for row in unit_rows(seed, 2):
                blob = row.astype('<f4').tobytes()
                stored.setdefault(patient_id, []).append(blob)
                raw.execute('INSERT INTO templates (patient_id, embedding, enrolled, source,'
                            ' quality, image) VALUES (?, ?, ?, ?, ?, ?)',
                            (patient_id, blob, 2000.0 + seed, 'old.jpg', 0.8, crop(seed)[1]))
    return stored


def test_a_schema_1_gallery_is_refused_until_migrated_then_keeps_revision_and_stamp(path):
    stored = schema_1_gallery(path, ['P-0001', 'P-0002'])
    with pytest.raises(GalleryError, match='schema version 1.*face-id gallery migrate'):
        Gallery.open(path, MODEL, SIZE, create=False)
    gallery_key = key()
    summary = migrate(path, gallery_key)
    assert summary == {'path': str(path), 'from_schema': 1, 'revision': 7, 'patients': 2,
                       'templates': 4, 'encryption': 'aes-256-gcm', 'photo_names_removed': 4}
    assert sorted(os.listdir(path.parent)) == ['gallery.db']  # no temporary file left
    data = file_bytes(path)
    assert b'old.jpg' not in data
    assert found([blob for blobs in stored.values() for blob in blobs], data) == 0
    assert b'IHDR' not in data
    with Gallery.open(path, MODEL, SIZE, create=False, key=gallery_key) as gallery:
        snapshot = gallery.snapshot()
        info = gallery.info()
        [first, _] = gallery.list_patients()
    assert (info['revision'], info['model_fingerprint'], info['schema_version']) == (7, MODEL, 2)
    assert first.created == 1001.0 and first.enrolled == (2001.0, 2001.0)
    assert list(snapshot.masked) == [False] * 4
    np.testing.assert_allclose(snapshot.templates[:2], unit_rows(1, 2), atol=1e-6)
    with pytest.raises(GalleryError, match='already schema 2 and encrypted'):
        migrate(path, gallery_key)


def test_migration_is_refused_while_the_gallery_is_open_and_leaves_it_whole(path, monkeypatch):
    schema_1_gallery(path, ['P-0001'])
    with closing(sqlite3.connect(path)) as other:
        other.execute('SELECT COUNT(*) FROM templates').fetchone()
        with pytest.raises(GalleryError, match='open elsewhere.*stop face_id_node'):
            migrate(path, key())

    def broken_copy(gallery, source):
        raise GalleryError('the migrated copy does not read back')
    monkeypatch.setattr(gallery_module, '_check_copy', broken_copy)
    with pytest.raises(GalleryError, match='does not read back'):
        migrate(path, key())
    assert sorted(os.listdir(path.parent)) == ['gallery.db']
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                           ).fetchone()[0] == 1
        assert raw.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'


def test_an_unencrypted_schema_2_gallery_migrates_to_an_encrypted_one(path):
    with Gallery.open(path, MODEL, SIZE) as gallery:
        gallery.add_templates('P-0001', unit_rows(1, 2), ['a', 'b'], [0.9, 0.9],
                              masked=[True, False])
    gallery_key = key()
    assert migrate(path, gallery_key)['from_schema'] == 2
    with Gallery.open(path, MODEL, SIZE, create=False, key=gallery_key) as gallery:
        assert list(gallery.snapshot().masked) == [True, False]
        assert gallery.revision == 1
    with pytest.raises(GalleryError, match='nothing to migrate'):
        migrate(path, None)


def test_keygen_and_migrate_commands(tmp_path, path, capsys, monkeypatch):
    key_path = tmp_path / 'keys' / 'ward.key'  # the folder is made, owner-only
    assert main(['gallery', 'keygen', '--out', str(key_path)]) == 0
    assert str(key_path) in capsys.readouterr().out
    assert key_path.parent.stat().st_mode & 0o777 == 0o700
    assert main(['gallery', 'keygen']) == 0
    name, text = capsys.readouterr().out.strip().split('=', 1)
    assert name == KEY_ENV and len(parse_key(text, 'x').secret) == 32
    schema_1_gallery(path, ['P-0001'])
    config = tmp_path / 'ward.yaml'
    config.write_text(f'gallery:\n  key_file: {key_path}\n')
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(['gallery', 'migrate', '--gallery', str(path), '--config', str(config)]) == 0
    assert ('schema 1 -> 2, aes-256-gcm: revision 7, 1 patient(s), 2 template(s), 2 photo '
            'name(s) removed') in capsys.readouterr().out
    with Gallery.open(path, MODEL, SIZE, create=False, key=read_key_file(key_path)) as gallery:
        assert gallery.patient_ids() == ['P-0001']
    assert main(['gallery', 'migrate', '--gallery', str(path), '--config', str(config)]) == 2
    assert 'nothing to migrate' in capsys.readouterr().err


def test_the_commands_refuse_a_gallery_under_another_key(tmp_path, tiny_model, portrait,
                                                         capsys, monkeypatch):
    photos = tmp_path / 'photos' / 'P-0001'
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / 'portrait.jpg'), portrait)
    common = ['--gallery', str(tmp_path / 'g.db'), '--model', str(tiny_model)]
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(['enroll', str(photos.parent)] + common) == 2
    assert 'no key is given' in capsys.readouterr().err
    assert not (tmp_path / 'g.db').exists()
    monkeypatch.setenv(KEY_ENV, new_key_text())
    assert main(['enroll', str(photos.parent)] + common) == 0
    monkeypatch.setenv(KEY_ENV, new_key_text())
    assert main(['gallery', 'list'] + common) == 2
    assert 'encrypted with another key' in capsys.readouterr().err
