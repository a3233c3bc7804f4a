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
A hospital's gallery on its PostgreSQL server, behind the SQLite gallery's interface.

The tables live in the schema ``face_id`` of the database the URL names (``gallery.url``,
libpq conventions: the password comes from ``PGPASSFILE`` or ``~/.pgpass``, TLS from
``sslmode`` and ``sslrootcert``); :mod:`face_id_ros.core.gallery_server_schema` creates or
upgrades them (``face-id gallery migrate``), and opening a gallery never changes the schema.
The server holds pseudonymous ids, enrolment times, qualities, mask flags, the templates
(and optional crops) sealed by this application with AES-256-GCM
(:mod:`face_id_ros.core.gallery_crypto`) and, per template, the digest of its photo keyed
with the gallery key (:func:`face_id_ros.core.enrolment.photo_source`), so its administrator
sees ciphertext and digests, never a template, a crop or a photo name; a server gallery is
always encrypted. Every write bumps
one revision row (which also orders concurrent writers), appends who did what to the
append-only ``audit`` table (which keeps no biometric data and survives erasure) and
notifies listening robots (:mod:`face_id_ros.core.gallery_sync`) at commit.

The driver is psycopg 3, imported only when a server gallery is opened, so SQLite machines
run without it.
"""

from contextlib import contextmanager
from dataclasses import dataclass
import getpass
import re
import select
import threading
import time

from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import (_encoded_png, DEFAULT_ID_PATTERN, GallerySnapshot,
                                      normalised_rows, PatientRecord)
from face_id_ros.core.gallery_crypto import key_from_config
from face_id_ros.core.gallery_server_schema import (connect, display_url, driver, one_line,
                                                    opened_cipher, read_meta, read_revision,
                                                    SERVER_SOURCE_PATTERN)
import numpy as np

NOTIFY_CHANNEL = 'face_id_gallery'


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit trail: who did what to which pseudonymous id, at which revision."""

    entry_id: int
    revision: int
    at: object
    operator: str
    database_user: str
    action: str
    patient_id: str
    templates: int


@dataclass(frozen=True)
class ServerTemplate:
    """
    One template as read by a robot's sync: decrypted, with its enrolment metadata.

    ``source`` is the keyed digest of the template's photo, or None (a camera enrolment, a
    template written before the server kept digests).
    """

    embedding: np.ndarray
    enrolled: float
    quality: float
    masked: bool
    source: str = None


