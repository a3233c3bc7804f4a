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
The server gallery's schema and connections: created and upgraded by ``face-id gallery migrate``.

:func:`migrate_server` creates the schema ``face_id`` (meta, revision, patients, templates and
the append-only audit table) in the database a URL names, or upgrades an older one in place
(each version's steps in turn), in one transaction under an advisory lock, and stamps a new one
with the model and a key check value (never the key). :func:`opened_cipher` checks an existing
one against the model and the key.
:func:`connect` opens connections with libpq's conventions (``PGPASSFILE``, ``sslmode``,
``sslrootcert``) and says in one line why it could not; the driver, psycopg 3, is imported
only here and only when a server gallery is used.
"""

import base64
import time
import uuid

from face_id_ros.core.enrolment import PHOTO_SOURCE_PREFIXES
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery_crypto import ALGORITHM, TemplateCipher

SERVER_SCHEMA_VERSION = 2
CONNECT_TIMEOUT_S = 5
# The only template source a server stores: a photo's digest keyed with the gallery key.
SERVER_SOURCE_PATTERN = PHOTO_SOURCE_PREFIXES[0] + '[0-9a-f]{64}'
DRIVER_MISSING = ('gallery.url needs the PostgreSQL driver psycopg 3, which is not installed: '
                  'pip install "psycopg[binary]" (or apt install python3-psycopg)')

# What takes a schema from the version before to each version, run by migrate_server in one
# transaction. Version 1: the tables; the audit table refuses UPDATE, DELETE and TRUNCATE by
# trigger, so rows are only ever appended. Version 2: each template's source, the keyed digest
# of the photo it came from (HMAC-SHA256 with the gallery key: it names nobody) or NULL, so
# the same photo enrolled twice is one template as in a SQLite gallery; the check refuses any
# other text (a photo's name) at the server itself. Templates written before have none.
SCHEMA_STEPS = {
    1: (
        'CREATE SCHEMA IF NOT EXISTS face_id',
        'CREATE TABLE face_id.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)',
        'CREATE TABLE face_id.revision (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE'
        ' CHECK (only_row), revision BIGINT NOT NULL, changed DOUBLE PRECISION NOT NULL)',
        'CREATE TABLE face_id.patients (patient_id TEXT PRIMARY KEY,'
        ' created DOUBLE PRECISION NOT NULL, revision BIGINT NOT NULL)',
        'CREATE TABLE face_id.templates ('
        ' template_id BIGSERIAL PRIMARY KEY,'
        ' patient_id TEXT NOT NULL REFERENCES face_id.patients ON DELETE CASCADE,'
        ' revision BIGINT NOT NULL, embedding BYTEA NOT NULL,'
        ' enrolled DOUBLE PRECISION NOT NULL, quality REAL NOT NULL, image BYTEA,'
        ' masked BOOLEAN NOT NULL DEFAULT FALSE)',
        'CREATE INDEX templates_by_patient ON face_id.templates (patient_id)',
        'CREATE TABLE face_id.audit ('
        ' entry_id BIGSERIAL PRIMARY KEY, revision BIGINT NOT NULL,'
        ' at TIMESTAMPTZ NOT NULL DEFAULT now(), operator TEXT NOT NULL,'
        ' database_user TEXT NOT NULL DEFAULT session_user,'
        " action TEXT NOT NULL CHECK (action IN ('enrol', 'add', 'replace', 'erase')),"
        ' patient_id TEXT NOT NULL, templates INTEGER NOT NULL)',
        'CREATE INDEX audit_by_revision ON face_id.audit (revision)',
        'CREATE FUNCTION face_id.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS'
        " $$BEGIN RAISE EXCEPTION 'face_id.audit is append-only'; END$$",
        'CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON face_id.audit'
        ' FOR EACH STATEMENT EXECUTE FUNCTION face_id.refuse_audit_change()',
    ),
    2: (
        'ALTER TABLE face_id.templates ADD COLUMN source TEXT'
        f" CONSTRAINT source_is_a_keyed_digest CHECK (source ~ '^{SERVER_SOURCE_PATTERN}$')",
    ),
}
# Serialises concurrent `face-id gallery migrate` runs (any number; pg_advisory_xact_lock).
MIGRATE_LOCK = 0x66616365


def driver():
    """Return the psycopg module; raise GalleryError with the package to install."""
    try:
        import psycopg
    except ImportError:
        raise GalleryError(DRIVER_MISSING)
    return psycopg


def connect(url, autocommit=True):
    """Open a psycopg connection to ``url``; raise GalleryError saying why not."""
    psycopg = driver()
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name='face_id_ros')
    except psycopg.Error as error:
        raise GalleryError(f'cannot reach gallery server {display_url(url)}: '
                           f'{one_line(error)}')


def display_url(url):
    """Return the URL for messages: without query parameters (certificate paths and such)."""
    return url.split('?', 1)[0]


def one_line(error):
    """Return a driver error's message on one line."""
    return ' '.join(str(error).split()) or type(error).__name__


