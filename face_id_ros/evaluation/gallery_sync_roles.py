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
The processes of ``face-id gallery-sync-bench``: robots that follow the server, desks that write.

Each runs as ``python -c`` with the gallery key in its environment and reports on stdout, one
line per event, with wall-clock times (one machine, one clock):

- a robot (:func:`run_robot`) follows the server through its own encrypted cache, prints
  ``snap REVISION TIME PATIENTS DIGEST`` for every snapshot it swaps in (DIGEST names the set
  of patient ids), ``ready`` once its first snapshot is in use, and identifies a probe face
  against its current snapshot every 20 ms, counting identifications made while the server
  was reachable and while it was not; closing its stdin stops it (``done ONLINE OFFLINE``);
- a desk (:func:`run_desk`) enrols its patients and erases some of them, retrying through a
  server restart without doubling a write, and prints ``commit REVISION TIME ACTION PATIENT``.
"""

import hashlib
import select
import sys
import time

from face_id_ros.core.config import GalleryConfig, MatcherConfig
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery_crypto import key_from_config
from face_id_ros.core.gallery_postgres import PostgresGallery
from face_id_ros.core.gallery_sync import GallerySync
from face_id_ros.core.matching import match
import numpy as np

MODEL = 'gallery-sync-bench/1/sha256:0'
EMBEDDING_SIZE = 128
TEMPLATES_PER_PATIENT = 2
IDENTIFY_PERIOD_S = 0.02
RETRY_PERIOD_S = 0.2


def digest(patient_ids):
    """Return a short digest of a set of patient ids (the same for the same set)."""
    text = '\n'.join(sorted(str(patient_id) for patient_id in patient_ids))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def patient_templates(patient_id, count=TEMPLATES_PER_PATIENT):
    """Return the deterministic templates of a bench patient (any process makes the same)."""
    seed = int(hashlib.sha256(patient_id.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=(count, EMBEDDING_SIZE))


def run_robot(url, cache, poll_s):
    """Follow the server from ``cache`` and identify until stdin closes; see the module doc."""
    config = GalleryConfig(path=cache, url=url, sync_poll_s=poll_s)
    current = {}

    def swapped(snapshot):
        current['snapshot'] = snapshot
        print(f'snap {snapshot.revision} {time.time():.6f} {len(snapshot.patient_ids)} '
              f'{digest(snapshot.patient_ids)}', flush=True)

    sync = GallerySync(config, MODEL, EMBEDDING_SIZE, swapped)
    sync.start()
    print('ready', flush=True)
    probe = patient_templates('P-probe', 1).astype(np.float32)
    counts = {True: 0, False: 0}
    matcher = MatcherConfig()
    while not select.select([sys.stdin], [], [], IDENTIFY_PERIOD_S)[0]:
        match(probe, current['snapshot'], matcher, 0.5)
        counts[sync.status.online] += 1
    sync.stop()
    print(f'done {counts[True]} {counts[False]}', flush=True)


def run_desk(url, desk, patients, seed, interval_s, erase_share=0.5):
    """
    Enrol ``patients`` patients as desk number ``desk`` and erase some; print each commit.

    After each enrolment, with probability ``erase_share``, an earlier patient of this desk
    is erased. A write cut off by a lost server is retried on a new connection once the
    server answers; the audit trail says whether the first try had committed, so a retry
    never doubles an enrolment.
    """
    config = GalleryConfig(url=url, operator=f'desk {desk}')
    key = key_from_config(config)
    random = np.random.default_rng([seed, desk])
    gallery = None
    enrolled = []
    for number in range(1, patients + 1):
        patient_id = f'P-{desk}{number:05d}'
        gallery = _write(url, key, gallery, desk, 'enrol', patient_id)
        enrolled.append(patient_id)
        if random.random() < erase_share:
            victim = enrolled.pop(int(random.integers(len(enrolled))))
            gallery = _write(url, key, gallery, desk, 'erase', victim)
        time.sleep(interval_s)
    _close(gallery)
    print('done', flush=True)


def _write(url, key, gallery, desk, action, patient_id):
    """Make one write, retrying through a lost server; print it; return the connection."""
    retried = False
    while True:
        try:
            if gallery is None:
                gallery = PostgresGallery.open(url, MODEL, EMBEDDING_SIZE, key,
                                               operator=f'desk {desk}')
            revision = _committed(gallery, action, patient_id) if retried else None
            if revision is None and action == 'enrol':
                templates = patient_templates(patient_id)
                revision = gallery.add_templates(patient_id, templates, [''] * len(templates),
                                                 [1.0] * len(templates))
            elif revision is None:
                revision = gallery.remove_patient(patient_id)
            print(f'commit {revision} {time.time():.6f} {action} {patient_id}', flush=True)
            return gallery
        except GalleryError:
            _close(gallery)
            gallery, retried = None, True
            time.sleep(RETRY_PERIOD_S)


def _committed(gallery, action, patient_id):
    """Return the revision of ``action`` on ``patient_id`` if the audit trail has it."""
    for entry in reversed(gallery.audit(patient_id)):
        if entry.action == action:
            return entry.revision
    return None


def _close(gallery):
    if gallery is not None:
        try:
            gallery.close()
        except Exception:  # a connection the server already dropped
            pass
