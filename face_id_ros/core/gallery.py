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
metadata, a revision that every committed write bumps, and the fingerprint of the model
that made the embeddings; a gallery made by another model is refused, never mixed. The
file runs in WAL mode, so a node can read while an enrolment tool writes and never sees
half a write. Matching works on an immutable :class:`GallerySnapshot`, so a reload swaps
one object.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
import os
from pathlib import Path
import re
import sqlite3
import threading
import time

import cv2
from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.errors import GalleryError
import numpy as np

SCHEMA_VERSION = 1
DEFAULT_ID_PATTERN = GalleryConfig.id_pattern
BUSY_TIMEOUT_MS = 5000

SCHEMA = (
    # No type on meta.value: revision stays an integer, the fingerprint text.
    'CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)',
    'CREATE TABLE patients (patient_id TEXT PRIMARY KEY, created REAL NOT NULL)',
    'CREATE TABLE templates ('
    ' template_id INTEGER PRIMARY KEY AUTOINCREMENT,'
    ' patient_id TEXT NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,'
    ' embedding BLOB NOT NULL, enrolled REAL NOT NULL, source TEXT NOT NULL,'
    ' quality REAL NOT NULL, image BLOB)',
    'CREATE INDEX templates_by_patient ON templates(patient_id)',
)


@dataclass(frozen=True)
class GallerySnapshot:
    """
    An immutable view of one gallery revision, laid out for vectorised matching.

    ``templates`` is (T, D) float32 with L2-normalised rows, grouped by patient in the
    order of ``patient_ids``; ``owners[t]`` is the index in ``patient_ids`` of template
    ``t``'s patient. Every patient has at least one template.
    """

    revision: int
    patient_ids: np.ndarray
    templates: np.ndarray
    owners: np.ndarray

    def __post_init__(self):
        """Check the layout the matcher relies on and freeze the arrays."""
        owners = self.owners
        if len(owners) != len(self.templates) or self.templates.ndim != 2:
            raise GalleryError('snapshot: templates and owners do not line up')
        expected = np.arange(len(self.patient_ids))
        if len(owners) and (np.any(np.diff(owners) < 0)
                            or not np.array_equal(np.unique(owners), expected)):
            raise GalleryError('snapshot: templates are not grouped by patient')
        if not len(owners) and len(self.patient_ids):
            raise GalleryError('snapshot: patients without templates')
        for array in (self.patient_ids, self.templates, self.owners):
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