def migrate_server(url, key, model_fingerprint, embedding_size):
    """
    Create the server gallery's schema, or upgrade it; return a summary dict.

    A new schema is stamped with the model and the key (a key check value, never the key);
    an existing one must carry the same model and open with ``key``. Runs in one
    transaction under an advisory lock, so concurrent runs and a crash leave a whole schema.
    """
    if key is None:
        raise GalleryError(f'gallery {display_url(url)}: a server gallery is always encrypted: '
                           'give the key (FACE_ID_GALLERY_KEY or gallery.key_file)')
    psycopg = driver()
    with connect(url) as db:
        try:
            with db.transaction():
                db.execute('SELECT pg_advisory_xact_lock(%s)', (MIGRATE_LOCK,))
                exists = db.execute("SELECT to_regclass('face_id.meta')").fetchone()[0]
                version = int(read_meta(db)['schema_version']) if exists else 0
                if version > SERVER_SCHEMA_VERSION:
                    raise GalleryError(f'gallery {display_url(url)} has schema version '
                                       f'{version}, newer than this software '
                                       f'({SERVER_SCHEMA_VERSION}): upgrade face_id_ros')
                for step in range(version + 1, SERVER_SCHEMA_VERSION + 1):
                    for statement in SCHEMA_STEPS[step]:
                        db.execute(statement)
                if not version:
                    _stamp(db, key, model_fingerprint, embedding_size)
                db.execute("UPDATE face_id.meta SET value = %s WHERE key = 'schema_version'",
                           (str(SERVER_SCHEMA_VERSION),))
                opened_cipher(db, display_url(url), model_fingerprint, embedding_size, key)
                revision = read_revision(db)
                patients, templates = db.execute(
                    'SELECT (SELECT COUNT(*) FROM face_id.patients),'
                    ' (SELECT COUNT(*) FROM face_id.templates)').fetchone()
        except psycopg.Error as error:
            raise GalleryError(f'cannot migrate gallery {display_url(url)}: '
                               f'{one_line(error)}')
    return {'path': display_url(url), 'from_schema': version,
            'to_schema': SERVER_SCHEMA_VERSION, 'revision': revision, 'patients': patients,
            'templates': templates, 'encryption': ALGORITHM}


def _stamp(db, key, model_fingerprint, embedding_size):
    """Write the meta rows of a new server gallery and its revision row."""
    gallery_id = uuid.uuid4().hex
    key_check = TemplateCipher(key, gallery_id).key_check()
    rows = [('schema_version', '0'), ('model_fingerprint', model_fingerprint),
            ('embedding_size', str(int(embedding_size))), ('gallery_id', gallery_id),
            ('encryption', ALGORITHM),
            ('key_check', base64.b64encode(key_check).decode('ascii'))]
    with db.cursor() as cursor:
        cursor.executemany('INSERT INTO face_id.meta VALUES (%s, %s)', rows)
    db.execute('INSERT INTO face_id.revision (revision, changed) VALUES (0, %s)',
               (time.time(),))


def read_meta(db):
    return dict(db.execute('SELECT key, value FROM face_id.meta').fetchall())


def read_revision(db):
    return db.execute('SELECT revision FROM face_id.revision').fetchone()[0]


def opened_cipher(db, where, model_fingerprint, embedding_size, key):
    """Check the schema version, the model stamp and the key; return the cipher."""
    if not db.execute("SELECT to_regclass('face_id.meta')").fetchone()[0]:
        raise GalleryError(f'gallery {where} has no face_id schema: create it once with '
                           '`face-id gallery migrate` (with gallery.url set)')
    meta = read_meta(db)
    schema = int(meta.get('schema_version', 0))
    if schema != SERVER_SCHEMA_VERSION:
        raise GalleryError(f'gallery {where} has schema version {schema}; this software '
                           f'reads version {SERVER_SCHEMA_VERSION}: run `face-id gallery '
                           'migrate`')
    fingerprint, size = meta['model_fingerprint'], int(meta['embedding_size'])
    if fingerprint != model_fingerprint or size != embedding_size:
        raise GalleryError(
            f'gallery {where} was made by model {fingerprint!r} (embedding size {size}), but '
            f'the loaded model is {model_fingerprint!r} (embedding size {embedding_size}); '
            're-enrol with this model or use its gallery')
    cipher = TemplateCipher(key, meta['gallery_id'])
    if not cipher.opens(base64.b64decode(meta['key_check'])):
        raise GalleryError(f'gallery {where} was encrypted with another key: the '
                           f'{key.source} does not open it')
    return cipher
