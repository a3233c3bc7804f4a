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
The enrolled-patient gallery: pseudonymous ids and their face templates in SQLite.

One file holds the patients, several L2-normalised templates each with its enrolment
metadata and a flag saying whether the face wore a mask, a revision that every committed
write bumps, and the fingerprint of the model that made the embeddings; a gallery made by
another model is refused, never mixed. The file runs in WAL mode, so a node can read while an
enrolment tool writes and never sees half a write; a write killed at any point leaves the
last committed revision. Matching works on an immutable :class:`GallerySnapshot`, so a reload
swaps one object.

Templates and stored face crops are encrypted with a key kept outside the file
(:mod:`face_id_ros.core.gallery_crypto`) unless the gallery was made without one (tests,
development). Every connection runs with ``secure_delete``, and a write that removes
templates ends with ``VACUUM`` and a truncating WAL checkpoint, so a removed patient's bytes
leave the file and its write-ahead log. :func:`migrate` rewrites a schema-1 or unencrypted
gallery as an encrypted schema-2 one.
"""

from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import cached_property
import os
from pathlib import Path
import re
import sqlite3
import tempfile
import threading
import time
import uuid

import cv2
from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.enrolment import PHOTO_SOURCE_PREFIXES
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery_crypto import ALGORITHM, key_from_config, TemplateCipher
import numpy as np

SCHEMA_VERSION = 2
DEFAULT_ID_PATTERN = GalleryConfig.id_pattern
BUSY_TIMEOUT_MS = 5000
UNENCRYPTED = 'none'
# The source of a template copied from a server gallery that keeps no digest of its photo.
MIRRORED_SOURCE = 'server'
# What a migration writes over a source that may hold a photo's path.
MIGRATED_SOURCE = 'photo (name removed by migrate)'
# Sources that name no photo: the enrolment tools' digests, the enrol node's camera frames,
# a server gallery's mirror.
NAMELESS_SOURCE_PREFIXES = (*PHOTO_SOURCE_PREFIXES, 'camera ', MIGRATED_SOURCE,
                            MIRRORED_SOURCE)

SCHEMA = (
    # No type on meta.value: revision stays an integer, the fingerprint text.
    'CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)',
    'CREATE TABLE patients (patient_id TEXT PRIMARY KEY, created REAL NOT NULL)',
    'CREATE TABLE templates ('
    ' template_id INTEGER PRIMARY KEY AUTOINCREMENT,'
    ' patient_id TEXT NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,'
    ' embedding BLOB NOT NULL, enrolled REAL NOT NULL, source TEXT NOT NULL,'
    ' quality REAL NOT NULL, image BLOB, masked INTEGER NOT NULL DEFAULT 0)',
    'CREATE INDEX templates_by_patient ON templates(patient_id)',
)


@dataclass(frozen=True)
class GallerySnapshot:
    """
    An immutable view of one gallery revision, laid out for vectorised matching.

    ``templates`` is (T, D) float32 with L2-normalised rows, grouped by patient in the
    order of ``patient_ids``; ``owners[t]`` is the index in ``patient_ids`` of template
    ``t``'s patient and ``masked[t]`` whether that face wore a mask (default: none did).
    Every patient has at least one template.
    """

    revision: int
    patient_ids: np.ndarray
    templates: np.ndarray
    owners: np.ndarray
    masked: np.ndarray = None

    def __post_init__(self):
        """Check the layout the matcher relies on and freeze the arrays."""
        owners = self.owners
        if self.masked is None:
            object.__setattr__(self, 'masked', np.zeros(len(owners), bool))
        if len(owners) != len(self.templates) or self.templates.ndim != 2:
            raise GalleryError('snapshot: templates and owners do not line up')
        if self.masked.shape != owners.shape or self.masked.dtype != bool:
            raise GalleryError('snapshot: masked must be one boolean per template')
        expected = np.arange(len(self.patient_ids))
        if len(owners) and (np.any(np.diff(owners) < 0)
                            or not np.array_equal(np.unique(owners), expected)):
            raise GalleryError('snapshot: templates are not grouped by patient')
        if not len(owners) and len(self.patient_ids):
            raise GalleryError('snapshot: patients without templates')
        for array in (self.patient_ids, self.templates, self.owners, self.masked):
            array.flags.writeable = False

    @classmethod
    def empty(cls, embedding_size):
        """Return the snapshot of a gallery with nobody enrolled (revision 0)."""
        return cls(0, np.array([], dtype=str), np.zeros((0, embedding_size), np.float32),
                   np.zeros(0, np.int64))

    @property
    def embedding_size(self):
        """Length of each template."""
        return self.templates.shape[1]

    @cached_property
    def template_starts(self):
        """Index of each patient's first template (for ``np.maximum.reduceat``), once."""
        return np.searchsorted(self.owners, np.arange(len(self.patient_ids)))