class Gallery:
    """A SQLite gallery bound to one embedding model; open it with :meth:`open`."""

    def __init__(self, connection, path, model_fingerprint, embedding_size, id_pattern,
                 store_images):
        """Wrap an open, checked connection; use :meth:`open` instead."""
        self._db = connection
        self._lock = threading.RLock()
        self._depth = 0
        self.path = path
        self.model_fingerprint = model_fingerprint
        self.embedding_size = embedding_size
        self.id_pattern = id_pattern
        self.store_images = store_images

    @classmethod
    def open(cls, path, model_fingerprint, embedding_size, create=True,  # noqa: A003
             id_pattern=DEFAULT_ID_PATTERN, store_images=False):
        """
        Open (or create) the gallery at ``path`` for one model; raise GalleryError.

        The gallery must have been made by the model with ``model_fingerprint`` and
        ``embedding_size``; a new file is stamped with them. ``id_pattern`` is the regular
        expression patient ids must match; ``store_images`` keeps face crops passed to
        writes (otherwise they are dropped).
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
            os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = 'rwc' if create else 'rw'
        try:
            connection = sqlite3.connect(f'{Path(path).as_uri()}?mode={mode}', uri=True,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise GalleryError(f'cannot open gallery {path}: {error}')
        gallery = cls(connection, path, model_fingerprint, embedding_size, pattern,
                      store_images)
        try:
            gallery._prepare(create)
        except BaseException:
            connection.close()
            raise
        return gallery

    @classmethod
    def from_config(cls, config, model_fingerprint, embedding_size, create=True):
        """Open the gallery a :class:`GalleryConfig` describes."""
        return cls.open(config.path, model_fingerprint, embedding_size, create=create,
                        id_pattern=config.id_pattern, store_images=config.store_images)

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
                'schema_version': self._meta(db, 'schema_version'),
            }
        return self._read(query)

    def list_patients(self):
        """Return a :class:`PatientRecord` per patient, sorted by id."""
        def query(db):
            enrolled = {}
            for patient_id, stamp in db.execute(
                    'SELECT patient_id, enrolled FROM templates ORDER BY enrolled'):
                enrolled.setdefault(patient_id, []).append(stamp)
            return [PatientRecord(patient_id, created, len(enrolled.get(patient_id, ())),
                                  tuple(enrolled.get(patient_id, ())))
                    for patient_id, created in db.execute(
                        'SELECT patient_id, created FROM patients ORDER BY patient_id')]
        return self._read(query)

    def snapshot(self):
        """Read one consistent revision into a :class:`GallerySnapshot`."""
        def query(db):
            revision = self._meta(db, 'revision')
            rows = db.execute('SELECT patient_id, embedding FROM templates '
                              'ORDER BY patient_id, template_id').fetchall()
            return revision, rows
        revision, rows = self._read(query)
        patient_ids = sorted({patient_id for patient_id, _ in rows})
        index = {patient_id: position for position, patient_id in enumerate(patient_ids)}
        templates = np.zeros((len(rows), self.embedding_size), np.float32)
        for row, (_, blob) in enumerate(rows):
            templates[row] = self._decode(blob)
        owners = np.array([index[patient_id] for patient_id, _ in rows], np.int64)
        return GallerySnapshot(revision, np.array(patient_ids, dtype=str).reshape(-1),
                               templates, owners)

    # Writing.

    @contextmanager
    def batch(self):
        """
        Group several writes into one transaction and one revision bump.

        Other connections see all of the batch or none of it; an exception inside the
        block rolls it back and propagates. Batches nest: an inner one that fails rolls
        back only its own part.
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

    def add_templates(self, patient_id, embeddings, sources, qualities, images=None,
                      replace=False):
        """
        Add templates (enrolling the patient if new); return the new revision.

        ``embeddings`` is (N, D) or (D,); each row is renormalised. ``sources`` and
        ``qualities`` give one string and one number per row; ``images`` optionally one
        encoded crop (bytes) per row, stored only when the gallery stores images.
        ``replace`` first removes the patient's old templates, in the same transaction.
        """
        self._check_patient_id(patient_id)
        embeddings = normalised_rows(embeddings, self.embedding_size,
                                     f'gallery {self.path}: {patient_id}')
        count = len(embeddings)
        sources, qualities, images = self._template_metadata(
            patient_id, count, sources, qualities, images)
        now = time.time()
        with self.batch():
            self._execute('INSERT OR IGNORE INTO patients VALUES (?, ?)', (patient_id, now))
            if replace:
                self._execute('DELETE FROM templates WHERE patient_id = ?', (patient_id,))
            rows = zip(embeddings, sources, qualities, images)
            for embedding, source, quality, image in rows:
                self._execute(
                    'INSERT INTO templates (patient_id, embedding, enrolled, source, quality,'
                    ' image) VALUES (?, ?, ?, ?, ?, ?)',
                    (patient_id, embedding.astype('<f4').tobytes(), now, source, quality,
                     image))
            return self.revision

    def remove_patient(self, patient_id):
        """Remove a patient and all their templates; return the new revision."""
        with self.batch():
            removed = self._execute('DELETE FROM patients WHERE patient_id = ?',
                                    (patient_id,)).rowcount
            if not removed:
                raise GalleryError(f'gallery {self.path}: no patient {patient_id!r}')
            return self.revision

    # Internals.

    def _prepare(self, create):
        """Set up WAL, create the schema in a new file, and check the model stamp."""
        self._execute(f'PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}')
        self._execute('PRAGMA foreign_keys = ON')
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
                    self._execute('INSERT INTO meta VALUES (?, ?), (?, ?), (?, ?), (?, ?)',
                                  ('schema_version', SCHEMA_VERSION,
                                   'model_fingerprint', self.model_fingerprint,
                                   'embedding_size', self.embedding_size,
                                   'revision', 0))
                self._execute('COMMIT')
            except BaseException:
                self._db.rollback()
                raise

    def _check_stamp(self, db):
        if 'meta' not in _table_names(db):
            raise GalleryError(f'{self.path} is not a face_id_ros gallery (no meta table)')
        schema = self._meta(db, 'schema_version')
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
            except sqlite3.Error as error:
                raise GalleryError(f'cannot read gallery {self.path}: {error}')
            finally:
                self._db.rollback()

    def _execute(self, statement, parameters=()):
        try:
            return self._db.execute(statement, parameters)
        except sqlite3.Error as error:
            raise GalleryError(f'gallery {self.path}: {error}')

    def _decode(self, blob):
        embedding = np.frombuffer(blob, '<f4')
        norm = np.linalg.norm(embedding)
        if embedding.size != self.embedding_size or not np.isfinite(norm) or norm == 0:
            raise GalleryError(f'gallery {self.path} is damaged: a template is not '
                               f'{self.embedding_size} finite numbers')
        return embedding / norm

    def _check_patient_id(self, patient_id):
        if not isinstance(patient_id, str) or not self.id_pattern.fullmatch(patient_id):
            raise GalleryError(
                f'patient id {patient_id!r} does not match the pseudonymous pattern '
                f'{self.id_pattern.pattern!r}; the gallery stores pseudonymous ids such as '
                'P-0042, never names')

    def _template_metadata(self, patient_id, count, sources, qualities, images):
        """Check there is one source, quality (and image) per template."""
        where = f'gallery {self.path}: {patient_id}'
        sources = list(sources)
        qualities = [float(quality) for quality in qualities]
        images = [None] * count if images is None else list(images)
        if not len(sources) == len(qualities) == len(images) == count:
            raise GalleryError(f'{where}: {count} embeddings need as many sources, '
                               f'qualities and images, got {len(sources)}, '
                               f'{len(qualities)} and {len(images)}')
        if not all(isinstance(source, str) for source in sources):
            raise GalleryError(f'{where}: template sources must be text')
        if not all(np.isfinite(qualities)):
            raise GalleryError(f'{where}: template qualities must be finite numbers')
        if not self.store_images:
            return sources, qualities, [None] * count
        return sources, qualities, [_encoded_png(image, where) for image in images]


def _encoded_png(image, where):
    """Return a face crop (BGR array) or already encoded bytes as bytes to store."""
    if image is None or isinstance(image, (bytes, bytearray, memoryview)):
        return image
    ok, encoded = cv2.imencode('.png', np.asarray(image)) if np.ndim(image) == 3 else (False, None)
    if not ok:
        raise GalleryError(f'{where}: images must be BGR crops or encoded bytes')
    return encoded.tobytes()


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
