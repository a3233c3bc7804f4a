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
The hospital's gallery on a real PostgreSQL server: the same interface as the SQLite file.

Every test runs against a throw-away server on loopback (``postgres_cluster`` in
conftest.py), in a database of its own; the tests skip, saying why, where the PostgreSQL
binaries or the psycopg driver are absent (the ROS CI images). The raw-table checks read the
server the way its administrator could, as the superuser.
"""

import os
import subprocess
import sys

import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import GalleryConfig, PipelineConfig
from face_id_ros.core.errors import ConfigError, GalleryError
from face_id_ros.core.galleries import open_gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key
from face_id_ros.core.gallery_postgres import PostgresGallery
from face_id_ros.core.gallery_server_schema import DRIVER_MISSING, migrate_server
import numpy as np
import pytest

SIZE = 16
MODEL = 'pruned-mnv2/1.0/sha256:1f2e'


def key(text=None):
    return parse_key(text or new_key_text(), 'test key')


def unit_rows(seed, count):
    rows = np.random.default_rng(seed).normal(size=(count, SIZE))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def gallery_key():
    return key()


@pytest.fixture
def server(server_url, gallery_key):
    migrate_server(server_url, gallery_key, MODEL, SIZE)
    with PostgresGallery.open(server_url, MODEL, SIZE, gallery_key, operator='desk 1',
                              store_images=True) as gallery:
        yield gallery


def raw_rows(postgres_cluster, server_url):
    """Every row of every table of the face_id schema, as the superuser reads them."""
    import psycopg
    database = server_url.rsplit('/', 1)[1]
    url = postgres_cluster.admin_url.replace('/face_id?', f'/{database}?')
    with psycopg.connect(url) as db:
        tables = [row[0] for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'face_id'")]
        return {table: db.execute(f'SELECT * FROM face_id.{table}').fetchall()
                for table in tables}


def as_bytes(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode('utf-8')


def test_the_schema_is_made_by_migrate_only_and_binds_model_and_key(server_url, gallery_key):
    with pytest.raises(GalleryError, match='no face_id schema.*face-id gallery migrate'):
        PostgresGallery.open(server_url, MODEL, SIZE, gallery_key)
    first = migrate_server(server_url, gallery_key, MODEL, SIZE)
    assert (first['from_schema'], first['to_schema'], first['revision']) == (0, 2, 0)
    assert migrate_server(server_url, gallery_key, MODEL, SIZE)['from_schema'] == 2
    with pytest.raises(GalleryError, match='made by model .*re-enrol with this model'):
        PostgresGallery.open(server_url, 'another-model', SIZE, gallery_key)
    with pytest.raises(GalleryError, match='encrypted with another key'):
        PostgresGallery.open(server_url, MODEL, SIZE, key())
    with pytest.raises(GalleryError, match='always encrypted'):
        PostgresGallery.open(server_url, MODEL, SIZE, None)


def test_writes_reads_and_revisions_work_as_with_sqlite(server):
    assert server.revision == 0 and server.snapshot().revision == 0
    first = unit_rows(1, 3)
    assert server.add_templates('P-0001', first, ['a.jpg'] * 3, [0.9, 0.8, 0.7],
                                masked=[True, False, False]) == 1
    assert server.add_templates('P-0002', unit_rows(2, 2), ['b.jpg'] * 2, [1.0, 1.0]) == 2
    snapshot = server.snapshot()
    assert snapshot.revision == 2 and list(snapshot.patient_ids) == ['P-0001', 'P-0002']
    assert np.allclose(snapshot.templates[:3], first) and list(snapshot.owners) == [0, 0, 0, 1, 1]
    assert list(snapshot.masked) == [True, False, False, False, False]
    records = server.list_patients()
    assert [(r.patient_id, r.template_count, r.masked_count) for r in records] == [
        ('P-0001', 3, 1), ('P-0002', 2, 0)]
    info = server.info()
    assert (info['patients'], info['templates'], info['masked_templates']) == (2, 5, 1)
    assert info['encryption'] == 'aes-256-gcm' and info['model_fingerprint'] == MODEL
    # replace, a failed batch that changes nothing, and erasure
    assert server.add_templates('P-0001', unit_rows(3, 1), ['c.jpg'], [0.5], replace=True) == 3
    with pytest.raises(RuntimeError):
        with server.batch():
            server.add_templates('P-0003', unit_rows(4, 1), ['d.jpg'], [0.5])
            raise RuntimeError('operator cancelled')
    assert server.revision == 3 and server.patient_ids() == ['P-0001', 'P-0002']
    assert server.remove_patient('P-0002') == 4
    with pytest.raises(GalleryError, match="no patient 'P-0002'"):
        server.remove_patient('P-0002')
    with pytest.raises(GalleryError, match='pseudonymous pattern'):
        server.add_templates('Jane Doe', unit_rows(5, 1), ['e.jpg'], [0.5])
    with pytest.raises(GalleryError, match=r'expected embeddings of shape \(N, 16\)'):
        server.add_templates('P-0004', np.ones((1, 8)), ['f.jpg'], [0.5])
    snapshot = server.snapshot()
    assert list(snapshot.patient_ids) == ['P-0001'] and len(snapshot.templates) == 1


def test_the_server_tables_hold_no_template_crop_or_photo_name(
        server, server_url, postgres_cluster, portrait):
    embeddings = unit_rows(7, 2)
    crop = cv2.resize(portrait, (112, 112))
    server.add_templates('P-0007', embeddings, ['/photos/Jane_Doe_admission.jpg'] * 2,
                         [0.9, 0.9], images=[crop, crop])
    server.add_templates('P-0008', unit_rows(8, 1), ['/photos/John_Roe.jpg'], [0.9])
    server.remove_patient('P-0008')
    tables = raw_rows(postgres_cluster, server_url)
    assert {'meta', 'revision', 'patients', 'templates', 'audit'} <= set(tables)
    cells = [as_bytes(cell) for rows in tables.values() for row in rows for cell in row]
    everything = b'\x00'.join(cells)
    for embedding in embeddings:
        raw = embedding.astype('<f4').tobytes()
        assert raw not in everything and raw[:16] not in everything
        assert embedding.astype('<f8').tobytes()[:16] not in everything
    png = cv2.imencode('.png', crop)[1].tobytes()
    assert png[:64] not in everything and b'\x89PNG' not in everything
    for name in (b'Jane_Doe', b'John_Roe', b'admission', b'.jpg'):
        assert name not in everything
    # What is there: pseudonymous ids, ciphertext, and the audit trail of both patients.
    assert b'P-0007' in everything and b'P-0008' in everything
    assert len(tables['templates']) == 2


def test_the_audit_trail_is_append_only_and_survives_erasure(server, server_url):
    server.add_templates('P-0001', unit_rows(1, 2), ['a', 'b'], [1, 1])
    server.add_templates('P-0001', unit_rows(2, 1), ['c'], [1])
    server.add_templates('P-0001', unit_rows(3, 1), ['d'], [1], replace=True)
    server.remove_patient('P-0001')
    entries = server.audit()
    assert [(e.revision, e.action, e.patient_id, e.templates, e.operator) for e in entries] == [
        (1, 'enrol', 'P-0001', 2, 'desk 1'), (2, 'add', 'P-0001', 1, 'desk 1'),
        (3, 'replace', 'P-0001', 1, 'desk 1'), (4, 'erase', 'P-0001', 1, 'desk 1')]
    assert {entry.database_user for entry in entries} == {'face_id'}
    import psycopg
    with psycopg.connect(server_url, autocommit=True) as db:
        for statement in ('UPDATE face_id.audit SET operator = %s', 'DELETE FROM face_id.audit',
                          'TRUNCATE face_id.audit'):
            with pytest.raises(psycopg.errors.RaiseException, match='append-only'):
                db.execute(statement, ('someone else',) if '%s' in statement else ())
    assert len(server.audit()) == 4


def test_desk_commands_migrate_enrol_list_erase_and_audit_on_the_server(
        server_url, tiny_model, portrait, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, new_key_text())
    common = ['--gallery-url', server_url, '--model', str(tiny_model)]
    assert main(['gallery', 'list'] + common) == 2
    assert 'face-id gallery migrate' in capsys.readouterr().err
    assert main(['gallery', 'migrate'] + common) == 0
    assert 'schema 0 -> 2, aes-256-gcm: revision 0' in capsys.readouterr().out
    photo = tmp_path / 'photos' / 'P-0001' / 'admission.jpg'
    photo.parent.mkdir(parents=True)
    cv2.imwrite(str(photo), portrait)
    assert main(['enroll', str(photo.parent.parent), '--operator', 'admission desk']
                + common) == 0
    assert 'revision 1, 1 patient(s)' in capsys.readouterr().out
    assert main(['gallery', 'list'] + common) == 0
    assert capsys.readouterr().out.startswith('P-0001\t1 template(s), ')
    assert main(['gallery', 'remove', 'P-0001', '--operator', 'ward 3 nurse'] + common) == 0
    capsys.readouterr()
    assert main(['gallery', 'audit'] + common) == 0
    lines = [line.split('\t') for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(line[0], line[2], line[4], line[5]) for line in lines] == [
        ('1', 'admission desk', 'enrol', 'P-0001'), ('2', 'ward 3 nurse', 'erase', 'P-0001')]
    local = ['--gallery', str(tmp_path / 'g.db'), '--model', str(tiny_model)]
    assert main(['enroll', str(photo.parent.parent)] + local) == 0
    assert main(['gallery', 'audit'] + local) == 2
    assert 'keeps no audit trail' in capsys.readouterr().err


def test_a_password_in_the_url_is_refused():
    with pytest.raises(ConfigError, match='holds a password.*PGPASSFILE'):
        PipelineConfig.from_dict({'gallery': {'url': 'postgresql://face_id:secret@db/face_id'}})
    with pytest.raises(ConfigError, match='holds a password'):
        PipelineConfig.from_dict({'gallery': {'url': 'postgresql://db/face_id?password=x'}})
    with pytest.raises(ConfigError, match='is not a postgresql:// URL'):
        PipelineConfig.from_dict({'gallery': {'url': 'mysql://db/face_id'}})


def test_open_gallery_opens_the_server_when_a_url_is_set(server_url, tmp_path, monkeypatch):
    text = new_key_text()
    monkeypatch.setenv(KEY_ENV, text)
    migrate_server(server_url, key(text), MODEL, SIZE)
    config = GalleryConfig(path=str(tmp_path / 'g.db'), url=server_url)
    with open_gallery(config, MODEL, SIZE) as gallery:
        assert isinstance(gallery, PostgresGallery) and gallery.path == server_url
    assert not (tmp_path / 'g.db').exists()  # the desk keeps no local copy


def test_without_the_driver_sqlite_works_and_a_server_url_names_the_package(tmp_path):
    """A robot without psycopg (a ROS image): SQLite as before, one clear line for a URL."""
    script = f"""