@dataclass(frozen=True)
class PatientRecord:
    """One enrolled patient as listed for people: id, creation and enrolment times."""

    patient_id: str
    created: float
    template_count: int
    enrolled: tuple
    masked_count: int = 0


class Gallery:
    """A SQLite gallery bound to one embedding model; open it with :meth:`open`."""

    def __init__(self, connection, path, model_fingerprint, embedding_size, id_pattern,
                 store_images, key):
        """Wrap an open, checked connection; use :meth:`open` instead."""
        self._db = connection
        self._lock = threading.RLock()
        self._depth = 0
        self._key = key
        self._cipher = None
        self._removed_templates = False
        self.path = path
        self.model_fingerprint = model_fingerprint
        self.embedding_size = embedding_size
        self.id_pattern = id_pattern
        self.store_images = store_images

    @classmethod
    def open(cls, path, model_fingerprint, embedding_size, create=True,  # noqa: A003
             id_pattern=DEFAULT_ID_PATTERN, store_images=False, key=None):
        """
        Open (or create) the gallery at ``path`` for one model; raise GalleryError.

        The gallery must have been made by the model with ``model_fingerprint`` and
        ``embedding_size``; a new file is stamped with them. ``id_pattern`` is the regular
        expression patient ids must match; ``store_images`` keeps face crops passed to
        writes (otherwise they are dropped). With ``key`` (a GalleryKey) the gallery must be
        encrypted with it (a new one is); without, it must be unencrypted.
        """
        path = os.path.abspath(os.path.expanduser(str(path)))
        embedding_size = int(embedding_size)
        if not model_fingerprint or embedding_size < 1:
            raise GalleryError(f'gallery {path}: a model fingerprint and a positive '
                               'embedding size are required')
        try:
            pattern = re.compile(id_pattern)
        except re.error as error:
            raise GalleryError(f'gallery id pattern {id_pattern!r} is not a valid regular '
                               f'expression ({error})')
        if not create and not os.path.isfile(path):
            raise GalleryError(f'no gallery at {path}')
        if create:
            _create_owner_only(path)
        mode = 'rwc' if create else 'rw'
        try:
            connection = sqlite3.connect(f'{Path(path).as_uri()}?mode={mode}', uri=True,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise GalleryError(f'cannot open gallery {path}: {error}')
        gallery = cls(connection, path, model_fingerprint, embedding_size, pattern,
                      store_images, key)
        try:
            gallery._prepare(create)
        except BaseException:
            connection.close()
            raise
        return gallery

    @classmethod
    def from_config(cls, config, model_fingerprint, embedding_size, create=True):
        """Open the gallery a :class:`GalleryConfig` describes, with the key it names."""
        return cls.open(config.path, model_fingerprint, embedding_size, create=create,
                        id_pattern=config.id_pattern, store_images=config.store_images,
                        key=key_from_config(config))

    def close(self):
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self):
        """Use as a context manager that closes the gallery."""
        return self

    def __exit__(self, *exc_info):
        """Close the gallery."""
        self.close()

    # Reading.

    @property
    def revision(self):
        """Return the committed revision; every write bumps it."""
        return self._read(lambda db: self._meta(db, 'revision'))

    def patient_ids(self):
        """Return the enrolled patient ids, sorted."""
        return self._read(lambda db: [row[0] for row in db.execute(
            'SELECT patient_id FROM patients ORDER BY patient_id')])

    def info(self):
        """Describe the gallery for logs, diagnostics and ``VisionInfo``."""
        def query(db):
            return {
                'path': self.path,
                'model_fingerprint': self._meta(db, 'model_fingerprint'),
                'embedding_size': self._meta(db, 'embedding_size'),
                'revision': self._meta(db, 'revision'),
                'patients': db.execute('SELECT COUNT(*) FROM patients').fetchone()[0],
                'templates': db.execute('SELECT COUNT(*) FROM templates').fetchone()[0],
                'masked_templates': db.execute(
                    'SELECT COUNT(*) FROM templates WHERE masked').fetchone()[0],
                'schema_version': self._meta(db, 'schema_version'),
                'encryption': self._meta(db, 'encryption'),
            }
        return self._read(query)

    def list_patients(self):
        """Return a :class:`PatientRecord` per patient, sorted by id."""
        def query(db):
            enrolled, masked = {}, {}
            for patient_id, stamp, is_masked in db.execute(
                    'SELECT patient_id, enrolled, masked FROM templates ORDER BY enrolled'):
                enrolled.setdefault(patient_id, []).append(stamp)
                masked[patient_id] = masked.get(patient_id, 0) + bool(is_masked)
            return [PatientRecord(patient_id, created, len(enrolled.get(patient_id, ())),
                                  tuple(enrolled.get(patient_id, ())),
                                  masked.get(patient_id, 0))
                    for patient_id, created in db.execute(
                        'SELECT patient_id, created FROM patients ORDER BY patient_id')]
        return self._read(query)

    def template_sources(self):
        """Map each enrolled patient id to the set of its templates' sources."""
        def query(db):
            found = {}
            for patient_id, source in db.execute('SELECT patient_id, source FROM templates'):
                found.setdefault(patient_id, set()).add(source)
            return found
        return self._read(query)

    def snapshot(self):
        """Read one consistent revision into a :class:`GallerySnapshot`."""
        def query(db):
            revision = self._meta(db, 'revision')
            rows = db.execute('SELECT template_id, patient_id, embedding, masked FROM '
                              'templates ORDER BY patient_id, template_id').fetchall()
            return revision, rows
        revision, rows = self._read(query)
        if not all(isinstance(row[1], str) for row in rows):
            raise GalleryError(f'gallery {self.path} is damaged: the patient id of a template '
                               'is not text')
        patient_ids = sorted({row[1] for row in rows})
        index = {patient_id: position for position, patient_id in enumerate(patient_ids)}
        templates = self._decode_all([self._unseal(blob, template_id, patient_id, 'embedding')
                                      for template_id, patient_id, blob, _ in rows])
        owners = np.array([index[row[1]] for row in rows], np.int64)
        masked = np.array([bool(row[3]) for row in rows], bool)
        return GallerySnapshot(revision, np.array(patient_ids, dtype=str).reshape(-1),
                               templates, owners, masked)

    # Writing.

    @contextmanager
    def batch(self):
        """
        Group several writes into one transaction and one revision bump.

        Other connections see all of the batch or none of it; an exception inside the
        block rolls it back and propagates. Batches nest: an inner one that fails rolls
        back only its own part. A batch that removed templates ends with :meth:`purge`.
        """
        with self._lock:
            savepoint = f'batch_{self._depth}'
            if self._depth:
                self._execute(f'SAVEPOINT {savepoint}')
            else:
                self._execute('BEGIN IMMEDIATE')
                # Bump first, so writes inside the batch can report the revision they make.
                self._execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
            self._depth += 1
            try:
                yield self
            except BaseException:
                if self._depth > 1:
                    self._execute(f'ROLLBACK TO {savepoint}')
                    self._execute(f'RELEASE {savepoint}')
                else:
                    self._db.rollback()
                raise
            else:
                self._execute(f'RELEASE {savepoint}' if self._depth > 1 else 'COMMIT')
            finally:
                self._depth -= 1
                removed = self._removed_templates and not self._depth
                if not self._depth:
                    self._removed_templates = False
            if removed:
                self.purge()

    def add_templates(self, patient_id, embeddings, sources, qualities, images=None,
                      replace=False, masked=None):
        """
        Add templates (enrolling the patient if new); return the new revision.

        ``embeddings`` is (N, D) or (D,); each row is renormalised. ``sources`` and
        ``qualities`` give one string and one number per row; ``images`` optionally one
        encoded crop (bytes) per row, stored only when the gallery stores images;
        ``masked`` optionally one bool per row, True for a face that wore a mask (default:
        none). ``replace`` first removes the patient's old templates, in the same
        transaction, and wipes them from the file.
        """
        self._check_patient_id(patient_id)
        embeddings = normalised_rows(embeddings, self.embedding_size,
                                     f'gallery {self.path}: {patient_id}')
        count = len(embeddings)
        sources, qualities, images, masked = self._template_metadata(
            patient_id, count, sources, qualities, images, masked)
        now = time.time()
        with self.batch():
            self._execute('INSERT OR IGNORE INTO patients VALUES (?, ?)', (patient_id, now))
            if replace:
                self._delete_templates('DELETE FROM templates WHERE patient_id = ?',
                                       patient_id)
            first_id = self._next_template_id()
            rows = zip(embeddings, sources, qualities, images, masked)
            for offset, (embedding, source, quality, image, is_masked) in enumerate(rows):
                self._insert_template(first_id + offset, patient_id,
                                      embedding.astype('<f4').tobytes(), now, source,
                                      quality, image, is_masked)
            return self.revision

    def remove_patient(self, patient_id):
        """Remove a patient and all their templates, wiped from the file; return the revision."""
        with self.batch():
            removed = self._delete_templates('DELETE FROM patients WHERE patient_id = ?',
                                             patient_id)
            if not removed:
                raise GalleryError(f'gallery {self.path}: no patient {patient_id!r}')
            return self.revision

    def mirror(self, revision, patients, source_id):
        """
        Make this gallery (a robot's cache) hold revision ``revision`` of another gallery.

        ``patients`` maps each patient changed since the copy's revision to all their
        templates at ``revision`` (objects with ``embedding``, ``enrolled``, ``quality``,
        ``masked`` and ``source``, the keyed photo digest or None); an empty list erases the
        patient. The copy keeps the digests, so its :meth:`template_sources` are the server's
        (``server`` for a template without one). One transaction, so a snapshot is the old
        revision or the new one; removed templates are wiped from the file as by
        :meth:`remove_patient`. ``source_id`` names the gallery copied (:meth:`mirrored`).
        """
        with self.batch():
            for patient_id, templates in patients.items():
                self._check_patient_id(patient_id)
                self._delete_templates('DELETE FROM patients WHERE patient_id = ?', patient_id)
                if not templates:
                    continue
                self._execute('INSERT INTO patients VALUES (?, ?)',
                              (patient_id, min(template.enrolled for template in templates)))
                first_id = self._next_template_id()
                for offset, template in enumerate(templates):
                    embedding = normalised_rows(template.embedding, self.embedding_size,
                                                f'gallery {self.path}: {patient_id}')[0]
                    self._insert_template(first_id + offset, patient_id,
                                          embedding.astype('<f4').tobytes(), template.enrolled,
                                          template.source or MIRRORED_SOURCE,
                                          template.quality, None, bool(template.masked))
            self._execute("UPDATE meta SET value = ? WHERE key = 'revision'", (int(revision),))
            self._execute("INSERT OR REPLACE INTO meta VALUES ('mirror_of', ?)", (source_id,))

    def mirrored(self):
        """Return (id of the gallery this one copies or None, revision)."""
        def query(db):
            row = db.execute("SELECT value FROM meta WHERE key = 'mirror_of'").fetchone()
            return (row[0] if row else None), self._meta(db, 'revision')
        return self._read(query)

    def purge(self):
        """
        Wipe the bytes of removed rows from the file and its write-ahead log.

        ``secure_delete`` zeroes deleted rows, ``VACUUM`` rebuilds the file without free
        pages, and a truncating checkpoint moves the write-ahead log into the file and
        empties it. Raises GalleryError when a reader kept the log busy (the removal itself
        stands; the next purge or the last connection's close finishes the wipe).
        """
        with self._lock:
            if self._depth:
                raise GalleryError(f'gallery {self.path}: cannot purge inside a write')
            self._execute('VACUUM')
            busy, _, _ = self._execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
        if busy:
            raise GalleryError(
                f'gallery {self.path}: the removal is committed, but a reader kept the '
                'write-ahead log busy, so removed bytes may remain in it until the next '
                'removal or until every reader has closed the gallery')

    # Internals.

    def _copy(self, source):
        """Write a migrated gallery's rows (ids, times and revision kept) in one batch."""
        with self.batch():
            self._db.executemany('INSERT INTO patients VALUES (?, ?)', source['patients'])
            for row in source['templates']:
                self._insert_template(*row)
            self._execute("UPDATE meta SET value = ? WHERE key = 'revision'",
                          (source['revision'],))

    def _insert_template(self, template_id, patient_id, embedding, enrolled, source, quality,
                         image, masked):
        """Insert one template row; embedding and image are sealed to the row and patient."""
        if image is not None:
            image = self._seal(image, template_id, patient_id, 'image')
        self._execute(
            'INSERT INTO templates (template_id, patient_id, embedding, enrolled, source,'
            ' quality, image, masked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (template_id, patient_id, self._seal(embedding, template_id, patient_id,
                                                 'embedding'),
             enrolled, source, quality, image, int(masked)))

    def _next_template_id(self):
        """Return the id the next template gets; called inside a write (BEGIN IMMEDIATE)."""
        # The id is known before the insert, so the sealed blob can name its own row.
        row = self._execute("SELECT seq FROM sqlite_sequence WHERE name = 'templates'"
                            ).fetchone()
        return (row[0] if row else 0) + 1

    def _delete_templates(self, statement, patient_id):
        """Run a DELETE that removes templates; the batch then purges. Return its row count."""
        deleted = self._execute(statement, (patient_id,)).rowcount
        self._removed_templates = self._removed_templates or deleted > 0
        return deleted

    def _prepare(self, create):
        """Set up WAL, create the schema in a new file, and check stamp and key."""
        self._execute(f'PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}')
        self._execute('PRAGMA foreign_keys = ON')
        # Deleted rows are overwritten with zeros, not left in free pages.
        self._execute('PRAGMA secure_delete = ON')
        self._execute('PRAGMA journal_mode = WAL')
        if create and not self._read(_table_names):
            self._create_schema()
        self._read(self._check_stamp)

    def _create_schema(self):
        with self._lock:
            self._execute('BEGIN IMMEDIATE')
            try:
                # Another process may have created it since we looked.
                if not _table_names(self._db):
                    for statement in SCHEMA:
                        self._execute(statement)
                    self._execute('INSERT INTO meta VALUES (?, ?)', ('revision', 0))
                    self._write_stamp(SCHEMA_VERSION, self.model_fingerprint,
                                      self.embedding_size)
                self._execute('COMMIT')
            except BaseException:
                self._db.rollback()
                raise

    def _write_stamp(self, schema_version, model_fingerprint, embedding_size):
        """Write the meta rows that say what the gallery is and how it is encrypted."""
        gallery_id = uuid.uuid4().hex
        rows = [('schema_version', schema_version), ('model_fingerprint', model_fingerprint),
                ('embedding_size', embedding_size), ('gallery_id', gallery_id),
                ('encryption', ALGORITHM if self._key else UNENCRYPTED)]
        if self._key:
            rows.append(('key_check', TemplateCipher(self._key, gallery_id).key_check()))
        self._db.executemany('INSERT INTO meta VALUES (?, ?)', rows)

    def _check_stamp(self, db):
        if 'meta' not in _table_names(db):
            raise GalleryError(f'{self.path} is not a face_id_ros gallery (no meta table)')
        schema = self._meta(db, 'schema_version')
        if schema == 1:
            raise GalleryError(
                f'gallery {self.path} has schema version 1 (unencrypted, no mask flags); this '
                f'software reads version {SCHEMA_VERSION}: convert it once with `face-id '
                f'gallery migrate --gallery {self.path}` (it keeps the revision and the '
                'model stamp)')
        if schema != SCHEMA_VERSION:
            raise GalleryError(f'gallery {self.path} has schema version {schema}; this '
                               f'software reads version {SCHEMA_VERSION}')
        fingerprint = self._meta(db, 'model_fingerprint')
        size = self._meta(db, 'embedding_size')
        if fingerprint != self.model_fingerprint or size != self.embedding_size:
            raise GalleryError(
                f'gallery {self.path} was made by model {fingerprint!r} (embedding size '
                f'{size}), but the loaded model is {self.model_fingerprint!r} (embedding '
                f'size {self.embedding_size}); re-enrol with this model or use its gallery')
        self._cipher = self._check_key(db)

    def _check_key(self, db):
        """Return the cipher of an encrypted gallery (None for a plain one); refuse a wrong key."""
        encryption = self._meta(db, 'encryption')
        if encryption == UNENCRYPTED:
            if self._key is not None:
                raise GalleryError(
                    f'gallery {self.path} is not encrypted, but gallery.encryption is '
                    f'required: encrypt it with `face-id gallery migrate --gallery {self.path}`'
                    ' (or set gallery.encryption: off for a test gallery)')
            return None
        if self._key is None:
            raise GalleryError(
                f'gallery {self.path} is encrypted ({encryption}): open it with its key '
                '(gallery.encryption: required, with FACE_ID_GALLERY_KEY or gallery.key_file)')
        cipher = TemplateCipher(self._key, self._meta(db, 'gallery_id'))
        if not cipher.opens(self._meta(db, 'key_check')):
            raise GalleryError(f'gallery {self.path} was encrypted with another key: the '
                               f'{self._key.source} does not open it')
        return cipher

    def _meta(self, db, key):
        row = db.execute('SELECT value FROM meta WHERE key = ?', (key,)).fetchone()
        if row is None:
            raise GalleryError(f'gallery {self.path} is damaged: meta key {key!r} missing')
        return row[0]

    def _read(self, query):
        """Run ``query(connection)`` inside one read transaction (one consistent view)."""
        with self._lock:
            if self._depth:
                return query(self._db)
            self._execute('BEGIN')
            try:
                return query(self._db)
            except (sqlite3.Error, UnicodeDecodeError) as error:
                raise GalleryError(f'cannot read gallery {self.path}: {error}')
            finally:
                self._db.rollback()

    def _execute(self, statement, parameters=()):
        try:
            return self._db.execute(statement, parameters)
        except sqlite3.OperationalError as error:
            if 'locked' in str(error) or 'busy' in str(error):
                raise GalleryError(
                    f'gallery {self.path} is busy: another process kept it locked for '
                    f'{BUSY_TIMEOUT_MS / 1000:g} s ({error}); nothing was written, try again')
            raise GalleryError(f'gallery {self.path}: {error}')
        except sqlite3.Error as error:
            raise GalleryError(f'gallery {self.path}: {error}')
        except UnicodeDecodeError as error:  # a damaged file's text that is not UTF-8
            raise GalleryError(f'gallery {self.path} is damaged: {error}')

    def _seal(self, data, template_id, patient_id, field):
        if self._cipher is None:
            return data
        return self._cipher.seal(data, template_id, patient_id, field)

    def _unseal(self, blob, template_id, patient_id, field):
        if self._cipher is None:
            return blob
        # A damaged file may hold any SQLite type here; bytes(an integer) would allocate it.
        data = (self._cipher.unseal(blob, template_id, patient_id, field)
                if isinstance(blob, bytes) else None)
        if data is None:
            raise GalleryError(f'gallery {self.path} is damaged or was tampered with: the '
                               f'{field} of template {template_id} ({patient_id}) does not '
                               'authenticate')
        return data

    def _decode(self, blob):
        return self._decode_all([blob])[0]

    def _decode_all(self, blobs):
        """Return the (N, D) float32 unit rows of N stored embeddings."""
        size = self.embedding_size
        if not all(isinstance(blob, bytes) and len(blob) == 4 * size for blob in blobs):
            raise GalleryError(f'gallery {self.path} is damaged: a template is not {size} '
                               'finite numbers')
        embeddings = np.frombuffer(b''.join(blobs), '<f4').reshape(len(blobs), size)
        # Each row's own dot product, as np.linalg.norm takes it: the same bits, 3x faster
        # than a norm per row (a 10,000-patient snapshot spent 0.5 s here).
        norms = np.sqrt(np.array([row.dot(row) for row in embeddings], np.float32))
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise GalleryError(f'gallery {self.path} is damaged: a template is not {size} '
                               'finite numbers')
        return embeddings / norms[:, None]

    def _check_patient_id(self, patient_id):
        if not isinstance(patient_id, str) or not self.id_pattern.fullmatch(patient_id):
            raise GalleryError(
                f'patient id {patient_id!r} does not match the pseudonymous pattern '
                f'{self.id_pattern.pattern!r}; the gallery stores pseudonymous ids such as '
                'P-0042, never names')

    def _template_metadata(self, patient_id, count, sources, qualities, images, masked):
        """Check there is one source, quality (and image and mask flag) per template."""
        where = f'gallery {self.path}: {patient_id}'
        sources = list(sources)
        qualities = [float(quality) for quality in qualities]
        images = [None] * count if images is None else list(images)
        masked = [False] * count if masked is None else list(masked)
        if not len(sources) == len(qualities) == len(images) == len(masked) == count:
            raise GalleryError(f'{where}: {count} embeddings need as many sources, '
                               f'qualities, images and mask flags, got {len(sources)}, '
                               f'{len(qualities)}, {len(images)} and {len(masked)}')
        if not all(isinstance(source, str) for source in sources):
            raise GalleryError(f'{where}: template sources must be text')
        if not all(np.isfinite(qualities)):
            raise GalleryError(f'{where}: template qualities must be finite numbers')
        if not all(isinstance(flag, (bool, np.bool_)) for flag in masked):
            raise GalleryError(f'{where}: mask flags must be True or False')
        if not self.store_images:
            return sources, qualities, [None] * count, masked
        return sources, qualities, [_encoded_png(image, where) for image in images], masked


