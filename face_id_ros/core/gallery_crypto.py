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
The gallery's key and the authenticated encryption of its templates (AES-256-GCM).

The key never lives in the gallery file. It is the base64 text of 32 random bytes
(``face-id gallery keygen``), read from the key file ``gallery.key_file`` (which must be
readable by its owner only) or, when no key file is configured, from the environment variable
``FACE_ID_GALLERY_KEY``. Each blob is sealed by the ``cryptography`` library's AES-GCM with a
fresh random 96-bit nonce and associated data naming the gallery, the template row, the
patient and the field, so a blob copied to another row, patient or gallery does not open. A
key check value in the gallery (a known token sealed with the key) refuses a wrong key when
the gallery is opened, not at the first template.
"""

import base64
import binascii
from dataclasses import dataclass, field
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from face_id_ros.core.errors import GalleryError

KEY_ENV = 'FACE_ID_GALLERY_KEY'
KEY_BYTES = 32
NONCE_BYTES = 12
ALGORITHM = 'aes-256-gcm'
KEY_CHECK_TOKEN = b'face_id_ros gallery key check'
# Group and other permission bits: a key file with any of them set is refused.
SHARED_MODE_BITS = 0o077


@dataclass(frozen=True)
class GalleryKey:
    """A 32-byte gallery key and where it came from (for error messages; never the key)."""

    secret: bytes = field(repr=False)
    source: str


def new_key_text():
    """Return a new random key as the base64 text a key file or FACE_ID_GALLERY_KEY holds."""
    return base64.b64encode(AESGCM.generate_key(bit_length=8 * KEY_BYTES)).decode('ascii')


def parse_key(text, source):
    """Return the GalleryKey in base64 ``text``; raise GalleryError naming ``source``."""
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        secret = None
    if secret is None or len(secret) != KEY_BYTES:
        raise GalleryError(f'{source} is not a gallery key: expected the base64 text of '
                           f'{KEY_BYTES} bytes (make one with `face-id gallery keygen`)')
    return GalleryKey(secret, source)


def read_key_file(path):
    """Read a key file readable by its owner only; raise GalleryError otherwise."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    try:
        mode = os.stat(path).st_mode
        if mode & SHARED_MODE_BITS:
            raise GalleryError(f'key file {path} can be read by others (mode '
                               f'{mode & 0o777:03o}): run `chmod 600 {path}`')
        with open(path, encoding='ascii') as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as error:
        raise GalleryError(f'cannot read key file {path}: {error}')
    return parse_key(text, f'key file {path}')


def write_key_file(path):
    """Write a new key to ``path``, readable by its owner only; never overwrite a file."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GalleryError(f'{path} exists: a key is never overwritten (the galleries it '
                           'opens would be lost); choose another file')
    except OSError as error:
        raise GalleryError(f'cannot create key file {path}: {error.strerror}')
    with os.fdopen(descriptor, 'w', encoding='ascii') as stream:
        os.fchmod(stream.fileno(), 0o600)  # whatever the umask
        stream.write(new_key_text() + '\n')
    return path


def key_from_config(config, environ=None):
    """
    Return the GalleryKey a GalleryConfig asks for, or None when its encryption is off.

    ``key_file`` wins when set; otherwise the key is read from FACE_ID_GALLERY_KEY in
    ``environ`` (default: this process's environment). No key with encryption required is a
    GalleryError that says how to make one.
    """
    if config.encryption == 'off':
        return None
    if config.key_file:
        return read_key_file(config.key_file)
    text = (os.environ if environ is None else environ).get(KEY_ENV, '')
    if text:
        return parse_key(text, f'environment variable {KEY_ENV}')
    raise GalleryError(
        f'gallery.encryption is required but no key is given: set {KEY_ENV} or '
        'gallery.key_file (make a key with `face-id gallery keygen --out FILE`), or set '
        'gallery.encryption: off for a test gallery that holds no patient')


class TemplateCipher:
    """Seal and open one gallery's blobs with its key; bound to the gallery's id."""

    def __init__(self, key, gallery_id):
        """Use ``key`` (a GalleryKey) for the gallery whose meta ``gallery_id`` is given."""
        self.key = key
        self.gallery_id = str(gallery_id)
        self._aead = AESGCM(key.secret)

    def seal(self, plaintext, *context):
        """Return nonce + ciphertext + tag of ``plaintext``, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), self._associated(context))

    def unseal(self, blob, *context):
        """Return the plaintext of a sealed blob; None when it does not authenticate."""
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            return None  # not bytes (a damaged file): bytes(an integer) would allocate it
        blob = bytes(blob)
        if len(blob) < NONCE_BYTES + 16:  # shorter than a nonce and a GCM tag
            return None
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                      self._associated(context))
        except InvalidTag:
            return None

    def key_check(self):
        """Return the key check value stored in the gallery's meta table."""
        return self.seal(KEY_CHECK_TOKEN, 'key check')

    def opens(self, key_check):
        """Return True when ``key_check`` was made with this key for this gallery."""
        return self.unseal(key_check, 'key check') == KEY_CHECK_TOKEN

    def _associated(self, context):
        # The unit separator cannot occur in a patient id the pattern accepts by default,
        # and the field name comes last, so no two contexts share a byte string.
        return '\x1f'.join(('face_id_ros gallery', self.gallery_id)
                           + tuple(str(part) for part in context)).encode('utf-8')
