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
A robot's follower of the hospital's server gallery, identifying from a local cache.

The cache is an ordinary encrypted SQLite gallery (``gallery.path``, the same key) holding
the last server revision this robot synced. :meth:`GallerySync.start` syncs once before the
first snapshot is handed over, so a robot that was off or offline while a patient was erased
forgets them before it identifies anyone; when the server cannot be reached it starts from
the cache and says so. A thread then waits for the server's notifications (``LISTEN``), and
checks every ``gallery.sync_poll_s`` seconds when none came (a lost notification, a cut
connection). Each sync reads, in one consistent server transaction, the patients the audit
trail shows written since the cache's revision, with their templates now (none: erased),
writes them to the cache in one transaction (removed bytes wiped: ``secure_delete``,
``VACUUM``), and hands over the snapshot of what the cache now holds (the previous snapshot
with those patients' rows replaced; a first sync reads the cache) in one assignment, so a
frame uses the old snapshot or the new, never a mix. A cache that copies another server
gallery (or a newer revision than the server's, after a restore) is rebuilt from scratch.
"""

from dataclasses import dataclass
import os
import threading
import time

from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery, GallerySnapshot, normalised_rows
from face_id_ros.core.gallery_crypto import key_from_config
from face_id_ros.core.gallery_postgres import display_url, PostgresGallery
import numpy as np


@dataclass(frozen=True)
class SyncStatus:
    """Where a robot's gallery stands: its revision and whether it follows the server."""

    server: str
    online: bool
    revision: int
    patients: int
    synced_at: float
    offline_since: float
    last_error: str

    def age_s(self, now):
        """Return seconds since the revision was last known current (None: never synced)."""
        return None if self.synced_at is None else max(0.0, now - self.synced_at)

    def describe(self):
        """Return the one-line state for diagnostics and logs."""
        if self.online:
            return f'gallery synced with {self.server}, revision {self.revision}'
        since = ('start-up' if self.offline_since is None
                 else time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.offline_since)))
        return (f'gallery offline since {since}, revision {self.revision} from the local '
                f'cache: {self.last_error}')