class PostgresGallery:
    """A gallery on a PostgreSQL server bound to one embedding model; see the module doc."""

    def __init__(self, connection, url, model_fingerprint, embedding_size, id_pattern,
                 store_images, key, operator):
        """Wrap an open connection; use :meth:`open` instead."""
        self._db = connection
        self._lock = threading.RLock()
        self._key = key
        self._cipher = None
        self._write = None
        self._notified = threading.Event()
        self.url = url
        self.path = display_url(url)
        self.model_fingerprint = model_fingerprint
        self.embedding_size = embedding_size
        self.id_pattern = id_pattern
        self.store_images = store_images
        self.operator = operator or getpass.getuser()

    @classmethod
    def open(cls, url, model_fingerprint, embedding_size, key,  # noqa: A003
             id_pattern=DEFAULT_ID_PATTERN, store_images=False, operator=''):
        """
        Connect to the server gallery at ``url`` for one model; raise GalleryError.

        The schema must exist (``face-id gallery migrate``) and be stamped with
        ``model_fingerprint`` and ``embedding_size``; ``key`` (a GalleryKey) must open it.
        ``operator`` is the name the audit trail records for writes (default: login name).
        """
        if key is None:
            raise GalleryError(f'gallery {display_url(url)}: a server gallery is always '
                               'encrypted: set gallery.encryption: required and give the key '
                               '(FACE_ID_GALLERY_KEY or gallery.key_file)')
        try:
            pattern = re.compile(id_pattern)
        except re.error as error:
            raise GalleryError(f'gallery id pattern {id_pattern!r} is not a valid regular '
                               f'expression ({error})')
        connection = connect(url)
        gallery = cls(connection, url, model_fingerprint, int(embedding_size), pattern,
                      store_images, key, operator)
        try:
            gallery._cipher = gallery._read(gallery._check_stamp)
        except BaseException:
            connection.close()
            raise
        return gallery

    @classmethod
    def from_config(cls, config, model_fingerprint, embedding_size):
        """Open the server gallery a GalleryConfig names (``url``), with its key."""
        return cls.open(config.url, model_fingerprint, embedding_size, key_from_config(config),
                        id_pattern=config.id_pattern, store_images=config.store_images,
                        operator=config.operator)

    def close(self):
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self):
        """Use as a context manager that closes the connection."""
        return self

    def __exit__(self, *exc_info):
        """Close the connection."""
        self.close()

    # Reading.

    @property
    def revision(self):
        """Return the committed revision; inside a batch, the one it will commit."""
        return self._read(read_revision)

    def patient_ids(self):
        """Return the enrolled patient ids, sorted."""
        return self._read(lambda db: [row[0] for row in db.execute(
            'SELECT patient_id FROM face_id.patients ORDER BY patient_id')])

    def info(self):
        """Describe the gallery for logs, diagnostics and ``VisionInfo``."""
        def query(db):
            meta = read_meta(db)
            counts = db.execute(
                'SELECT (SELECT COUNT(*) FROM face_id.patients), COUNT(*),'
                ' COUNT(*) FILTER (WHERE masked) FROM face_id.templates').fetchone()
            return {
                'path': self.path,
                'model_fingerprint': meta['model_fingerprint'],
                'embedding_size': int(meta['embedding_size']),
                'revision': read_revision(db),
                'patients': counts[0],
                'templates': counts[1],
                'masked_templates': counts[2],
                'schema_version': int(meta['schema_version']),
                'encryption': meta['encryption'],
                'gallery_id': meta['gallery_id'],
            }
        return self._read(query)

    def list_patients(self):
        """Return a :class:`PatientRecord` per patient, sorted by id."""
        def query(db):
            return db.execute(
                'SELECT p.patient_id, p.created, COUNT(t.template_id),'
                ' COALESCE(array_agg(t.enrolled ORDER BY t.enrolled)'
                ' FILTER (WHERE t.template_id IS NOT NULL), ARRAY[]::float8[]),'
                ' COUNT(*) FILTER (WHERE t.masked)'
                ' FROM face_id.patients p LEFT JOIN face_id.templates t USING (patient_id)'
                ' GROUP BY p.patient_id, p.created ORDER BY p.patient_id').fetchall()
        return [PatientRecord(patient_id, created, count, tuple(enrolled), masked)
                for patient_id, created, count, enrolled, masked in self._read(query)]

    def template_sources(self):
        """
        Map each patient id to the set of its templates' photo digests, as the SQLite gallery.

        The server keeps only keyed photo digests (:meth:`add_templates`): a template without
        one (a camera enrolment, written before schema 2) adds nothing to its patient's set.
        """
        def query(db):
            return db.execute('SELECT patient_id, source FROM face_id.templates'
                              ' WHERE source IS NOT NULL').fetchall()
        found = {}
        for patient_id, source in self._read(query):
            found.setdefault(patient_id, set()).add(source)
        return found

    def snapshot(self):
        """Read one consistent revision into a :class:`GallerySnapshot`."""
        revision, templates = self.templates_of(None)
        patient_ids = sorted(templates)
        rows = [(index, template) for index, patient_id in enumerate(patient_ids)
                for template in templates[patient_id]]
        embeddings = np.array([template.embedding for _, template in rows],
                              np.float32).reshape(len(rows), self.embedding_size)
        return GallerySnapshot(revision, np.array(patient_ids, dtype=str).reshape(-1),
                               embeddings, np.array([index for index, _ in rows], np.int64),
                               np.array([template.masked for _, template in rows], bool))

    def changes_since(self, revision):
        """
        Return (revision now, {patient id: [ServerTemplate]}) of patients changed since.

        The patients are those the audit trail shows written after ``revision`` (all of them
        for ``revision`` 0); an erased patient maps to an empty list. One consistent read.
        """
        return self.templates_of(int(revision))

    def templates_of(self, since):
        """Return (revision, {patient: [ServerTemplate]}): everyone, or changed after ``since``."""
        def query(db):
            now = read_revision(db)
            if since is None:
                touched = None
            elif since:
                touched = [row[0] for row in db.execute(
                    'SELECT DISTINCT patient_id FROM face_id.audit WHERE revision > %s',
                    (since,))]
            else:  # a first sync: every patient there is
                touched = [row[0] for row in db.execute(
                    'SELECT patient_id FROM face_id.patients')]
            rows = db.execute(
                'SELECT template_id, patient_id, embedding, enrolled, quality, masked, source'
                ' FROM face_id.templates'
                + ('' if touched is None else ' WHERE patient_id = ANY(%s)')
                + ' ORDER BY patient_id, template_id',
                () if touched is None else (touched,)).fetchall()
            return now, touched, rows
        now, touched, rows = self._read(query)
        templates = {patient_id: [] for patient_id in touched or ()}
        for template_id, patient_id, blob, enrolled, quality, masked, source in rows:
            embedding = self._decode(self._unseal(blob, template_id, patient_id, 'embedding'))
            templates.setdefault(patient_id, []).append(
                ServerTemplate(embedding, enrolled, quality, masked, source))
        return now, templates

    def audit(self, patient_id=None, since_revision=0, limit=None):
        """Return the audit trail's entries, oldest first (one patient's, after a revision)."""
        def query(db):
            return db.execute(
                'SELECT entry_id, revision, at, operator, database_user, action, patient_id,'
                ' templates FROM face_id.audit WHERE revision > %s'
                ' AND (%s::text IS NULL OR patient_id = %s) ORDER BY entry_id'
                + ('' if limit is None else ' LIMIT %s'),
                (since_revision, patient_id, patient_id)
                + (() if limit is None else (limit,))).fetchall()
        return [AuditEntry(*row) for row in self._read(query)]

    @property
    def gallery_id(self):
        """Return the id this server gallery was stamped with (robots' caches record it)."""
        return self._read(lambda db: read_meta(db)['gallery_id'])

    def listen(self):
        """Ask the server to notify this connection of every committed write."""
        with self._lock:
            self._db.add_notify_handler(lambda notification: self._notified.set())
            self._execute_now(f'LISTEN {NOTIFY_CHANNEL}')

    def wait_for_change(self, timeout_s, wake_fd=None):
        """
        Wait up to ``timeout_s`` for a write's notification; return True when one came.

        Returns early, False, when ``wake_fd`` (a pipe) becomes readable. Raises
        GalleryError when the server is gone.
        """
        psycopg = driver()
        if not self._notified.is_set():
            try:
                connection = self._db.fileno()
            except psycopg.Error as error:
                raise GalleryError(f'gallery {self.path}: {one_line(error)}')
            # Without the lock: a reload may use the connection meanwhile.
            sources = [connection] + ([] if wake_fd is None else [wake_fd])
            readable, _, _ = select.select(sources, [], [], timeout_s)
            if connection in readable:
                with self._lock:
                    self._execute_now('SELECT 1')  # receives the notifications, or fails
        notified = self._notified.is_set()
        self._notified.clear()
        return notified

    # Writing.

    @contextmanager
    def batch(self):
        """
        Group several writes into one transaction, one revision and one notification.

        Other connections see all of the batch or none of it; an exception inside the block
        rolls it back and propagates. Batches nest (savepoints); an inner one that fails
        rolls back only its own part.
        """
        psycopg = driver()
        with self._lock:
            outer = self._write is None
            try:
                with self._db.transaction():
                    if outer:
                        # The row lock orders writers: revisions commit in sequence.
                        self._write = self._db.execute(
                            'UPDATE face_id.revision SET revision = revision + 1, changed = %s'
                            ' RETURNING revision', (time.time(),)).fetchone()[0]
                        self._db.execute('SELECT pg_notify(%s, %s)',
                                         (NOTIFY_CHANNEL, str(self._write)))
                    yield self
            except psycopg.OperationalError as error:
                # The connection broke: the commit may have reached the server or not.
                raise GalleryError(f'gallery {self.path}: connection lost during a write '
                                   f'({one_line(error)}); `face-id gallery audit` shows '
                                   'whether it was committed')
            except psycopg.Error as error:
                raise GalleryError(f'gallery {self.path}: nothing was written: '
                                   f'{one_line(error)}')
            finally:
                if outer:
                    self._write = None

    def add_templates(self, patient_id, embeddings, sources, qualities, images=None,
                      replace=False, masked=None):
        """
        Add templates (enrolling the patient if new); return the new revision.

        As :meth:`Gallery.add_templates`, except that only a source that is a photo's digest
        keyed with the gallery key (what ``face-id enroll`` writes) is stored; any other
        source (a photo's name, an unkeyed digest, a camera) is checked and dropped, so the
        server keeps no photo name.
        """
        self._check_patient_id(patient_id)
        where = f'gallery {self.path}: {patient_id}'
        embeddings = normalised_rows(embeddings, self.embedding_size, where)
        sources, qualities, images, masked = _template_metadata(
            where, len(embeddings), sources, qualities, images, masked, self.store_images)
        now = time.time()
        with self.batch():
            db = self._db
            created = db.execute(
                'INSERT INTO face_id.patients VALUES (%s, %s, %s) ON CONFLICT (patient_id)'
                ' DO UPDATE SET revision = EXCLUDED.revision RETURNING (xmax = 0)',
                (patient_id, now, self._write)).fetchone()[0]
            if replace:
                db.execute('DELETE FROM face_id.templates WHERE patient_id = %s',
                           (patient_id,))
            ids = [row[0] for row in db.execute(
                "SELECT nextval('face_id.templates_template_id_seq')"
                ' FROM generate_series(1, %s)', (len(embeddings),))]
            with db.cursor() as cursor:
                cursor.executemany(
                    'INSERT INTO face_id.templates (template_id, patient_id, revision,'
                    ' embedding, enrolled, quality, image, masked, source)'
                    ' VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
                    [(template_id, patient_id, self._write,
                      self._seal(embedding.astype('<f4').tobytes(), template_id, patient_id,
                                 'embedding'), now, quality,
                      None if image is None else self._seal(image, template_id, patient_id,
                                                            'image'), bool(flag), source)
                     for template_id, embedding, quality, image, flag, source
                     in zip(ids, embeddings, qualities, images, masked, sources)])
            action = 'enrol' if created else 'replace' if replace else 'add'
            self._audit(action, patient_id, len(embeddings))
            return self._write

    def remove_patient(self, patient_id):
        """Erase a patient and their templates; return the revision (robots follow it)."""
        with self.batch():
            removed = self._db.execute(
                'WITH gone AS (DELETE FROM face_id.templates WHERE patient_id = %s'
                ' RETURNING 1) SELECT COUNT(*) FROM gone', (patient_id,)).fetchone()[0]
            patient = self._db.execute('DELETE FROM face_id.patients WHERE patient_id = %s',
                                       (patient_id,)).rowcount
            if not patient:
                raise GalleryError(f'gallery {self.path}: no patient {patient_id!r}')
            self._audit('erase', patient_id, removed)
            revision = self._write
        self.purge()
        return revision

    def purge(self):
        """
        Reclaim the erased rows' space now (``VACUUM`` of the template table).

        The rows held ciphertext only; autovacuum would reclaim them too. A database user
        that does not own the tables may not vacuum them: that is left to autovacuum.
        """
        psycopg = driver()
        with self._lock:
            if self._write is not None:
                raise GalleryError(f'gallery {self.path}: cannot purge inside a write')
            try:
                self._db.execute('VACUUM face_id.templates')
            except psycopg.errors.InsufficientPrivilege:
                pass  # owned by another role: autovacuum reclaims the space
            except psycopg.Error as error:
                raise GalleryError(f'gallery {self.path}: the erasure is committed, but '
                                   f'VACUUM failed: {one_line(error)}')

    # Internals.

    def _audit(self, action, patient_id, templates):
        self._db.execute(
            'INSERT INTO face_id.audit (revision, operator, action, patient_id, templates)'
            ' VALUES (%s, %s, %s, %s, %s)',
            (self._write, self.operator, action, patient_id, templates))

    def _check_stamp(self, db):
        """Check schema, model stamp and key; return the cipher."""
        return opened_cipher(db, self.path, self.model_fingerprint, self.embedding_size,
                             self._key)

    def _execute_now(self, statement):
        psycopg = driver()
        try:
            self._db.execute(statement)
        except psycopg.Error as error:
            raise GalleryError(f'gallery {self.path}: {one_line(error)}')

    def _read(self, query):
        """Run ``query(connection)`` in one repeatable-read transaction (one view)."""
        psycopg = driver()
        with self._lock:
            if self._write is not None:
                return query(self._db)
            try:
                with self._db.transaction():
                    self._db.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, '
                                     'READ ONLY')
                    return query(self._db)
            except psycopg.Error as error:
                raise GalleryError(f'cannot read gallery {self.path}: {one_line(error)}')

    def _seal(self, data, template_id, patient_id, field):
        return self._cipher.seal(data, template_id, patient_id, field)

    def _unseal(self, blob, template_id, patient_id, field):
        data = self._cipher.unseal(blob, template_id, patient_id, field)
        if data is None:
            raise GalleryError(f'gallery {self.path} was tampered with: the {field} of '
                               f'template {template_id} ({patient_id}) does not authenticate')
        return data

    def _decode(self, blob):
        embedding = np.frombuffer(blob, '<f4') if len(blob) % 4 == 0 else np.zeros(0)
        norm = np.linalg.norm(embedding)
        if embedding.size != self.embedding_size or not np.isfinite(norm) or norm == 0:
            raise GalleryError(f'gallery {self.path} is damaged: a template is not '
                               f'{self.embedding_size} finite numbers')
        return (embedding / norm).astype(np.float32)

    def _check_patient_id(self, patient_id):
        if not isinstance(patient_id, str) or not self.id_pattern.fullmatch(patient_id):
            raise GalleryError(
                f'patient id {patient_id!r} does not match the pseudonymous pattern '
                f'{self.id_pattern.pattern!r}; the gallery stores pseudonymous ids such as '
                'P-0042, never names')


def _template_metadata(where, count, sources, qualities, images, masked, store_images):
    """Check one source, quality (and image and mask flag) per template; keep keyed digests."""
    sources = list(sources)
    qualities = [float(quality) for quality in qualities]
    images = [None] * count if images is None else list(images)
    masked = [False] * count if masked is None else list(masked)
    if not len(sources) == len(qualities) == len(images) == len(masked) == count:
        raise GalleryError(f'{where}: {count} embeddings need as many sources, qualities, '
                           f'images and mask flags, got {len(sources)}, {len(qualities)}, '
                           f'{len(images)} and {len(masked)}')
    if not all(isinstance(source, str) for source in sources):
        raise GalleryError(f'{where}: template sources must be text')
    if not all(np.isfinite(qualities)):
        raise GalleryError(f'{where}: template qualities must be finite numbers')
    if not all(isinstance(flag, (bool, np.bool_)) for flag in masked):
        raise GalleryError(f'{where}: mask flags must be True or False')
    sources = [source if re.fullmatch(SERVER_SOURCE_PATTERN, source) else None
               for source in sources]
    if not store_images:
        return sources, qualities, [None] * count, masked
    return sources, qualities, [_encoded_png(image, where) for image in images], masked
