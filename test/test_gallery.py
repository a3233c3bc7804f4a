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

"""The SQLite gallery: model stamp, pseudonymous ids, atomic writes and snapshots."""

from contextlib import closing
import sqlite3

import cv2
from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery, GallerySnapshot
import numpy as np
import pytest

SIZE = 16
MODEL = 'pruned-mnv2/1.0/sha256:1f2e'


def patient_embeddings(seed, count, size=SIZE, noise=0.2):
    """Return ``count`` unnormalised embeddings scattered around one random patient centre."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=size)
    centre /= np.linalg.norm(centre)
    return centre + noise * rng.normal(size=(count, size)) / np.sqrt(size)


def raw_sql(path, statement):
    """Run one statement on a separate plain SQLite connection; return its first value."""
    with closing(sqlite3.connect(path)) as raw, raw:
        row = raw.execute(statement).fetchone()
    return row[0] if row else None


def enrol(gallery, patient_id, seed, count=3):
    """Add ``count`` templates for one patient; return the new revision."""
    return gallery.add_templates(patient_id, patient_embeddings(seed, count),
                                 [f'photo-{index}.jpg' for index in range(count)],
                                 [0.9] * count)


@pytest.fixture
def path(tmp_path):
    return tmp_path / 'ward' / 'gallery.db'


@pytest.fixture
def gallery(path):
    with Gallery.open(path, MODEL, SIZE) as opened:
        yield opened


def test_new_gallery_is_stamped_and_empty(gallery, path):
    info = gallery.info()
    assert info == {'path': str(path), 'model_fingerprint': MODEL, 'embedding_size': SIZE,
                    'revision': 0, 'patients': 0, 'templates': 0, 'masked_templates': 0,
                    'schema_version': 2, 'encryption': 'none'}
    snapshot = gallery.snapshot()
    assert snapshot.templates.shape == (0, SIZE)
    assert len(snapshot.patient_ids) == 0 and len(snapshot.owners) == 0


def test_templates_persist_normalised_and_grouped_by_patient(gallery, path):
    assert enrol(gallery, 'P-0002', seed=2, count=2) == 1
    assert enrol(gallery, 'P-0001', seed=1, count=3) == 2
    gallery.close()
    with Gallery.open(path, MODEL, SIZE, create=False) as reopened:
        snapshot = reopened.snapshot()
        assert reopened.patient_ids() == ['P-0001', 'P-0002']
        assert reopened.info()['templates'] == 5
    assert snapshot.revision == 2
    assert list(snapshot.patient_ids) == ['P-0001', 'P-0002']
    assert snapshot.templates.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(snapshot.templates, axis=1), 1.0, atol=1e-6)
    assert list(snapshot.owners) == [0, 0, 0, 1, 1]
    expected = patient_embeddings(1, 3)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(snapshot.templates[:3], expected, atol=1e-6)


def test_gallery_runs_in_wal_mode(gallery, path):
    assert raw_sql(path, 'PRAGMA journal_mode') == 'wal'


def test_snapshot_is_immutable_and_survives_later_writes(gallery):
    enrol(gallery, 'P-0001', seed=1)
    snapshot = gallery.snapshot()
    with pytest.raises(ValueError):
        snapshot.templates[0, 0] = 0.0
    gallery.remove_patient('P-0001')
    assert snapshot.templates.shape == (3, SIZE)
    assert gallery.snapshot().templates.shape == (0, SIZE)


def test_every_write_bumps_the_revision(gallery):
    assert enrol(gallery, 'P-0001', seed=1) == 1
    assert enrol(gallery, 'P-0001', seed=11) == 2
    assert enrol(gallery, 'P-0002', seed=2) == 3
    assert gallery.remove_patient('P-0001') == 4
    assert gallery.revision == 4
    assert gallery.patient_ids() == ['P-0002']
    assert gallery.info()['templates'] == 3


def test_replace_swaps_a_patients_templates_in_one_write(gallery):
    enrol(gallery, 'P-0001', seed=1, count=3)
    revision = gallery.add_templates('P-0001', patient_embeddings(5, 1), ['new.jpg'], [0.8],
                                     replace=True)
    assert revision == 2
    [record] = gallery.list_patients()
    assert record.patient_id == 'P-0001' and record.template_count == 1


def test_list_patients_reports_counts_and_times(gallery):
    enrol(gallery, 'P-0001', seed=1, count=2)
    enrol(gallery, 'P-0001', seed=3, count=1)
    enrol(gallery, 'P-0002', seed=2, count=1)
    first, second = gallery.list_patients()
    assert (first.patient_id, first.template_count) == ('P-0001', 3)
    assert (second.patient_id, second.template_count) == ('P-0002', 1)
    assert len(first.enrolled) == 3 and list(first.enrolled) == sorted(first.enrolled)
    assert first.created <= first.enrolled[0]


@pytest.mark.parametrize('name', ['Jane Doe', 'P-12', 'p-0001', 'P-0001 ', 'P-0001\n', 42])
def test_names_and_malformed_ids_are_refused(gallery, name):
    with pytest.raises(GalleryError, match='pseudonymous'):
        enrol(gallery, name, seed=1)
    assert gallery.revision == 0 and gallery.patient_ids() == []


def test_id_pattern_comes_from_the_config(path):
    config = GalleryConfig(path=str(path), id_pattern=r'^W3-[0-9]{3}$', encryption='off')
    with Gallery.from_config(config, MODEL, SIZE) as gallery:
        enrol(gallery, 'W3-017', seed=1)
        with pytest.raises(GalleryError, match='pseudonymous'):
            enrol(gallery, 'P-0001', seed=1)
        assert gallery.patient_ids() == ['W3-017']


@pytest.mark.parametrize('embeddings, reason', [
    (np.full((2, SIZE), np.nan), 'NaN'),
    (np.ones((2, SIZE + 1)), 'shape'),
    (np.zeros((2, SIZE)), 'zeros'),
])
def test_bad_embeddings_are_refused(gallery, embeddings, reason):
    with pytest.raises(GalleryError, match=reason):
        gallery.add_templates('P-0001', embeddings, ['a', 'b'], [1.0, 1.0])
    assert gallery.revision == 0


def test_metadata_must_line_up_with_embeddings(gallery):
    with pytest.raises(GalleryError, match='as many sources'):
        gallery.add_templates('P-0001', patient_embeddings(1, 3), ['a'], [1.0, 1.0, 1.0])
    assert gallery.revision == 0


def test_another_models_gallery_is_refused(gallery, path):
    enrol(gallery, 'P-0001', seed=1)
    gallery.close()
    with pytest.raises(GalleryError) as refused:
        Gallery.open(path, 'mobilefacenet/2.0/sha256:9a9a', SIZE)
    message = str(refused.value)
    assert MODEL in message and 'mobilefacenet/2.0/sha256:9a9a' in message
    assert 're-enrol with this model or use its gallery' in message
    with pytest.raises(GalleryError, match='embedding size 16'):
        Gallery.open(path, MODEL, 128)
    with Gallery.open(path, MODEL, SIZE) as same_model:
        assert same_model.revision == 1 and same_model.info()['model_fingerprint'] == MODEL


def test_missing_gallery_is_not_created_when_create_is_false(path):
    with pytest.raises(GalleryError, match='no gallery at'):
        Gallery.open(path, MODEL, SIZE, create=False)
    assert not path.exists()


def test_corrupt_file_is_refused_with_its_path(tmp_path):
    corrupt = tmp_path / 'gallery.db'
    corrupt.write_bytes(b'this is a text file, not a database\n' * 200)
    with pytest.raises(GalleryError, match=str(corrupt)):
        Gallery.open(corrupt, MODEL, SIZE)


def test_foreign_sqlite_database_is_refused(tmp_path):
    other = tmp_path / 'other.db'
    raw_sql(other, 'CREATE TABLE orders (id INTEGER)')
    with pytest.raises(GalleryError, match='not a face_id_ros gallery'):
        Gallery.open(other, MODEL, SIZE)


def test_a_write_is_invisible_to_other_connections_until_it_commits(gallery, path):
    enrol(gallery, 'P-0001', seed=1)
    with Gallery.open(path, MODEL, SIZE, create=False) as reader:
        with gallery.batch():
            enrol(gallery, 'P-0002', seed=2)
            gallery.remove_patient('P-0001')
            assert reader.revision == 1
            assert reader.patient_ids() == ['P-0001']
            assert list(reader.snapshot().patient_ids) == ['P-0001']
        assert reader.revision == 2
        assert reader.patient_ids() == ['P-0002']
        assert list(reader.snapshot().patient_ids) == ['P-0002']


def test_opening_does_not_wait_for_a_writer(gallery, path):
    with gallery.batch():
        enrol(gallery, 'P-0001', seed=1)
        with Gallery.open(path, MODEL, SIZE) as reader:
            assert reader.revision == 0 and reader.patient_ids() == []


def test_exception_inside_a_write_leaves_the_old_revision(gallery, path):
    enrol(gallery, 'P-0001', seed=1)
    with pytest.raises(RuntimeError, match='power cut'):
        with gallery.batch():
            enrol(gallery, 'P-0002', seed=2)
            raise RuntimeError('power cut')
    assert gallery.revision == 1 and gallery.patient_ids() == ['P-0001']
    assert raw_sql(path, 'SELECT COUNT(*) FROM templates') == 3


def test_database_failure_halfway_through_a_write_changes_nothing(gallery, path):
    enrol(gallery, 'P-0001', seed=1)
    raw_sql(path, 'CREATE TRIGGER fail_late BEFORE INSERT ON templates '
                  "WHEN NEW.source = 'third.jpg' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(GalleryError, match='disk full'):
        gallery.add_templates('P-0002', patient_embeddings(2, 3),
                              ['first.jpg', 'second.jpg', 'third.jpg'], [0.9, 0.9, 0.9])
    with Gallery.open(path, MODEL, SIZE, create=False) as reader:
        assert reader.revision == 1
        assert reader.info()['templates'] == 3
        assert reader.patient_ids() == ['P-0001']


def test_failed_inner_write_rolls_back_only_itself(gallery):
    with gallery.batch():
        enrol(gallery, 'P-0001', seed=1)
        with pytest.raises(GalleryError, match='no patient'):
            gallery.remove_patient('P-0009')
        enrol(gallery, 'P-0002', seed=2)
    assert gallery.revision == 1
    assert gallery.patient_ids() == ['P-0001', 'P-0002']


@pytest.mark.parametrize('store_images, stored', [(False, 0), (True, 2)])
def test_face_images_are_kept_only_when_asked(path, store_images, stored):
    with Gallery.open(path, MODEL, SIZE, store_images=store_images) as gallery:
        gallery.add_templates('P-0001', patient_embeddings(1, 2), ['a', 'b'], [0.9, 0.9],
                              images=[b'\x89PNG-a', b'\x89PNG-b'])
    assert raw_sql(path, 'SELECT COUNT(image) FROM templates') == stored


def test_face_crops_are_stored_as_lossless_png(path):
    crop = np.random.default_rng(3).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    with Gallery.open(path, MODEL, SIZE, store_images=True) as gallery:
        gallery.add_templates('P-0001', patient_embeddings(1, 1), ['a.jpg'], [0.9],
                              images=[crop])
        with pytest.raises(GalleryError, match='BGR crops or encoded bytes'):
            gallery.add_templates('P-0002', patient_embeddings(2, 1), ['b.jpg'], [0.9],
                                  images=[np.zeros(5)])
    blob = raw_sql(path, 'SELECT image FROM templates')
    decoded = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, crop)


def test_mask_flags_are_stored_per_template_and_counted(gallery, path):
    gallery.add_templates('P-0001', patient_embeddings(1, 3), ['a', 'b', 'c'], [0.9] * 3,
                          masked=[False, True, True])
    enrol(gallery, 'P-0002', seed=2, count=2)
    gallery.close()
    with Gallery.open(path, MODEL, SIZE, create=False) as reopened:
        snapshot = reopened.snapshot()
        first, second = reopened.list_patients()
        assert reopened.info()['masked_templates'] == 2
    assert list(snapshot.masked) == [False, True, True, False, False]
    assert snapshot.masked.dtype == bool and not snapshot.masked.flags.writeable
    assert (first.masked_count, second.masked_count) == (2, 0)


@pytest.mark.parametrize('masked, reason', [([True], 'as many sources'),
                                            ([1, 0], 'True or False')])
def test_bad_mask_flags_are_refused(gallery, masked, reason):
    with pytest.raises(GalleryError, match=reason):
        gallery.add_templates('P-0001', patient_embeddings(1, 2), ['a', 'b'], [0.9, 0.9],
                              masked=masked)
    assert gallery.revision == 0


def test_a_snapshot_without_mask_flags_has_none_masked():
    snapshot = GallerySnapshot(3, np.array(['P-0001']), np.eye(2, dtype=np.float32),
                               np.zeros(2, np.int64))
    assert list(snapshot.masked) == [False, False]
    with pytest.raises(GalleryError, match='one boolean per template'):
        GallerySnapshot(3, np.array(['P-0001']), np.eye(2, dtype=np.float32),
                        np.zeros(2, np.int64), np.zeros(3, bool))