def migrate(path, key):
    """
    Rewrite a schema-1 or unencrypted gallery as schema 2, encrypted with ``key``.

    ``key`` is a GalleryKey, or None for an unencrypted schema-2 gallery (tests). The new
    file is written beside the old one, read back and compared, then renamed over it, so a
    crash at any point leaves one whole gallery; the revision, the model stamp, enrolment
    times, qualities and stored crops are kept, and schema-1 templates are marked unmasked.
    Sources that older releases wrote (photo paths) are replaced by a word that names nobody;
    a gallery already current but for such sources has them wiped in place. The gallery must
    not be open elsewhere (stop face_id_node and enrolment first). Returns a summary: path,
    from_schema, revision, patients, templates, encryption, photo_names_removed.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    source = _read_for_migration(path, key)
    named = sum(_names_a_photo(row[4]) for row in source['templates'])
    summary = {'path': path, 'from_schema': source['schema_version'],
               'revision': source['revision'], 'patients': len(source['patients']),
               'templates': len(source['templates']),
               'encryption': ALGORITHM if key else UNENCRYPTED, 'photo_names_removed': named}
    if source['current']:
        _remove_photo_names(path)
        return dict(summary, encryption=source.get('encryption', UNENCRYPTED))
    source['templates'] = [(*row[:4], MIGRATED_SOURCE if _names_a_photo(row[4]) else row[4],
                            *row[5:]) for row in source['templates']]
    descriptor, temporary = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                                             suffix='.migrating', dir=os.path.dirname(path))
    os.close(descriptor)  # SQLite takes an empty file as an empty database
    try:
        with Gallery.open(temporary, source['model_fingerprint'], source['embedding_size'],
                          store_images=True, key=key) as target:
            target._copy(source)
        with Gallery.open(temporary, source['model_fingerprint'], source['embedding_size'],
                          create=False, key=key) as check:
            _check_copy(check, source)
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(os.path.dirname(path))
    finally:
        for leftover in (temporary, temporary + '-wal', temporary + '-shm'):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return summary


def _names_a_photo(source):
    """Return True for a source an older release wrote: a photo's path, not its digest."""
    return not (isinstance(source, str) and source.startswith(NAMELESS_SOURCE_PREFIXES))


