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

"""Fuzz targets of gallery files, plain and encrypted, read through ``Gallery.open``."""

from pathlib import Path
import sqlite3

from face_id_ros.evaluation.fuzz.mutation import mutate_bytes
import numpy as np


GALLERY_FINGERPRINT = 'f' * 64
GALLERY_SIZE = 16
SQL_VALUES = (0, 1, 2, -1, 16, 2 ** 63 - 1, 0.5, float('nan'), None, '', '1', 'x' * 1000,
              b'', b'\x00' * 3, b'\x00' * 64, b'\x00\x00\x80\x7f' * 16, bytes(range(64)),
              'P-0001', "P-0001'; DROP TABLE x; --", 1e308, GALLERY_FINGERPRINT, 'ffff')


def gallery_key():
    """Return the fixed key of the encrypted seed galleries (None where encryption is absent)."""
    try:
        from face_id_ros.core.gallery_crypto import GalleryKey
    except ImportError:  # pragma: no cover - a gallery without encryption
        return None
    return GalleryKey(bytes(range(32)), 'the fuzzing key')


def build_gallery_seeds(workdir):
    """Real gallery files, made through ``Gallery.open`` and its writes only (plain, keyed)."""
    from face_id_ros.core.gallery import Gallery
    seeds = []
    rng = np.random.default_rng(0)
    key = gallery_key()
    layouts = ((3, False, None), (1, True, None), (0, False, None), (3, False, key),
               (1, True, key))
    for index, (patients, images, use_key) in enumerate(layouts):
        if use_key is None and index >= 3:
            continue
        path = Path(workdir) / f'seed_gallery_{index}.db'
        options = {'key': use_key} if use_key is not None else {}
        with Gallery.open(path, GALLERY_FINGERPRINT, GALLERY_SIZE, create=True,
                          store_images=images, **options) as gallery:
            for number in range(patients):
                crops = [np.full((8, 8, 3), 40 * number, np.uint8)] * 2 if images else None
                gallery.add_templates(f'P-{number + 1:04d}',
                                      rng.normal(size=(2, GALLERY_SIZE)), ['seed', 'seed'],
                                      [0.9, 0.8], images=crops)
        seeds.append({'data': path.read_bytes(), 'keyed': use_key is not None})
        for suffix in ('', '-wal', '-shm'):
            Path(f'{path}{suffix}').unlink(missing_ok=True)
    return seeds


def mutate_gallery_sql(rng, data, workdir):
    """Change a gallery as SQL: any cell, row or table, found by reading the file's own schema."""
    path = Path(workdir) / 'mutate.db'
    path.write_bytes(data)
    try:
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute('PRAGMA journal_mode = DELETE')
            tables = [row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'sqlite_%'")]
            for _ in range(1 + int(rng.expovariate(1.0))):
                if not tables:
                    break
                table = rng.choice(tables)
                columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
                operation = rng.randrange(8)
                if operation < 4:  # one cell to a value of any SQLite type
                    rows = [row[0] for row in db.execute(f'SELECT rowid FROM "{table}"')]
                    if rows and columns:
                        db.execute(f'UPDATE OR IGNORE "{table}" SET "{rng.choice(columns)}" = ? '
                                   'WHERE rowid = ?', (rng.choice(SQL_VALUES), rng.choice(rows)))
                elif operation == 4:
                    db.execute(f'DELETE FROM "{table}" WHERE rowid IN (SELECT rowid FROM '
                               f'"{table}" ORDER BY random() LIMIT 1)')
                elif operation == 5:  # a newer schema: an added column or table
                    if rng.random() < 0.5:
                        db.execute(f'ALTER TABLE "{table}" ADD COLUMN added_{rng.randrange(99)}'
                                   ' BLOB')
                    else:
                        db.execute(f'CREATE TABLE IF NOT EXISTS newer_{rng.randrange(9)} '
                                   '(x BLOB)')
                elif operation == 6:
                    db.execute(f'DROP TABLE "{table}"')
                    tables.remove(table)
                elif columns:
                    db.execute(f'INSERT OR IGNORE INTO "{table}" ({", ".join(columns)}) VALUES '
                               f'({", ".join("?" * len(columns))})',
                               [rng.choice(SQL_VALUES) for _ in columns])
        finally:
            db.close()
        return path.read_bytes()
    except (sqlite3.Error, UnicodeDecodeError, ValueError, OverflowError):  # not SQLite: bytes
        return mutate_bytes(rng, data)
    finally:
        path.unlink(missing_ok=True)


def generate_gallery(rng, seeds, workdir):
    """Return a gallery case: the file's bytes (truncated, flipped, edited as SQL) and a mode."""
    seed = rng.choice(seeds)
    data = seed['data']
    mode = rng.randrange(10)
    if mode < 4:
        data = mutate_gallery_sql(rng, data, workdir)
    elif mode < 6:  # truncated, at a page boundary or anywhere
        page = 4096
        cut = rng.choice((0, 1, 15, 16, 99, 100, page - 1, page, 2 * page, 3 * page,
                          rng.randint(0, len(data))))
        data = data[:cut]
    elif mode < 8:  # the header or the b-tree pages
        position = rng.choice((rng.randrange(100), rng.randrange(len(data))))
        data = bytearray(data)
        for _ in range(1 + int(rng.expovariate(1.0))):
            data[min(position, len(data) - 1)] = rng.randrange(256)
            position = rng.randrange(len(data))
        data = bytes(data)
    else:
        data = mutate_bytes(rng, data, [item['data'] for item in seeds], max_ops=3)
    if rng.random() < 0.3:
        data = mutate_gallery_sql(rng, data, workdir)
    return {'data': data, 'create': rng.random() < 0.3,
            'keyed': seed['keyed'] if rng.random() < 0.9 else not seed['keyed'],
            'wal': bytes(rng.randrange(256) for _ in range(rng.choice((32, 4128))))
            if rng.random() < 0.05 else None}


def run_gallery(case, workdir):
    """Open a gallery file through ``Gallery.open`` and read everything it lists."""
    from face_id_ros.core.gallery import Gallery
    path = Path(workdir) / 'gallery.db'
    for suffix in ('-wal', '-shm', '-journal'):
        Path(f'{path}{suffix}').unlink(missing_ok=True)
    path.write_bytes(case['data'])
    if case.get('wal'):
        Path(f'{path}-wal').write_bytes(case['wal'])
    options = {'key': gallery_key()} if case.get('keyed') else {}
    with Gallery.open(path, GALLERY_FINGERPRINT, GALLERY_SIZE, create=case['create'],
                      **options) as gallery:
        info = gallery.info()
        snapshot = gallery.snapshot()
        patients = gallery.list_patients()
        ids = gallery.patient_ids()
        revision = gallery.revision
    assert snapshot.templates.shape[1] == GALLERY_SIZE
    assert np.all(np.isfinite(snapshot.templates))
    assert len(patients) == len(ids) == info['patients'], (info, ids)
    return revision