class GallerySync:
    """Keep a robot's cache and its pipeline's snapshot in step with the server gallery."""

    def __init__(self, config, model_fingerprint, embedding_size, on_snapshot):
        """
        Open (or create) the cache for ``config`` (a GalleryConfig with ``url``).

        ``on_snapshot(snapshot)`` is called with every new revision's snapshot, from
        :meth:`start` and then from the sync thread.
        """
        self.config = config
        self.model_fingerprint = model_fingerprint
        self.embedding_size = embedding_size
        self.on_snapshot = on_snapshot
        self.server_name = display_url(config.url)
        key = key_from_config(config)
        if key is None:
            raise GalleryError('gallery.url: a server gallery and its cache are always '
                               'encrypted: set gallery.encryption: required with its key')
        self.cache = Gallery.open(config.path, model_fingerprint, embedding_size, create=True,
                                  id_pattern=config.id_pattern, key=key)
        self._server = None
        self._server_id = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._thread = None
        self._snapshot = None
        _, revision = self.cache.mirrored()
        self._status = SyncStatus(self.server_name, False, revision, 0, None, None,
                                  'not synced yet')

    @property
    def status(self):
        """Return the current :class:`SyncStatus`."""
        return self._status

    def start(self, follow=True):
        """
        Sync once (or fall back to the cache), hand the snapshot over; return the status.

        Raises GalleryError when the server is unreachable and there is no cache to fall
        back on. ``follow`` starts the thread that keeps syncing.
        """
        try:
            self.sync_once()
        except GalleryError as error:
            self._went_offline(error)
            if self.cache.mirrored()[0] is None:
                raise GalleryError(f'gallery server {self.server_name} is unreachable and '
                                   f'this robot has no cache of it yet ({error})')
            snapshot = self.cache.snapshot()
            self._set_status(revision=snapshot.revision, patients=len(snapshot.patient_ids))
            self._hand_over(snapshot)
        if follow:
            self._thread = threading.Thread(target=self._follow, name='gallery_sync',
                                            daemon=True)
            self._thread.start()
        return self._status

    def sync_once(self):
        """
        Bring the cache to the server's revision; return the new snapshot or None.

        Raises GalleryError when the server cannot be reached or read (the cache stays).
        """
        with self._lock:
            server = self._connect()
            mirror_of, revision = self.cache.mirrored()
            server_id = self._server_id
            since = revision if mirror_of == server_id else 0
            now, changes = server.changes_since(since)
            if now < since:  # the server went back (a restore): start again
                since = 0
                now, changes = server.changes_since(0)
            if not since:
                for patient_id in self.cache.patient_ids():
                    changes.setdefault(patient_id, [])
            if changes or now != revision or mirror_of != server_id:
                self.cache.mirror(now, changes, server_id)
            snapshot, previous = None, self._snapshot
            # Checked apart from the write: a mirror that committed and then failed (its
            # wipe) leaves the cache ahead of the snapshot in use, and the next sync catches up.
            if previous is None or previous.revision != now:
                if since and previous is not None and previous.revision == revision:
                    # What the cache now holds, without reading back every template.
                    snapshot = updated_snapshot(previous, now, changes)
                else:
                    snapshot = self.cache.snapshot()
                self._hand_over(snapshot)
            patients = (len(snapshot.patient_ids) if snapshot is not None
                        else self._status.patients or len(self.cache.patient_ids()))
            self._set_status(online=True, revision=now, patients=patients,
                             synced_at=time.time(), offline_since=None, last_error='')
            return snapshot

    def stop(self):
        """Stop the sync thread and close the connections and the cache."""
        self._stop.set()
        os.write(self._wake_write, b'x')
        if self._thread is not None:
            self._thread.join(10.0)
        with self._lock:
            self._disconnect()
            self.cache.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # Internals.

    def _hand_over(self, snapshot):
        self._snapshot = snapshot
        self.on_snapshot(snapshot)

    def _follow(self):
        """Sync on every notification and every poll period; retry a lost server."""
        while not self._stop.is_set():
            try:
                if self._server is None:
                    self.sync_once()  # first thing after a reconnection: erasures included
                self._server.wait_for_change(self.config.sync_poll_s, self._wake_read)
                if not self._stop.is_set():
                    self.sync_once()
            except Exception as error:  # the thread must outlive any failure: retry
                self._went_offline(error if isinstance(error, GalleryError)
                                   else f'{type(error).__name__}: {error}')
                self._stop.wait(self.config.sync_poll_s)

    def _connect(self):
        if self._server is None:
            server = PostgresGallery.from_config(self.config, self.model_fingerprint,
                                                 self.embedding_size)
            try:
                server.listen()
                self._server_id = server.gallery_id  # fixed while connected
            except BaseException:
                server.close()
                raise
            self._server = server
        return self._server

    def _disconnect(self):
        if self._server is not None:
            try:
                self._server.close()
            except Exception:  # a connection the server already dropped
                pass
            self._server = None

    def _went_offline(self, error):
        with self._lock:
            self._disconnect()
            status = self._status
            self._set_status(online=False, last_error=str(error),
                             offline_since=(status.offline_since if not status.online
                                            and status.offline_since else time.time()))

    def _set_status(self, **changes):
        values = vars(self._status).copy()
        values.update(changes)
        self._status = SyncStatus(**values)


def updated_snapshot(previous, revision, changes):
    """
    Return ``previous`` with the changed patients' templates replaced; an empty list erases.

    ``changes`` maps patient ids to ServerTemplates, as :meth:`Gallery.mirror` takes them;
    the result holds what the cache holds after that mirror (rows grouped by patient in id
    order, each patient's templates in server order), at a cost that grows with the changes
    and one pass over the arrays, not with decrypting every template again.
    """
    size = previous.embedding_size
    owners = previous.patient_ids[previous.owners]
    kept = ~np.isin(owners, list(changes)) if len(owners) else np.zeros(0, bool)
    ids, rows, masked = [owners[kept]], [previous.templates[kept]], [previous.masked[kept]]
    for patient_id, templates in changes.items():
        if templates:
            ids.append(np.array([patient_id] * len(templates), dtype=str))
            rows.append(normalised_rows(np.stack([t.embedding for t in templates]), size,
                                        f'gallery sync: {patient_id}'))
            masked.append(np.array([bool(t.masked) for t in templates], bool))
    ids = np.concatenate([part.astype(str) for part in ids])
    order = np.argsort(ids, kind='stable')
    patient_ids, owner_index = np.unique(ids[order], return_inverse=True)
    return GallerySnapshot(int(revision), patient_ids.astype(str),
                           np.concatenate(rows).reshape(-1, size)[order].astype(np.float32),
                           owner_index.astype(np.int64).reshape(-1),
                           np.concatenate(masked)[order].astype(bool))