def _remove_photo_names(path):
    """Overwrite, in place, every source that may name a photo; wipe the old bytes."""
    try:
        with closing(sqlite3.connect(f'{Path(path).as_uri()}?mode=rw', uri=True,
                                     isolation_level=None, timeout=1.0)) as db:
            db.execute('PRAGMA secure_delete = ON')
            db.execute('BEGIN IMMEDIATE')
            for template_id, source in db.execute(
                    'SELECT template_id, source FROM templates').fetchall():
                if _names_a_photo(source):
                    db.execute('UPDATE templates SET source = ? WHERE template_id = ?',
                               (MIGRATED_SOURCE, template_id))
            db.execute('COMMIT')
            db.execute('VACUUM')
            db.execute('PRAGMA journal_mode = WAL')
    except sqlite3.Error as error:
        raise GalleryError(f'cannot rewrite gallery {path}: {error}')


def _read_for_migration(path, key):
    """Read every row of a gallery to migrate; refuse one open elsewhere or already done."""
    if not os.path.isfile(path):
        raise GalleryError(f'no gallery at {path}')
    try:
        with closing(sqlite3.connect(f'{Path(path).as_uri()}?mode=rw', uri=True,
                                     isolation_level=None, timeout=1.0)) as db:
            try:
                # Folds the write-ahead log into the file; SQLite refuses while another
                # connection is open, and a rename under a running writer would lose its write.
                db.execute('PRAGMA journal_mode = DELETE')
            except sqlite3.OperationalError as error:
                raise GalleryError(f'gallery {path} is open elsewhere ({error}): stop '
                                   'face_id_node and any enrolment, then migrate')
            if 'meta' not in _table_names(db):
                raise GalleryError(f'{path} is not a face_id_ros gallery (no meta table)')
            source = dict(db.execute('SELECT key, value FROM meta'))
            masked = 'masked' if source.get('schema_version') == SCHEMA_VERSION else '0'
            source['patients'] = db.execute('SELECT patient_id, created FROM patients'
                                            ).fetchall()
            source['templates'] = db.execute(
                'SELECT template_id, patient_id, embedding, enrolled, source, quality, image, '
                f'{masked} FROM templates ORDER BY template_id').fetchall()
    except sqlite3.Error as error:
        raise GalleryError(f'cannot read gallery {path}: {error}')
    schema, encryption = source.get('schema_version'), source.get('encryption', UNENCRYPTED)
    if schema not in (1, SCHEMA_VERSION):
        raise GalleryError(f'gallery {path} has schema version {schema}; migrate reads '
                           f'versions 1 and {SCHEMA_VERSION}')
    source['current'] = schema == SCHEMA_VERSION and (encryption != UNENCRYPTED or key is None)
    if source['current'] and not any(_names_a_photo(row[4]) for row in source['templates']):
        state = 'encrypted' if encryption != UNENCRYPTED else 'unencrypted, as asked'
        raise GalleryError(f'gallery {path} is already schema {schema} and {state}, and '
                           'names no photo: nothing to migrate')
    return source


