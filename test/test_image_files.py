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
Image files pass the same guarded decoder as image messages.

Each input here was accepted by `face-id identify` / `enroll` when they read files with
cv2.imread: a 20000x20000 PNG (3.69 GB, 24 s), a PNG stating a 4 GB chunk (4.35 GB), a PNG
with a chunk after IEND (2.66 GB) and a truncated JPEG (decoded half grey and enrolled).
"""

import json
import struct
import zlib

from conftest import LFW_DIR
import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.errors import ImageDecodeError
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.image_files import MAX_FILE_BYTES, read_image
import numpy as np
import pytest

# The fuzzer's 79 bytes whose IDAT chunk states 4,278,124,286 bytes (test_fuzzing.py).
PNG_STATING_4_GB = (
    b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x02\x08B\x00\x00\xfe'
    b'\x00\x00\x80\x00\xfe\xfe\xfe\xfe\xfeDAT\x08\x1dc\x8cv\x0b\x105\xf0`\x16\xe5f}\xf2\xec'
    b'\x11\x00\x16m\x04Tr{o\x0f\x00\x00\x00\x00IEND\xaeB`\x82')
# A 3x5 IHDR, IEND, then 27 bytes whose first four state a 2.5 GB chunk (test_fuzzing.py).
PNG_WITH_A_CHUNK_AFTER_IEND = (
    b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x03\x00\x00\x00\x05\x10\x00\x00\x00'
    b'\x00\xf5\x8a\xd5=\x00\x00\x00\x00IEND\xaeB`\x82\x97\xa5\xf1\xa1\xbeB1\xabp0\x07\xa9'
    b'\xb5>\xbe\x80@@@@@@@@@j(')


def chunk(kind, body):
    return (struct.pack('>I', len(body)) + kind + body
            + struct.pack('>I', zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_stating(width, height):
    """Return a well-formed PNG stating width x height, with one row of pixels."""
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b'\x00' + b'\x80' * 3 * width)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', row)
            + chunk(b'IEND', b''))


def lfw_photo():
    photos = sorted((LFW_DIR / 'images' / 'Aaron_Eckhart').glob('*.jpg'))
    if not photos:
        pytest.skip('../shared LFW is absent')
    return photos[0]


@pytest.fixture
def bad_files(tmp_path):
    """Each malformed file of issue 20, by the reason it must be refused with."""
    truncated = lfw_photo().read_bytes()
    files = {
        'exceeds MAX_PIXELS': png_stating(20000, 20000),
        r"chunk b'\\xfeDAT' at byte 33 states 4278124286 bytes": PNG_STATING_4_GB,
        'no IDAT chunk': PNG_WITH_A_CHUNK_AFTER_IEND,
        'corrupt JPEG: the data ends before the end-of-image':
            truncated[:len(truncated) * 6 // 10],
        'neither JPEG nor PNG': cv2.imencode('.bmp', np.zeros((8, 8, 3), np.uint8))[1],
    }
    paths = {}
    for index, (reason, data) in enumerate(files.items()):
        path = tmp_path / 'bad' / f'{index}.{"jpg" if "JPEG" in reason else "png"}'
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes(data))
        paths[reason] = path
    return paths


def test_each_malformed_file_is_refused_with_its_reason(bad_files):
    for reason, path in bad_files.items():
        with pytest.raises(ImageDecodeError, match=f'image file {path}: .*{reason}'):
            read_image(path)


def test_a_whole_photo_still_reads_as_opencv_reads_it():
    photo = lfw_photo()
    np.testing.assert_array_equal(read_image(photo), cv2.imread(str(photo), cv2.IMREAD_COLOR))


def test_a_file_too_big_for_a_photo_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / 'big.jpg'
    with open(path, 'wb') as stream:
        stream.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ImageDecodeError, match='bytes exceed the'):
        read_image(path)
    with pytest.raises(ImageDecodeError, match='cannot read image file .*missing.jpg'):
        read_image(tmp_path / 'missing.jpg')


def test_identify_and_enroll_refuse_each_malformed_file(
        bad_files, tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, new_key_text())
    gallery = tmp_path / 'g.db'
    common = ['--gallery', str(gallery), '--model', str(tiny_model)]
    patient = tmp_path / 'enrol' / 'P-0001'
    patient.mkdir(parents=True)
    for index, path in enumerate(bad_files.values()):
        (patient / path.name).write_bytes(path.read_bytes())
    # Every photo of the patient is refused, the truncated JPEG of a real face included.
    assert main(['enroll', str(patient.parent)] + common) == 0
    output = capsys.readouterr().out
    for reason, path in bad_files.items():
        assert len([line for line in output.splitlines()
                    if line.startswith(f'rejected image file {patient / path.name}:')]) == 1
    assert 'P-0001: no new photo accepted, nothing enrolled' in output
    for reason, path in bad_files.items():
        # One JSON line that names the file and the reason, one line on stderr, exit 1.
        assert main(['identify', str(path)] + common) == 1
        captured = capsys.readouterr()
        records = [json.loads(line) for line in captured.out.splitlines()]
        assert len(records) == 1 and f'image file {path}: ' in records[0]['error']
        assert len([line for line in captured.err.splitlines()
                    if f'image file {path}: ' in line]) == 1
