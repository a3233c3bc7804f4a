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
The gallery under real SIGKILLs and real concurrent writer processes.

The suite kills the writer 30 times; ``face-id gallery-crash --kills 500`` runs the long
version and prints the same counts.
"""

from contextlib import closing
import sqlite3
import time

from face_id_ros.core.gallery import Gallery
from face_id_ros.evaluation.gallery_crash import (apply_to_gallery, concurrent_enrolment,
                                                  crash_test, EMBEDDING_SIZE,
                                                  ExpectedContents, MODEL, operations,
                                                  python_process, snapshot_matches)


def test_the_expected_contents_tell_one_revision_from_the_next(tmp_path):
    expected = ExpectedContents(seed=5)
    kinds = set()
    with Gallery.open(tmp_path / 'g.db', MODEL, EMBEDDING_SIZE) as gallery:
        for number, operation in zip(range(1, 41), operations(5)):
            assert apply_to_gallery(gallery, operation) == number
            kinds.add(operation.kind)
        snapshot = gallery.snapshot()
    assert kinds == {'enrol', 'add', 'replace', 'remove'}
    assert snapshot_matches(snapshot, expected.at(40))
    assert not snapshot_matches(snapshot, expected.at(39))
    assert not snapshot_matches(snapshot, expected.at(41))


def test_killed_writers_leave_exactly_the_last_committed_revision(tmp_path):
    summary = crash_test(tmp_path / 'crash.db', kills=30, seed=3, max_delay_s=0.2,
                         progress=False)
    assert summary['problems'] == [] and summary['writer_errors'] == []
    assert (summary['kills'], summary['corrupt'], summary['lost_or_phantom_revisions'],
            summary['contents_differ']) == (30, 0, 0, 0)
    # The kills fell inside writes, and the reader kept reading all along.
    assert summary['inside_write_rolled_back'] + summary['inside_write_landed'] > 0
    assert summary['final_revision'] > 30
    assert summary['reader_snapshots'] > 30 and summary['reader_mismatches'] == 0


def test_two_processes_enrolling_at_once_both_land(tmp_path):
    summary = concurrent_enrolment(tmp_path / 'concurrent.db', rounds=2)
    assert summary['problems'] == []
    assert (summary['rounds'], summary['both_landed'], summary['one_refused']) == (2, 2, 0)


def test_a_writer_that_cannot_get_the_lock_is_refused_cleanly(tmp_path):
    path = tmp_path / 'busy.db'
    with Gallery.open(path, MODEL, EMBEDDING_SIZE) as gallery:
        apply_to_gallery(gallery, next(operations(1)))
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute('BEGIN IMMEDIATE')  # another writer holding the lock past the timeout
        writer = python_process(
            'from face_id_ros.evaluation.gallery_crash import enrol_once; '
            f'enrol_once({str(path)!r}, "P-0100", 0, {time.time()})', None)
        output, errors = writer.communicate(timeout=60)
        holder.execute('ROLLBACK')
    assert writer.returncode == 0, errors
    assert output.startswith('refused gallery') and 'is busy' in output
    assert 'nothing was written' in output
    with Gallery.open(path, MODEL, EMBEDDING_SIZE, create=False) as gallery:
        assert gallery.revision == 1 and 'P-0100' not in gallery.patient_ids()
    with closing(sqlite3.connect(path)) as database:
        assert database.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