def _check_copy(gallery, source):
    """Raise GalleryError unless the migrated gallery holds exactly the source's templates."""
    snapshot = gallery.snapshot()
    rows = sorted(source['templates'], key=lambda row: (row[1], row[0]))
    expected = np.array([gallery._decode(row[2]) for row in rows], np.float32).reshape(
        len(rows), gallery.embedding_size)
    if (snapshot.revision != source['revision']
            or list(snapshot.patient_ids[snapshot.owners]) != [row[1] for row in rows]
            or not np.array_equal(snapshot.templates, expected)
            or list(snapshot.masked) != [bool(row[7]) for row in rows]):
        raise GalleryError(f'gallery {gallery.path}: the migrated copy does not read back as '
                           'the original; the original is left as it was')


def _fsync(path):
    """Flush a file's or a folder's entry to disk, so a rename survives a power cut."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _encoded_png(image, where):
    """Return a face crop (BGR array) or already encoded bytes as bytes to store."""
    if image is None or isinstance(image, (bytes, bytearray, memoryview)):
        return image
    ok, encoded = cv2.imencode('.png', np.asarray(image)) if np.ndim(image) == 3 else (False, None)
    if not ok:
        raise GalleryError(f'{where}: images must be BGR crops or encoded bytes')
    return encoded.tobytes()


def _create_owner_only(path):
    """Create an empty gallery file (and its folder) only its owner can read, if missing."""
    # SQLite gives the write-ahead log and shared-memory files the database's mode.
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as error:
        raise GalleryError(f'cannot create gallery {path}: {error.strerror}')


def _table_names(db):
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def normalised_rows(embeddings, size, where):
    """Return float32 (N, size) L2-normalised rows; raise GalleryError on bad input."""
    array = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    if array.ndim != 2 or array.shape[1] != size or not len(array):
        raise GalleryError(f'{where}: expected embeddings of shape (N, {size}), got '
                           f'{np.shape(embeddings)}')
    if not np.all(np.isfinite(array)):
        raise GalleryError(f'{where}: embeddings contain NaN or infinity')
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise GalleryError(f'{where}: an embedding is all zeros')
    return (array / norms).astype(np.float32)