import sys
sys.modules['psycopg'] = None  # as on a machine where it is not installed
from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.errors import GalleryError
from face_id_ros.core.galleries import open_gallery
import numpy as np
with open_gallery(GalleryConfig(path={str(tmp_path / 'g.db')!r}, encryption='off'),
                  'm', 4) as gallery:
    print('sqlite revision', gallery.add_templates('P-0001', np.ones((1, 4)), ['a'], [1.0]))
try:
    open_gallery(GalleryConfig(url='postgresql://face_id@db/face_id'), 'm', 4)
except GalleryError as error:
    print(error)
"""
    environment = {**os.environ, KEY_ENV: new_key_text()}
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['sqlite revision 1', DRIVER_MISSING]
    assert 'pip install "psycopg[binary]"' in DRIVER_MISSING


def test_the_password_comes_from_pgpassfile_never_from_the_config(
        postgres_cluster, tmp_path, monkeypatch, gallery_key):
    url = postgres_cluster.new_database('g_password_role', password='s3cret-Pw')
    empty = tmp_path / 'empty.pgpass'
    empty.write_text('')
    empty.chmod(0o600)
    monkeypatch.setenv('PGPASSFILE', str(empty))
    with pytest.raises(GalleryError, match='cannot reach gallery server postgresql://'
                       'face_id_password@127.0.0.1:[0-9]+/g_password_role: .*password'):
        migrate_server(url, gallery_key, MODEL, SIZE)
    passfile = tmp_path / 'face_id.pgpass'
    passfile.write_text(f'127.0.0.1:{postgres_cluster.port}:g_password_role:'
                        'face_id_password:s3cret-Pw\n')
    passfile.chmod(0o600)
    monkeypatch.setenv('PGPASSFILE', str(passfile))
    assert migrate_server(url, gallery_key, MODEL, SIZE)['from_schema'] == 0
    with PostgresGallery.open(url, MODEL, SIZE, gallery_key) as gallery:
        assert gallery.add_templates('P-0001', unit_rows(1, 1), ['a'], [1.0]) == 1
    assert 's3cret' not in url


def test_one_face_is_never_enrolled_under_two_ids_on_the_server(
        server_url, tiny_model, portrait, gallery_key):
    """The enrolment rules sit above the storage: the same refusal as with SQLite."""
    from face_id_ros.core.errors import EnrolmentRejected
    from face_id_ros.core.pipeline import Pipeline
    from test_enrolment_session import filled_session
    pipeline = Pipeline(PipelineConfig().replace(embedder={'model': str(tiny_model)},
                                                 detector={'blazeface_range': 'full'}))
    embedder = pipeline.embedder
    migrate_server(server_url, gallery_key, embedder.fingerprint, embedder.embedding_size)
    with PostgresGallery.open(server_url, embedder.fingerprint, embedder.embedding_size,
                              gallery_key) as gallery:
        assert filled_session(pipeline, portrait).write(gallery, 'P-0001') == 1
        with pytest.raises(EnrolmentRejected, match='already matches enrolled patient P-0001'):
            filled_session(pipeline, portrait).write(gallery, 'P-0002')
        assert filled_session(pipeline, portrait).write(gallery, 'P-0001', replace=True) == 2
        assert gallery.patient_ids() == ['P-0001']
        assert [entry.action for entry in gallery.audit()] == ['enrol', 'replace']


def certificate(subject, issuer_key, key, issuer=None, ca=False):
    """Return a PEM certificate for ``subject`` (127.0.0.1 as its address), signed."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_tls_with_verify_full_and_the_hospitals_ca(postgres_cluster, tmp_path, gallery_key):
    """sslmode=verify-full with sslrootcert: libpq's conventions, passed through as given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import psycopg
    ca_key, server_key, stranger_key = (ec.generate_private_key(ec.SECP256R1())
                                        for _ in range(3))
    ca_pem = certificate('hospital CA', ca_key, ca_key, ca=True)
    ca_name = x509.load_pem_x509_certificate(ca_pem).subject
    server_pem = certificate('db.hospital', ca_key, server_key, issuer=ca_name)
    postgres_cluster.enable_tls(server_pem, server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    url = postgres_cluster.new_database('g_tls')
    (tmp_path / 'ca.pem').write_bytes(ca_pem)
    (tmp_path / 'other.pem').write_bytes(certificate('another CA', stranger_key, stranger_key,
                                                     ca=True))
    verified = f'{url}?sslmode=verify-full&sslrootcert={tmp_path / "ca.pem"}'
    assert migrate_server(verified, gallery_key, MODEL, SIZE)['path'] == url
    with PostgresGallery.open(verified, MODEL, SIZE, gallery_key) as gallery:
        assert gallery.add_templates('P-0001', unit_rows(1, 1), ['a'], [1.0]) == 1
    with psycopg.connect(verified) as db:
        assert db.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'
                          ).fetchone()[0] is True
    impostor = f'{url}?sslmode=verify-full&sslrootcert={tmp_path / "other.pem"}'
    with pytest.raises(GalleryError, match='cannot reach gallery server .*certificate verify'):
        PostgresGallery.open(impostor, MODEL, SIZE, gallery_key)
