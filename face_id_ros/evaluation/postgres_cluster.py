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
A throw-away PostgreSQL cluster on loopback, for the tests and the gallery sync benchmark.

``initdb`` makes a cluster in a temporary folder; the server listens on 127.0.0.1 at a free
port of its own and on a Unix socket in that folder, never on another interface, and is
stopped and deleted at the end. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (the distribution package makes it). The binaries are found on
PATH or under /usr/lib/postgresql/<version>/bin (Debian and Ubuntu's layout).
"""

import glob
import os
from pathlib import Path
import pwd
import shutil
import socket
import subprocess
import tempfile

from face_id_ros.core.errors import FaceIdError

DATABASE = 'face_id'
ROLE = 'face_id'
PASSWORD_ROLE = 'face_id_password'
SERVER_USER = 'postgres'
START_TIMEOUT_S = 60


def postgres_bin_dir():
    """Return the folder holding initdb and pg_ctl, or None when PostgreSQL is absent."""
    found = shutil.which('initdb') and shutil.which('pg_ctl')
    if found:
        return os.path.dirname(os.path.realpath(shutil.which('pg_ctl')))
    versions = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'),
                      key=lambda path: int(Path(path).parts[-3].split('.')[0]))
    return os.path.dirname(versions[-1]) if versions else None


def missing_reason():
    """Return why a throw-away cluster cannot run here ('' when it can)."""
    if postgres_bin_dir() is None:
        return ('PostgreSQL server binaries not found (apt install postgresql; .ci/test '
                'installs it)')
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return 'the psycopg driver is not installed (pip install "psycopg[binary]")'
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f'running as root and there is no {SERVER_USER!r} user to run the server'
    return ''


class ThrowAwayCluster:
    """A PostgreSQL server of our own; ``start()``, ``stop()``, ``restart()``, ``remove()``."""

    def __init__(self, root=None):
        """Make the cluster (initdb) in a new temporary folder, or under ``root``."""
        reason = missing_reason()
        if reason:
            raise FaceIdError(reason)
        self.bin_dir = postgres_bin_dir()
        self.folder = tempfile.mkdtemp(prefix='face_id_pg_', dir=root)
        self.data = os.path.join(self.folder, 'data')
        self.port = free_port()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run('initdb', '-D', self.data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8',
                  '--no-sync')
        # One role signs in with a password over TCP (the rest is trusted): the tests of
        # PGPASSFILE use it.
        hba = os.path.join(self.data, 'pg_hba.conf')
        with open(hba) as stream:
            rules = stream.read()
        with open(hba, 'w') as stream:
            stream.write(f'host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{rules}')
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as stream:
            stream.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                         f"unix_socket_directories = '{self.folder}'\n"
                         'max_connections = 200\nfsync = off\n')

    @property
    def url(self):
        """Return the URL of the gallery database on loopback (as the gallery's role)."""
        return f'postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}'

    @property
    def admin_url(self):
        """Return the superuser's URL over the Unix socket (for tests that read raw rows)."""
        return f'postgresql://postgres@/{DATABASE}?host={self.folder}&port={self.port}'

    def start(self):
        """Start the server and make the gallery's role and database (once)."""
        self._run('pg_ctl', '-D', self.data, '-l', os.path.join(self.folder, 'server.log'),
                  '-w', '-t', str(START_TIMEOUT_S), 'start')
        import psycopg
        with psycopg.connect(f'postgresql://postgres@/postgres?host={self.folder}'
                             f'&port={self.port}', autocommit=True) as db:
            if not db.execute('SELECT 1 FROM pg_roles WHERE rolname = %s',
                              (ROLE,)).fetchone():
                db.execute(f'CREATE ROLE {ROLE} LOGIN')
                db.execute(f'CREATE DATABASE {DATABASE} OWNER {ROLE}')
        return self

    def new_database(self, name, password=None):
        """
        Make an empty database owned by the gallery's role; return its URL.

        With ``password``, the owner is a role that must sign in with it (over TCP).
        """
        import psycopg
        from psycopg import sql
        role = ROLE if password is None else PASSWORD_ROLE
        with psycopg.connect(self.admin_url.replace(f'/{DATABASE}?', '/postgres?'),
                             autocommit=True) as db:
            if password is not None:
                db.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD {}').format(
                    sql.Identifier(role), sql.Literal(password)))
            db.execute(f'CREATE DATABASE {name} OWNER {role}')
        return f'postgresql://{role}@127.0.0.1:{self.port}/{name}'

    def enable_tls(self, certificate_pem, key_pem):
        """Serve TLS with this certificate and key (PEM bytes) from now on (a restart)."""
        for name, data in (('server.crt', certificate_pem), ('server.key', key_pem)):
            path = os.path.join(self.data, name)
            with open(path, 'wb') as stream:
                stream.write(data)
            os.chmod(path, 0o600)
            if os.geteuid() == 0:
                entry = pwd.getpwnam(SERVER_USER)
                os.chown(path, entry.pw_uid, entry.pw_gid)
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as stream:
            stream.write('ssl = on\n')
        self.restart()

    def stop(self, mode='fast'):
        """Stop the server (``immediate`` is a crash: no checkpoint, clients cut off)."""
        self._run('pg_ctl', '-D', self.data, '-m', mode, '-w', 'stop', check=False)

    def restart(self):
        """Stop and start the server again."""
        self.stop()
        self.start()

    def remove(self):
        """Stop the server and delete the cluster's folder."""
        self.stop('immediate')
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program, *arguments, check=True):
        command = [os.path.join(self.bin_dir, program), *arguments]
        if os.geteuid() == 0:
            command = ['runuser', '-u', SERVER_USER, '--'] + command
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if check and result.returncode:
            raise FaceIdError(f'{program} failed ({result.returncode}): '
                              f'{(result.stderr or result.stdout).strip()[-500:]}')
        return result


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]
