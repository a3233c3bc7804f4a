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
Robots following the hospital's server gallery through their encrypted local caches.

A real throw-away PostgreSQL server (conftest.py ``postgres_cluster``); the tests skip,
saying why, without one. Waits for a notification poll with a deadline and never assert on
durations: `face-id gallery-sync-bench` measures the times.
"""

from contextlib import closing
import json
import sqlite3
import time

from conftest import LFW_DIR
import cv2
from face_id_ros.core.config import GalleryConfig, PipelineConfig
from face_id_ros.core.enrolment import photo_source
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key
from face_id_ros.core.gallery_postgres import PostgresGallery
from face_id_ros.core.gallery_server_schema import migrate_server
from face_id_ros.core.gallery_sync import GallerySync
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.evaluation.samples import compose_frame
import numpy as np
import pytest

SIZE = 16
MODEL = 'pruned-mnv2/1.0/sha256:1f2e'
DEADLINE_S = 30.0


def unit_rows(seed, count):
    rows = np.random.default_rng(seed).normal(size=(count, SIZE))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def key_text(monkeypatch):
    text = new_key_text()
    monkeypatch.setenv(KEY_ENV, text)
    return text


@pytest.fixture
def desk(server_url, key_text):
    migrate_server(server_url, parse_key(key_text, 'test'), MODEL, SIZE)
    with PostgresGallery.open(server_url, MODEL, SIZE, parse_key(key_text, 'test'),
                              operator='desk') as gallery:
        yield gallery


def robot_config(server_url, tmp_path, name='robot', poll_s=60.0):
    return GalleryConfig(path=str(tmp_path / f'{name}.db'), url=server_url, sync_poll_s=poll_s)


class Robot:
    """A GallerySync and the snapshots it handed over."""

    def __init__(self, config):
        self.snapshots = []
        self.sync = GallerySync(config, MODEL, SIZE, self.snapshots.append)

    def wait_for_revision(self, revision):
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.snapshots and self.snapshots[-1].revision >= revision:
                return self.snapshots[-1]
            time.sleep(0.02)
        raise AssertionError(f'revision {revision} did not arrive; status '
                             f'{self.sync.status}')


def cache_bytes(path):
    data = b''
    for suffix in ('', '-wal', '-shm'):
        try:
            with open(f'{path}{suffix}', 'rb') as stream:
                data += stream.read()
        except FileNotFoundError:
            pass
    return data


def test_a_robot_follows_enrolments_and_erasures_by_notification(desk, server_url, tmp_path):
    desk.add_templates('P-0001', unit_rows(1, 2), ['a', 'b'], [1, 1], masked=[False, True])
    robot = Robot(robot_config(server_url, tmp_path))  # polls once a minute: notified only
    try:
        status = robot.sync.start()
        assert status.online and status.revision == 1 and status.patients == 1
        assert list(robot.snapshots[-1].patient_ids) == ['P-0001']
        assert list(robot.snapshots[-1].masked) == [False, True]
        desk.add_templates('P-0002', unit_rows(2, 3), ['c'] * 3, [1] * 3)
        snapshot = robot.wait_for_revision(2)
        assert list(snapshot.patient_ids) == ['P-0001', 'P-0002']
        assert np.allclose(snapshot.templates[2:], unit_rows(2, 3), atol=1e-6)
        with closing(sqlite3.connect(tmp_path / 'robot.db')) as db:
            sealed = [row[0] for row in db.execute(
                "SELECT embedding FROM templates WHERE patient_id = 'P-0002'")]
        assert len(sealed) == 3 and all(blob in cache_bytes(tmp_path / 'robot.db')
                                        for blob in sealed)
        desk.remove_patient('P-0002')
        snapshot = robot.wait_for_revision(3)
        assert list(snapshot.patient_ids) == ['P-0001']
        # The erased patient's sealed templates are wiped from the cache and its log.
        everything = cache_bytes(tmp_path / 'robot.db')
        assert not any(blob[:24] in everything for blob in sealed)
        assert robot.sync.status.revision == 3 and robot.sync.status.online
    finally:
        robot.sync.stop()
    with closing(sqlite3.connect(tmp_path / 'robot.db')) as db:
        assert db.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'


def assert_same_snapshot(kept, read):
    assert kept.revision == read.revision
    assert list(kept.patient_ids) == list(read.patient_ids)
    assert list(kept.owners) == list(read.owners) and list(kept.masked) == list(read.masked)
    assert np.allclose(kept.templates, read.templates, atol=1e-6)


def test_the_snapshot_a_robot_keeps_is_what_its_cache_holds_after_every_kind_of_write(
        desk, server_url, tmp_path):
    robot = Robot(robot_config(server_url, tmp_path))
    random = np.random.default_rng(5)
    try:
        robot.sync.start()
        enrolled = []
        for step in range(30):
            kind = random.choice(['enrol', 'add', 'replace', 'erase'] if enrolled
                                 else ['enrol'])
            if kind == 'enrol':
                patient_id = f'P-{1000 - step:04d}'  # new ids sort before the old ones
                enrolled.append(patient_id)
            else:
                patient_id = enrolled[int(random.integers(len(enrolled)))]
            if kind == 'erase':
                enrolled.remove(patient_id)
                revision = desk.remove_patient(patient_id)
            else:
                count = int(random.integers(1, 4))
                revision = desk.add_templates(
                    patient_id, unit_rows(100 + step, count), [''] * count, [1.0] * count,
                    masked=[bool(flag) for flag in random.integers(0, 2, count)],
                    replace=kind == 'replace')
            kept = robot.wait_for_revision(revision)
            assert_same_snapshot(kept, robot.sync.cache.snapshot())
            assert_same_snapshot(kept, desk.snapshot())
    finally:
        robot.sync.stop()


def test_a_robot_off_while_a_patient_is_erased_forgets_them_before_identifying(
        desk, server_url, tmp_path):
    desk.add_templates('P-0001', unit_rows(1, 1), ['a'], [1])
    desk.add_templates('P-0002', unit_rows(2, 1), ['b'], [1])
    config = robot_config(server_url, tmp_path)
    robot = Robot(config)
    robot.sync.start(follow=False)
    robot.sync.stop()
    desk.remove_patient('P-0001')
    desk.add_templates('P-0003', unit_rows(3, 1), ['c'], [1])
    again = Robot(config)
    try:
        again.sync.start()
        # The first snapshot it hands over, before any frame, no longer holds P-0001.
        assert [list(s.patient_ids) for s in again.snapshots] == [['P-0002', 'P-0003']]
    finally:
        again.sync.stop()


def test_a_robots_cache_holds_the_servers_photo_digests_and_no_photo_name(
        desk, server_url, tmp_path, key_text):
    key = parse_key(key_text, 'test')
    first, second, third = (photo_source(data, key) for data in (b'one', b'two', b'three'))
    desk.add_templates('P-0001', unit_rows(1, 2), [first, second], [1, 1])
    desk.add_templates('P-0002', unit_rows(2, 1), ['/photos/Jane_Doe.jpg'], [1])
    robot = Robot(robot_config(server_url, tmp_path, poll_s=0.2))
    try:
        robot.sync.start()
        cache = robot.sync.cache
        assert cache.template_sources() == {'P-0001': {first, second}, 'P-0002': {'server'}}
        assert desk.template_sources() == {'P-0001': {first, second}}
        revision = desk.add_templates('P-0001', unit_rows(3, 1), [third], [1], replace=True)
        robot.wait_for_revision(revision)
        assert cache.template_sources() == {'P-0001': {third}, 'P-0002': {'server'}}
    finally:
        robot.sync.stop()
    assert b'Jane_Doe' not in cache_bytes(tmp_path / 'robot.db')


def test_an_offline_robot_identifies_from_its_cache_says_so_and_resyncs(
        desk, server_url, postgres_cluster, tmp_path):
    desk.add_templates('P-0001', unit_rows(1, 1), ['a'], [1])
    robot = Robot(robot_config(server_url, tmp_path, poll_s=0.2))
    robot.sync.start()
    try:
        postgres_cluster.stop()
        try:
            deadline = time.monotonic() + DEADLINE_S
            while robot.sync.status.online and time.monotonic() < deadline:
                time.sleep(0.05)
            status = robot.sync.status
            assert not status.online and status.revision == 1
            assert status.describe().startswith('gallery offline since ')
            assert ', revision 1 from the local cache' in status.describe()
            assert list(robot.snapshots[-1].patient_ids) == ['P-0001']  # still identifying
            # A robot starting while the server is down starts from its cache.
            second = Robot(robot_config(server_url, tmp_path, name='robot'))
            assert not second.sync.start(follow=False).online
            assert list(second.snapshots[-1].patient_ids) == ['P-0001']
            second.sync.stop()
            # One that never synced has nothing to identify from: it refuses to start.
            with pytest.raises(GalleryError, match='unreachable and this robot has no cache'):
                Robot(robot_config(server_url, tmp_path, name='new')).sync.start()
        finally:
            postgres_cluster.start()
        with PostgresGallery.open(server_url, MODEL, SIZE, desk._key) as desk_again:
            desk_again.remove_patient('P-0001')
        snapshot = robot.wait_for_revision(2)
        assert list(snapshot.patient_ids) == [] and robot.sync.status.online
    finally:
        robot.sync.stop()


def test_a_cache_of_another_server_gallery_is_rebuilt(desk, server_url, tmp_path,
                                                      postgres_cluster, key_text):
    desk.add_templates('P-0001', unit_rows(1, 1), ['a'], [1])
    robot = Robot(robot_config(server_url, tmp_path))
    robot.sync.start(follow=False)
    robot.sync.stop()
    other_url = postgres_cluster.new_database('another_hospital_gallery')
    migrate_server(other_url, parse_key(key_text, 'test'), MODEL, SIZE)
    with PostgresGallery.open(other_url, MODEL, SIZE, parse_key(key_text, 'test')) as other:
        other.add_templates('P-0009', unit_rows(9, 1), ['z'], [1])
    moved = Robot(robot_config(other_url, tmp_path))
    try:
        moved.sync.start(follow=False)
        assert [list(s.patient_ids) for s in moved.snapshots] == [['P-0009']]
    finally:
        moved.sync.stop()


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_real_faces_an_erased_patient_is_unknown_on_the_robot_never_another(
        server_url, tmp_path, key_text, portrait, capsys):
    """The shipped model: the portrait enrolled, confirmed, erased; then never named."""
    from face_id_ros.cli.parser import main
    photos = tmp_path / 'photos'
    for patient_id, image in (('P-0001', portrait), ('P-0002', cv2.imread(
            str(LFW_DIR / 'images' / 'Al_Gore' / 'Al_Gore_0002.jpg')))):
        (photos / patient_id).mkdir(parents=True)
        cv2.imwrite(str(photos / patient_id / 'admission.jpg'), image)
    assert main(['gallery', 'migrate', '--gallery-url', server_url]) == 0
    assert main(['enroll', str(photos), '--gallery-url', server_url]) == 0
    assert 'revision 2, 2 patient(s)' in capsys.readouterr().out
    config = PipelineConfig().replace(gallery={'url': server_url,
                                               'path': str(tmp_path / 'robot.db'),
                                               'sync_poll_s': 0.2})
    pipeline = Pipeline(config)
    worker = FrameWorker(pipeline, {})
    try:
        loaded = worker.reload_gallery()
        assert (loaded.revision, loaded.patients) == (2, 2)

        def statuses(start):
            pipeline.tracker.reset()
            seen = []
            for index in range(6):
                frame = compose_frame(portrait, (640, 480), [(250 + 20 * index, 240)], 280,
                                      brightness=0.8 + 0.1 * (index % 3))
                result = pipeline.process(frame, start + index / 15.0)
                seen.append((result.faces[0].status, result.faces[0].patient_id))
            return seen

        assert statuses(0.0)[-1] == ('confirmed', 'P-0001')
        key = parse_key(key_text, 'test')
        with PostgresGallery.open(server_url, pipeline.embedder.fingerprint,
                                  pipeline.embedder.embedding_size, key) as desk:
            desk.remove_patient('P-0001')
        deadline = time.monotonic() + DEADLINE_S
        while pipeline.snapshot.revision < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(pipeline.snapshot.patient_ids) == ['P-0002']
        after = statuses(10.0)
        assert all(patient is None for _, patient in after), after
        assert after[-1][0] == 'unknown'
    finally:
        worker.close()


def test_the_sync_bench_checks_a_small_fleet_through_a_restart_and_a_kill(tmp_path, capsys):
    """A small run of `face-id gallery-sync-bench`: the checks run and find nothing wrong."""
    from face_id_ros.cli.parser import main
    from face_id_ros.evaluation.postgres_cluster import missing_reason
    if missing_reason():
        pytest.skip(f'no PostgreSQL server to test against: {missing_reason()}')
    assert main(['gallery-sync-bench', '--robots', '2', '--patients', '12',
                 '--fault-patients', '10', '--robot-kills', '1', '--load-patients', '30',
                 '--load-templates', '2', '--out', str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fleet, load = lines[-2], lines[-1]
    assert fleet.startswith('gallery-sync-bench: 2 robots, 2 desks a phase, 12+10 patients')
    assert '2/2 caches at the final revision' in fleet
    assert 'lost 0, duplicated 0, resurrected 0, snapshots not a server revision 0/' in fleet
    assert 'corrupt caches 0' in fleet and '1 robot kills' in fleet
    assert load.startswith('gallery-sync-bench load: 30 patients x 2 templates: first sync ')
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['identifications_offline'] > 0  # identified from caches while down
    assert summary['latency_ms']['count'] == 2 * summary['commits_steady']
