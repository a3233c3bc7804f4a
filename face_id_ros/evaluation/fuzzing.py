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
Fuzzing of every input a stranger controls: the decoders and loaders of the core.

Each *target* pairs real seeds (frames of the sample portrait encoded as every raw encoding
and as JPEG and PNG, the shipped config files, labels files, a gallery made through
``Gallery.open``, the shipped model and a tiny real ONNX embedder) with a structure-aware
mutator (field mutations of width, height, step, encoding and is_bigendian; bit flips, byte
inserts and deletes, truncation and splicing; JPEG segments, PNG chunks with their CRCs
recomputed, YAML and JSON values, SQLite cells, ONNX graph fields) and with the public call
that reads such an input. Every input must end in a result that keeps the call's promise
(an HxWx3 uint8 picture, a config whose every value is in range, metadata the runtime can
use) or in :class:`FaceIdError` (:class:`ModelError` for a model file). Anything else is a
finding: another exception or a broken promise is *unexpected*, an input that takes more
than the deadline of CPU time (or makes no progress for longer in wall-clock time) a *hang*,
one that raises the worker's peak RSS by more than a limit a *memory* blow-up, and one that
kills the worker (a native crash, or memory past its ``RLIMIT_AS``) a *crash*.

Input ``i`` of a target is made from ``random.Random(f'{seed}/{target}/{i}')`` and the
target's seeds alone, so a run is reproducible and any input can be made again from its
number (but for the encrypted seed galleries, whose nonces are random). The runner executes
inputs in worker processes; the parent watches each one's progress and kills one stuck on
an input. The first unexpected input of each distinct exception site, and every hang, crash
and memory blow-up, is saved as ``cases/<target>-<index>.pickle`` for :func:`replay`
(``face-id fuzz --replay``). ONNX files cost a session each, so ``model_file`` gets 1% of a
run, at most 3,000 inputs.
"""

import array
from collections import Counter
import copyreg
from dataclasses import dataclass, field
import datetime
import io
import json
import math
import multiprocessing
import multiprocessing.connection
import os
from pathlib import Path
import pickle
import random
import re
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace
import zlib

import cv2
from face_id_ros.core.errors import FaceIdError
import numpy as np
import yaml

OUTCOMES = ('result', 'refused', 'unexpected', 'hang', 'crash')
CHUNK = 250
SAVED_PER_TARGET = 20

# -- Generic byte mutation -----------------------------------------------------------------

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x40)
INTERESTING_INTS = (0, 1, 2, 3, 7, 8, 15, 16, 17, 255, 256, 1023, 1024, 4095, 4096, 8191,
                    8192, 8193, 32767, 32768, 60000, 65535, 65536, 2 ** 24, 2 ** 31 - 1,
                    2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 64 - 1)


def interesting_int(rng, current=None):
    """Return an edge value, a small change of ``current`` or a random size."""
    choice = rng.random()
    if current is not None and choice < 0.35:
        return max(0, rng.choice((current + 1, current - 1, current * 2, current // 2,
                                  current + rng.randint(-8, 8), current * 3, current * 4)))
    if choice < 0.8:
        return rng.choice(INTERESTING_INTS)
    return rng.randint(0, 1 << rng.choice((4, 8, 12, 16, 24, 32)))


def mutate_bytes(rng, data, others=(), max_ops=8):
    """Apply a stack of 1..max_ops byte-level mutations to ``data``; return new bytes."""
    data = bytearray(data)
    for _ in range(min(max_ops, 1 + int(rng.expovariate(0.7)))):
        operation = rng.randrange(12)
        size = len(data)
        if operation == 0 and size:  # flip a bit
            position = rng.randrange(size)
            data[position] ^= 1 << rng.randrange(8)
        elif operation == 1 and size:  # interesting byte
            data[rng.randrange(size)] = rng.choice(INTERESTING_8)
        elif operation == 2 and size:  # random byte
            data[rng.randrange(size)] = rng.randrange(256)
        elif operation == 3:  # insert random bytes
            position = rng.randint(0, size)
            data[position:position] = bytes(rng.randrange(256)
                                            for _ in range(rng.randint(1, 16)))
        elif operation == 4 and size:  # delete a range
            start = rng.randrange(size)
            del data[start:start + rng.randint(1, max(1, min(size - start, 64)))]
        elif operation == 5 and size:  # duplicate a range
            start = rng.randrange(size)
            piece = data[start:start + rng.randint(1, 256)]
            position = rng.randint(0, size)
            data[position:position] = piece
        elif operation == 6 and size:  # truncate
            del data[rng.randint(0, size - 1):]
        elif operation == 7:  # append junk
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif operation == 8 and others:  # splice with another seed
            other = rng.choice(others)
            if other:
                cut = rng.randint(0, size)
                data = data[:cut] + bytearray(other[rng.randint(0, len(other) - 1):])
        elif operation == 9 and size >= 4:  # interesting 16- or 32-bit integer
            width = rng.choice((2, 4))
            position = rng.randrange(max(1, size - width + 1))
            value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
            order = rng.choice(('big', 'little'))
            data[position:position + width] = value.to_bytes(width, order)
        elif operation == 10 and size >= 2:  # swap two ranges
            a, b = sorted(rng.sample(range(size), 2))
            length = rng.randint(1, min(32, b - a))
            data[a:a + length], data[b:b + length] = data[b:b + length], data[a:a + length]
        elif operation == 11 and size:  # a run of one byte value
            start = rng.randrange(size)
            length = rng.randint(1, min(size - start, 512))
            data[start:start + length] = bytes([rng.choice(INTERESTING_8)]) * length
    return bytes(data)


# -- Raw sensor_msgs/Image -------------------------------------------------------------------

RAW_ENCODINGS = ('bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'mono16', 'yuv422', 'uyvy',
                 'yuv422_yuy2', 'yuyv')
OTHER_ENCODINGS = ('BGR8', ' bgr8 ', 'bgr8\x00', 'rgb16', 'bgr16', 'mono32', '8UC3', '16UC1',
                   '32FC1', 'bayer_rggb8', 'nv21', 'yuv420', 'jpeg', '', 'mono', 'bgr8;jpeg',
                   'yuv422 ', 'MONO16', 'Rgba8', '\u00e9', 'bgr8' * 100)
ODD_VALUES = (None, 1.5, 2.0, float('nan'), float('inf'), -1, True, False, '12', b'12', 10 ** 30,
              -(10 ** 30), np.int64(4), np.uint32(7), np.float32(3), 1j, [], (), {})


def portrait_frames():
    """Return real frames at several sizes, cut and scaled from the sample portrait."""
    from face_id_ros.evaluation.samples import sample_portrait
    portrait = sample_portrait()
    sizes = ((1, 1), (2, 2), (3, 5), (16, 12), (33, 17), (64, 48), (160, 120))
    frames = [cv2.resize(portrait, size, interpolation=cv2.INTER_AREA) for size in sizes]
    frames.append(np.ascontiguousarray(portrait[100:140, 150:202]))
    return frames


def raw_seed_fields(bgr, encoding, padding=0, big_endian=0):
    """Return the fields of a real Image message of ``bgr`` in ``encoding``."""
    height, width = bgr.shape[:2]
    if encoding in ('bgr8', 'rgb8', 'mono8'):
        from face_id_ros.core.image_codec import encode_image
        fields = encode_image(bgr, encoding)
        rows = fields['data'].reshape(height, -1)
    else:
        if encoding in ('bgra8', 'rgba8'):
            pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA if encoding == 'bgra8'
                                  else cv2.COLOR_BGR2RGBA)
        elif encoding == 'mono16':
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
            pixels = gray.astype('>u2' if big_endian else '<u2').view(np.uint8)
        else:
            width -= width % 2
            if not width:
                return None
            bgr = np.ascontiguousarray(bgr[:, :width])
            pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY)
            if encoding in ('yuv422_yuy2', 'yuyv'):
                pixels = pixels.reshape(height, width // 2, 4)[..., [1, 0, 3, 2]]
        rows = np.ascontiguousarray(pixels).reshape(height, -1)
    padded = np.full((height, rows.shape[1] + padding), 0xA5, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return {'height': height, 'width': width, 'encoding': encoding, 'is_bigendian': big_endian,
            'step': padded.shape[1], 'data': padded.reshape(-1)}


def through_cdr(fields, msgtype):
    """Serialise fields as a real message to CDR and back (as read from a bag), if rosbags."""
    try:
        from rosbags.typesys import get_typestore, Stores
    except ImportError:  # pragma: no cover - rosbags is a runtime dependency
        return fields
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=1700000000, nanosec=0),
        frame_id='camera')
    message = types[msgtype](header=header, **fields)
    message = store.deserialize_cdr(store.serialize_cdr(message, msgtype), msgtype)
    return {name: getattr(message, name) for name in fields}


def build_raw_seeds(workdir):
    """Real Image messages: every encoding, with and without row padding, through CDR."""
    seeds = []
    for index, frame in enumerate(portrait_frames()):
        for encoding in RAW_ENCODINGS:
            fields = raw_seed_fields(frame, encoding, padding=(index % 3) * 3,
                                     big_endian=index % 2 if encoding == 'mono16' else 0)
            if fields is not None:
                seeds.append(through_cdr(fields, 'sensor_msgs/msg/Image'))
    return seeds


def data_container(rng, data):
    """Return message data in one of the containers a message may carry (or a wrong one)."""
    data = np.asarray(data, np.uint8).reshape(-1) if not isinstance(
        data, (bytes, bytearray)) else np.frombuffer(bytes(data), np.uint8)
    choice = rng.randrange(16)
    if choice < 6:
        return data
    if choice == 6:
        return data.tobytes()
    if choice == 7:
        return bytearray(data.tobytes())
    if choice == 8:
        return array.array('B', data.tobytes())
    if choice == 9:
        return data.tolist()
    if choice == 10:
        return memoryview(data.tobytes())
    if choice == 11:  # a wider dtype, in or out of 0..255
        values = data.astype(rng.choice((np.int16, np.int64, np.uint16)))
        if values.size and rng.random() < 0.5:
            values[rng.randrange(values.size)] = rng.choice((-1, 256, 1000))
        return values
    if choice == 12:
        return data.astype(rng.choice((np.float32, np.float64, bool)))
    if choice == 13:  # not one-dimensional, or not contiguous
        return data[::2] if rng.random() < 0.5 or data.size % 2 else data.reshape(2, -1)
    if choice == 14:
        return tuple(data.tolist()[:4096])
    return rng.choice((None, 'not bytes', 12, data.tobytes().decode('latin-1'),
                       [1.5, 2.5], [None], {'a': 1}, array.array('H', [1, 2, 3])))


def generate_raw(rng, seeds):
    """Return a mutated Image message case: a dict of its fields, some perhaps missing."""
    fields = dict(rng.choice(seeds))
    data = np.asarray(fields['data'], np.uint8).tobytes()

    def number(name, default=4):
        value = fields.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    for _ in range(1 + int(rng.expovariate(0.9))):
        operation = rng.randrange(10)
        if operation == 0:
            name = rng.choice(('height', 'width', 'step'))
            fields[name] = interesting_int(rng, number(name))
        elif operation == 1:  # reinterpret the same bytes as another encoding
            fields['encoding'] = rng.choice(RAW_ENCODINGS)
        elif operation == 2:
            fields['encoding'] = rng.choice(OTHER_ENCODINGS + (None, 3, b'bgr8'))
        elif operation == 3:
            fields['is_bigendian'] = rng.choice((0, 1, 2, 255, -1, True, None, '1', 2 ** 70))
        elif operation == 4:
            others = [np.asarray(seed['data'], np.uint8).tobytes()
                      for seed in rng.sample(seeds, 2)]
            data = mutate_bytes(rng, data, others)
        elif operation == 5:  # a consistent-looking header for another size
            width = interesting_int(rng, number('width'))
            height = interesting_int(rng, number('height'))
            fields.update(width=width, height=height, step=width * rng.choice((1, 2, 3, 4)))
        elif operation == 6:
            name = rng.choice(('height', 'width', 'step', 'is_bigendian'))
            fields[name] = rng.choice(ODD_VALUES)
        elif operation == 7 and rng.random() < 0.3:
            fields.pop(rng.choice(('height', 'width', 'step', 'encoding', 'is_bigendian',
                                   'data')), None)
        elif operation == 8:  # the absurd header: a huge picture with a tiny buffer
            fields.update(width=rng.choice((60000, 2 ** 16, 2 ** 31)), height=60000,
                          step=rng.choice((60000, 180000, 2 ** 32 - 1)))
            data = bytes(rng.randint(0, 16))
        elif operation == 9:
            fields['step'] = number('step', 0) + rng.choice((0, 1))
    if 'data' in fields:
        fields['data'] = data_container(rng, data)
    return fields


def run_raw(case, workdir):
    """Decode the Image message of a case."""
    from face_id_ros.core.image_codec import decode_any, decode_image
    message = SimpleNamespace(**case)
    bgr = decode_image(message) if 'encoding' not in case or len(case) % 2 else decode_any(
        message)
    check_picture(bgr, case.get('height'), case.get('width'))
    return bgr.shape


def check_picture(bgr, height=None, width=None):
    """Raise AssertionError unless ``bgr`` is what a decoder promises: HxWx3 uint8."""
    assert isinstance(bgr, np.ndarray), type(bgr)
    assert bgr.dtype == np.uint8 and bgr.ndim == 3, (bgr.dtype, bgr.shape)
    assert bgr.shape[2] == 3 and bgr.size and bgr.flags['C_CONTIGUOUS'], bgr.shape
    if isinstance(height, int) and isinstance(width, int):
        assert bgr.shape[:2] == (height, width), (bgr.shape, height, width)


# -- sensor_msgs/CompressedImage -----------------------------------------------------------

FORMATS = ('jpeg', 'png', 'bgr8; jpeg compressed bgr8', 'rgb8; jpeg compressed bgr8',
           'mono8; png compressed mono8', '', 'bmp', '16UC1; compressedDepth png',
           '32FC1; compressedDepth', 'JPEG', 'compressedDepth', '\x00', 'png' * 200)


def build_compressed_seeds(workdir):
    """Real JPEG and PNG frames: qualities, progressive, restart markers, grey, 16-bit, alpha."""
    frames = portrait_frames()
    seeds = []
    for index, frame in enumerate(frames):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        variants = [
            ('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, (10, 50, 90, 95)[index % 4]]),
            ('.jpg', frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
            ('.jpg', frame, [cv2.IMWRITE_JPEG_RST_INTERVAL, 1, cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
            ('.jpg', gray, []),
            ('.png', frame, [cv2.IMWRITE_PNG_COMPRESSION, index % 10]),
            ('.png', gray, []),
            ('.png', cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), []),
            ('.png', gray.astype(np.uint16) * 257, []),
        ]
        for extension, image, parameters in variants:
            ok, encoded = cv2.imencode(extension, image, parameters)
            if ok:
                fmt = 'bgr8; jpeg compressed bgr8' if extension == '.jpg' else 'png'
                seeds.append(through_cdr({'format': fmt, 'data': encoded.reshape(-1)},
                                         'sensor_msgs/msg/CompressedImage'))
    return seeds


def jpeg_segments(payload):
    """Split a JPEG into (marker, segment bytes) up to the scan, then the rest as one piece."""
    segments, position = [(0xD8, payload[:2])], 2
    while position + 4 <= len(payload) and payload[position] == 0xFF:
        marker = payload[position + 1]
        if marker == 0xDA or marker in range(0xD0, 0xD9) or marker == 0xFF:
            break
        length = int.from_bytes(payload[position + 2:position + 4], 'big')
        segments.append((marker, payload[position:position + 2 + length]))
        position += 2 + length
    segments.append((0xDA, payload[position:]))
    return segments


def mutate_jpeg(rng, payload, others):
    """Mutate a JPEG segment by segment: frame size, components, lengths, order, scan data."""
    segments = [list(item) for item in jpeg_segments(payload)]
    operation = rng.randrange(8)
    headers = list(segments[1:-1])
    if operation == 0:  # the frame header's size or components
        for item in segments:
            if item[0] in (0xC0, 0xC1, 0xC2) and len(item[1]) >= 10:
                body = bytearray(item[1])
                field_at = rng.choice((5, 7, 9, 11, 12))
                if field_at in (5, 7):
                    value = interesting_int(rng) % 65536
                    body[field_at:field_at + 2] = value.to_bytes(2, 'big')
                elif field_at < len(body):
                    body[field_at] = rng.choice(INTERESTING_8 + (3, 4, 0x22, 0x44))
                item[1] = bytes(body)
    elif operation == 1 and headers:  # drop a segment
        segments.remove(rng.choice(headers))
    elif operation == 2 and headers:  # duplicate a segment (two frame headers, tables)
        item = rng.choice(headers)
        segments.insert(segments.index(item), list(item))
    elif operation == 3 and len(headers) > 1:  # reorder the header segments
        rng.shuffle(headers)
        segments = [segments[0]] + headers + [segments[-1]]
    elif operation == 4 and headers:  # lie about a segment's length
        item = rng.choice(headers)
        body = bytearray(item[1])
        body[2:4] = (interesting_int(rng) % 65536).to_bytes(2, 'big')
        item[1] = bytes(body)
    elif operation == 5:  # cut the scan but keep the end-of-image marker
        scan = segments[-1][1]
        segments[-1][1] = scan[:rng.randint(0, len(scan))] + b'\xff\xd9'
    elif operation == 6 and headers:  # mutate inside a table
        item = rng.choice(headers)
        item[1] = item[1][:4] + mutate_bytes(rng, item[1][4:], max_ops=3)
    elif operation == 7 and others:  # splice headers of one JPEG with another's scan
        other = rng.choice(others)
        if other.startswith(b'\xff\xd8'):
            segments[-1][1] = jpeg_segments(other)[-1][1]
    return b''.join(item[1] for item in segments)


def png_chunks(payload):
    """Split a PNG into [type, data] chunks (a damaged tail becomes a chunk of its own)."""
    chunks, position = [], 8
    while position + 8 <= len(payload):
        length = int.from_bytes(payload[position:position + 4], 'big')
        kind = payload[position + 4:position + 8]
        if position + 12 + length > len(payload):
            break
        chunks.append([kind, payload[position + 8:position + 8 + length]])
        position += 12 + length
    return chunks, payload[position:]


def png_chunk(kind, data, good_crc=True):
    """Serialise a PNG chunk, with its CRC right or wrong."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    if not good_crc:
        crc ^= 0x1
    return len(data).to_bytes(4, 'big') + kind + data + crc.to_bytes(4, 'big')


def mutate_png(rng, payload, others):
    """Mutate a PNG chunk by chunk (CRCs recomputed, so libpng reads on): IHDR, IDAT, order."""
    chunks, tail = png_chunks(payload)
    if not chunks:
        return mutate_bytes(rng, payload, others)
    operation = rng.randrange(8)
    if operation == 0 and chunks[0][0] == b'IHDR' and len(chunks[0][1]) == 13:
        header = bytearray(chunks[0][1])
        which = rng.randrange(7)
        if which < 2:
            value = rng.choice((0, 1, 2, 8192, 8193, 60000, 2 ** 31 - 1, 2 ** 32 - 1,
                                interesting_int(rng, int.from_bytes(header[4 * which:
                                                                           4 * which + 4],
                                                                    'big')) % 2 ** 32))
            header[4 * which:4 * which + 4] = value.to_bytes(4, 'big')
        elif which == 2:
            header[8] = rng.choice((0, 1, 2, 3, 4, 5, 8, 16, 32, 255))
        elif which == 3:
            header[9] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 255))
        else:
            header[8 + which - 2] = rng.choice((0, 1, 2, 255))
        chunks[0][1] = bytes(header)
    elif operation == 1:  # change the pixels inside IDAT: filters, lengths, the stream end
        idat = b''.join(data for kind, data in chunks if kind == b'IDAT')
        try:
            raw = zlib.decompress(idat)
        except zlib.error:
            raw = idat
        raw = mutate_bytes(rng, raw, max_ops=4)
        chunks = [chunk for chunk in chunks if chunk[0] != b'IDAT']
        chunks.insert(min(1, len(chunks)), [b'IDAT', zlib.compress(raw, 1)])
    elif operation == 2 and len(chunks) > 1:
        del chunks[rng.randrange(len(chunks))]
    elif operation == 3:
        position = rng.randrange(len(chunks))
        chunks.insert(position, list(chunks[position]))
    elif operation == 4:
        kind = rng.choice((b'PLTE', b'tRNS', b'iCCP', b'zTXt', b'sBIT', b'gAMA', b'pHYs',
                           b'acTL', b'fcTL', b'fdAT', b'eXIf', b'sRGB', b'bKGD', b'iTXt'))
        data = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 4, 8, 26, 300))))
        chunks.insert(rng.randint(1, len(chunks)), [kind, data])
    elif operation == 5 and len(chunks) > 2:
        middle = chunks[1:-1]
        rng.shuffle(middle)
        chunks = chunks[:1] + middle + chunks[-1:]
    elif operation == 6:  # a big image: a real zlib stream of zeros for a claimed size
        if chunks[0][0] == b'IHDR':
            width, height = rng.choice(((4096, 4096), (8192, 64), (64, 8192), (3000, 2000)))
            header = bytearray(chunks[0][1])
            header[0:8] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
            header[8:10] = bytes((8, 0))
            chunks[0][1] = bytes(header)
            rows = rng.randint(0, height)
            raw = bytes((width + 1) * rows)
            chunks = [chunk for chunk in chunks if chunk[0] != b'IDAT']
            chunks.insert(1, [b'IDAT', zlib.compress(raw, 9)])
    else:
        position = rng.randrange(len(chunks))
        chunks[position][1] = mutate_bytes(rng, chunks[position][1], max_ops=3)
    good = rng.random() < 0.85
    body = b''.join(png_chunk(kind, data, good or rng.random() < 0.5) for kind, data in chunks)
    return payload[:8] + body + (tail if rng.random() < 0.5 else b'')


def generate_compressed(rng, seeds):
    """Return a mutated CompressedImage case: format and data."""
    fields = dict(rng.choice(seeds))
    payload = np.asarray(fields['data'], np.uint8).tobytes()
    others = [np.asarray(seed['data'], np.uint8).tobytes() for seed in rng.sample(seeds, 2)]
    for _ in range(1 + int(rng.expovariate(1.2))):
        operation = rng.randrange(6)
        if operation < 2 and payload.startswith(b'\xff\xd8'):
            payload = mutate_jpeg(rng, payload, others)
        elif operation < 2 and payload.startswith(b'\x89PNG'):
            payload = mutate_png(rng, payload, others)
        elif operation < 4:
            payload = mutate_bytes(rng, payload, others)
        elif operation == 4:
            fields['format'] = rng.choice(FORMATS + (None, 7, b'jpeg'))
        elif rng.random() < 0.2:
            fields.pop(rng.choice(('format', 'data')), None)
    if 'data' in fields:
        fields['data'] = data_container(rng, payload)
    return fields


def run_compressed(case, workdir):
    """Decode the CompressedImage message of a case."""
    from face_id_ros.core.image_codec import decode_any, decode_compressed_image
    message = SimpleNamespace(**case)
    bgr = decode_compressed_image(message) if 'format' not in case else decode_any(message)
    check_picture(bgr)
    return bgr.shape


# -- YAML files: labels and config -----------------------------------------------------------

YAML_SCALARS = ('.inf', '-.inf', '.nan', '.NaN', '1e400', '-1e400', '-1', '0', '-0', '1_000',
                '0x10', '0o17', '0b101', '1:30', '190:20:30', '2001-12-14',
                '2001-12-14t21:59:43.10-05:00', 'true', 'no', 'off', 'y', 'null', '~', '""',
                "'x'", '9' * 400, '-' + '9' * 30, '3.5', '1e-400', '!!binary aGVsbG8=',
                '!!set {a, b}', '!!python/object:os.system', '!!float 1', '!!int x', '&x a',
                '*x', '*undefined', '[]', '{}', '[1, 2]', '{a: 1}', '|\n  x', 'P-0001',
                'P-' + '9' * 100, 'stranger', 'nobody', 'P-00x1', 'yunet', 'blazeface',
                'full', '<<', '!!omap [a: 1]', '!!pairs [a: 1]', '? a', '- x', '%TAG',
                '"\\ud800"', '"\\x00"', "'\u202e'", '!!timestamp 2001-12-14', '10.0',
                '1e3', '0.5', '2', '100', '4097', '65', '-0.0', '!!str 1', 'x' * 10000)
YAML_TEXT = list(':-[]{}&*!|>\'"%@`#,? \n\t\r\\') + ['\x00', '\u2028', '\ufeff', '\x85']
YAML_VALUES = (0, 1, -1, 0.5, 2, 100, 1e400, -1e400, float('nan'), 10 ** 400, -(10 ** 30), True,
               False, None, '', 'x', 'P-0001', 'nobody', 'stranger', 'short', 'yunet', [], {},
               [1, 2], {'a': 1}, datetime.date(2001, 12, 14), b'\x00\xff', 'x' * 5000, 3.0,
               2 ** 63, '1e400', ['a', {'b': None}])


def build_labels_seeds(workdir):
    """Real labels files, as ``save_labels`` writes them and as a person writes them."""
    from face_id_ros.evaluation.labels import Interval, save_labels
    rounds = [
        [Interval(0.0, 1.5, 'nobody'), Interval(1.5, 5.2, 'P-0042'),
         Interval(5.2, 6.8, 'nobody'), Interval(6.8, 10.1, 'stranger')],
        [Interval(0.0, 0.25, 'P-0001')],
        [Interval(float(index), index + 0.999, ('P-0001', 'P-0002', 'stranger',
                                                'nobody')[index % 4]) for index in range(12)],
    ]
    seeds = []
    for index, intervals in enumerate(rounds):
        path = Path(workdir) / f'seed_labels_{index}.yaml'
        save_labels(path, intervals)
        seeds.append(path.read_bytes())
    seeds.append(b'# hand-written\nintervals:\n  - start: 0\n    end: 2.5\n    subject: P-0042\n'
                 b'  - {start: 2.5, end: 4, subject: "nobody"}\n')
    return seeds


def build_config_seeds(workdir):
    """Return the shipped pipeline configs, and one that names every key with its default."""
    from dataclasses import asdict
    from face_id_ros.core.config import PipelineConfig
    from face_id_ros.core.resources import package_share_file
    seeds = [Path(package_share_file(f'config/{name}')).read_bytes()
             for name in ('face_id.yaml', 'nursing.yaml')]
    seeds.append(yaml.safe_dump(asdict(PipelineConfig())).encode())
    return seeds


def random_value(rng, depth=0):
    """Return a random YAML-representable value (nested up to a few levels)."""
    if depth < 3 and rng.random() < 0.2:
        if rng.random() < 0.5:
            return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(YAML_VALUES)


def random_key(rng):
    """Return a mapping key of a type YAML allows: text most often, sometimes not."""
    return rng.choice(('start', 'end', 'subject', 'intervals', 'detector', 'min_score',
                       'threshold', 'window', 'x', '', 1, 2.5, None, True, False,
                       datetime.date(2020, 1, 1), (1, 2), 'P-0001'))


def mutate_structure(rng, value, depth=0):
    """Return ``value`` with one random change somewhere inside."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        value = dict(value)
        operation = rng.randrange(6)
        if operation == 0:
            del value[key]
        elif operation == 1:
            value[random_key(rng)] = random_value(rng)
        elif operation == 2:
            value[key] = random_value(rng)
        elif operation == 3:
            value[random_key(rng)] = value.pop(key)
        else:
            value[key] = mutate_structure(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        value = list(value)
        position = rng.randrange(len(value))
        operation = rng.randrange(5)
        if operation == 0:
            del value[position]
        elif operation == 1:
            value.insert(position, random_value(rng))
        elif operation == 2:
            value.append(value[position])
        else:
            value[position] = mutate_structure(rng, value[position], depth + 1)
        return value
    return random_value(rng)


def yaml_bomb(rng):
    """Return YAML text that is small but expands: aliases of aliases, or deep nesting."""
    kind = rng.randrange(5)
    if kind == 0:  # a billion laughs
        width, depth = rng.randint(2, 10), rng.randint(2, 9)
        lines = [f'a0: &a0 [{", ".join(["lol"] * width)}]']
        for level in range(1, depth + 1):
            lines.append(f'a{level}: &a{level} [{", ".join([f"*a{level - 1}"] * width)}]')
        key = rng.choice(('intervals', 'detector', 'start', 'gallery'))
        lines.append(f'{key}: *a{depth}')
        return '\n'.join(lines[:1] + lines[1:] if rng.random() < 0.5 else
                         [f'{key}: ' + '{' + f'x: &a0 [{", ".join(["lol"] * width)}]' + '}']
                         + lines[1:]) + '\n'
    if kind == 1:
        depth = rng.choice((50, 64, 65, 200, 900, 2000, 10000, 100000))
        opening, closing = rng.choice((('[', ']'), ('{a: ', '}'), ('- ', '')))
        if opening == '- ':
            return ''.join(' ' * level + '- \n' for level in range(min(depth, 3000)))
        return opening * depth + '1' + closing * depth
    if kind == 2:  # a recursive structure
        return rng.choice(('intervals: &a [*a]\n', 'a: &a {b: *a}\nintervals: [*a]\n',
                           'detector: &d {x: *d}\n', '&r [*r, *r]\n',
                           'intervals: [&i {start: 0, end: 1, subject: nobody, me: *i}]\n'))
    if kind == 3:  # many keys or a long list
        count = rng.choice((30, 100, 300, 1000, 3000) if rng.random() < 0.1 else (30, 100, 300))
        return 'intervals:\n' + ''.join(f'  - {{start: {index}, end: {index + 1}, subject: '
                                        f'nobody}}\n' for index in range(count))
    return rng.choice(('--- a\n--- b\n', '? [a, b]\n: 1\n', 'a: 1\na: 2\n',
                       '<<: {intervals: []}\n', '!!python/name:os.system\n', '%YAML 9.9\n---\n',
                       '\ufeffintervals: []\n', 'a: !!binary |\n  ' + 'A' * 10000 + '\n'))


def generate_yaml(rng, seeds):
    """Return a mutated YAML document as bytes, from the text, the bytes or the structure."""
    seed = rng.choice(seeds)
    mode = rng.randrange(10)
    if mode < 3:  # structure: load, change, dump
        value = yaml.safe_load(seed)
        for _ in range(1 + int(rng.expovariate(1.0))):
            value = mutate_structure(rng, value)
        try:
            text = yaml.safe_dump(value, default_flow_style=rng.choice((None, True, False)),
                                  allow_unicode=rng.random() < 0.5)
        except yaml.YAMLError:
            text = repr(value)
        return text.encode('utf-8', 'surrogatepass')
    if mode < 6:  # tokens: replace scalars with YAML's edge cases
        text = seed.decode('utf-8')
        tokens = list(re.finditer(r'[A-Za-z0-9_.+\-~\'"]+', text))
        for _ in range(1 + int(rng.expovariate(0.8))):
            if not tokens:
                break
            match = rng.choice(tokens)
            text = text[:match.start()] + rng.choice(YAML_SCALARS) + text[match.end():]
            tokens = list(re.finditer(r'[A-Za-z0-9_.+\-~\'"]+', text))
        return text.encode('utf-8', 'surrogatepass')
    if mode < 8:  # characters with a meaning in YAML, and raw bytes
        text = seed.decode('utf-8')
        for _ in range(1 + int(rng.expovariate(0.6))):
            position = rng.randint(0, len(text))
            text = text[:position] + rng.choice(YAML_TEXT) + text[position + rng.randint(0, 1):]
        data = text.encode('utf-8', 'surrogatepass')
        return mutate_bytes(rng, data, seeds, max_ops=2) if rng.random() < 0.3 else data
    if mode == 8:
        return mutate_bytes(rng, seed, seeds)
    return yaml_bomb(rng).encode('utf-8')


def _write_case_file(workdir, name, data):
    path = Path(workdir) / name
    path.write_bytes(data)
    return path


def run_labels(case, workdir):
    """Load a labels file."""
    from face_id_ros.evaluation.labels import load_labels
    intervals = load_labels(_write_case_file(workdir, 'labels.yaml', case))
    for item in intervals:
        assert math.isfinite(item.start) and item.end > item.start >= 0, item
        assert isinstance(item.subject, str), item
    return len(intervals)


def run_config(case, workdir):
    """Load a pipeline config file and check what it promises: every value in range."""
    from face_id_ros.core.config import PipelineConfig
    config = PipelineConfig.from_yaml(_write_case_file(workdir, 'config.yaml', case))
    check_config(config)
    return config.detector.backend


def check_config(config):
    """Raise AssertionError unless every field has its declared type and range."""
    from dataclasses import fields as dataclass_fields
    for stage in dataclass_fields(config):
        values = getattr(config, stage.name)
        for item in dataclass_fields(values):
            value = getattr(values, item.name)
            meta = item.metadata
            if meta.get('words') and value in meta['words']:
                continue  # a word a number may stand for (matcher.threshold: auto)
            kind = float if meta.get('words') else type(item.default)
            assert isinstance(value, kind), (stage.name, item.name, value)
            if isinstance(value, float):
                assert math.isfinite(value), (stage.name, item.name, value)
            if meta['low'] is not None:
                assert meta['low'] <= value <= meta['high'], (stage.name, item.name, value)
            if meta['choices']:
                assert value in meta['choices'], (stage.name, item.name, value)
    re.compile(config.gallery.id_pattern)


# -- Model metadata and model files --------------------------------------------------------

JSON_VALUES = (0, 1, -1, 2, 16, 112, 128, 10 ** 30, 10 ** 400, 1.5, -0.0, float('nan'),
               float('inf'), -float('inf'), True, False, None, '', 'x', 'NCHW', 'NHWC', 'RGB',
               'BGR', '112', [], [112], [112, 112], [112, 112, 3], [16, 16], [15, 200],
               [100000, 100000], [[1, 2]] * 5, [[0, 0]] * 5, [[1, 2, 3]] * 5, ['a', 'b', 'c'],
               [1, 2, 3], [0, 0, 0], [1, -1, 1], [None] * 3, {'a': 1}, [[1, 2]] * 4,
               [[float('nan'), 1]] * 5, [1e400, 1, 1], 'x' * 10000)


def metadata_seeds():
    """Return the shipped model's ``face_id`` metadata and a tiny model's, as JSON text."""
    from face_id_ros.core.model_metadata import METADATA_KEY, ModelMetadata
    import onnxruntime
    from face_id_ros.core.resources import package_share_file
    session = onnxruntime.InferenceSession(
        str(package_share_file('models/face_embedder.onnx')),
        providers=['CPUExecutionProvider'])
    shipped = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    tiny = ModelMetadata(name='tiny', version='0', embedding_size=16, layout='NHWC',
                         channel_order='BGR').to_json()
    return [shipped.encode(), tiny.encode()]


def build_metadata_seeds(workdir):
    """Seeds of the metadata target."""
    return metadata_seeds()


def generate_metadata(rng, seeds):
    """Return mutated ``face_id`` metadata text: lying values, missing keys, not JSON."""
    seed = rng.choice(seeds)
    mode = rng.randrange(8)
    if mode < 5:
        payload = json.loads(seed)
        for _ in range(1 + int(rng.expovariate(1.0))):
            operation = rng.randrange(6)
            key = rng.choice(sorted(payload)) if isinstance(payload, dict) and payload else None
            if key is None:
                break
            if operation < 3:
                payload[key] = rng.choice(JSON_VALUES)
            elif operation == 3:
                del payload[key]
            elif operation == 4:
                payload[rng.choice(('format_version', 'extra', 'unknown', '', 'template'))] = \
                    rng.choice(JSON_VALUES)
            else:
                payload = rng.choice(([payload], 'x', None, 1, [], payload))
        return json.dumps(payload).encode()
    if mode == 5:
        return mutate_bytes(rng, seed, seeds)
    if mode == 6:
        return rng.choice((b'', b'null', b'[]', b'"x"', b'1', b'{', b'[' * 100000,
                           b'{"a":' * 50000, b'NaN', b'\xff\xfe', b'{"format_version": 1}'))
    text = seed.decode()
    tokens = list(re.finditer(r'-?[0-9.]+(e-?[0-9]+)?|"[A-Za-z]+"', text))
    match = rng.choice(tokens)
    value = rng.choice(('NaN', 'Infinity', '-Infinity', '1e999', '9' * 5000, 'null', '"7"',
                        '[]', '{}', 'true', '-0', '0', '1e-999', '[1,[2,[3]]]'))
    return (text[:match.start()] + value + text[match.end():]).encode()


def run_metadata(case, workdir):
    """Parse metadata and use each field as the runtime does (embedder, alignment)."""
    from face_id_ros.core.model_metadata import ModelMetadata
    metadata = ModelMetadata.from_json(case.decode('utf-8', 'replace'), source='fuzz')
    use_metadata(metadata)
    return metadata.name


def use_metadata(metadata):
    """Do with metadata what OnnxEmbedder and the pipeline do; raise if a field is unusable."""
    from face_id_ros.core.alignment import detector_template
    from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS
    size = int(metadata.embedding_size)
    assert 2 <= size, size
    width, height = (int(side) for side in metadata.input_size)
    assert 16 <= width <= 4096 and 16 <= height <= 4096, metadata.input_size
    mean = np.asarray(metadata.mean, np.float32)
    inverse_std = 1.0 / np.asarray(metadata.std, np.float32)
    assert mean.shape == (3,) and np.all(np.isfinite(mean)), metadata.mean
    assert inverse_std.shape == (3,) and np.all(np.isfinite(inverse_std)), metadata.std
    assert metadata.layout in ('NCHW', 'NHWC') and metadata.channel_order in ('RGB', 'BGR')
    threshold = float(metadata.cosine_threshold)
    assert -1.0 <= threshold <= 1.0, threshold
    for landmark_set in (FIVE_POINTS, FOUR_POINTS):
        points = detector_template(landmark_set, metadata.template)
        assert np.all(np.isfinite(points)), metadata.template


TINY_METADATA = {'name': 'tiny', 'version': '0', 'embedding_size': 16, 'cosine_threshold': 0.9}


def tiny_model_proto(embedding_size=16, input_shape=('batch', 3, 112, 112), layout='NCHW',
                     seed=0):
    """Return a small real ONNX embedder: average pooling, then a random projection."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    from face_id_ros.core.model_metadata import attach_metadata, ModelMetadata
    weights = np.random.default_rng(seed).normal(size=(147, embedding_size)).astype(np.float32)
    nodes = []
    source = 'input'
    if layout == 'NHWC':
        nodes.append(helper.make_node('Transpose', ['input'], ['nchw'], perm=[0, 3, 1, 2]))
        source = 'nchw'
    nodes += [helper.make_node('AveragePool', [source], ['pooled'], kernel_shape=[16, 16],
                               strides=[16, 16]),
              helper.make_node('Flatten', ['pooled'], ['flat']),
              helper.make_node('MatMul', ['flat', 'weights'], ['embedding'])]
    graph = helper.make_graph(
        nodes, 'tiny_embedder',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info('embedding', TensorProto.FLOAT,
                                       [input_shape[0], embedding_size])],
        [numpy_helper.from_array(weights, 'weights')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    attach_metadata(model, ModelMetadata(layout=layout, **TINY_METADATA))
    onnx.checker.check_model(model)
    return model


def build_model_seeds(workdir):
    """Real model files: tiny embedders (NCHW, NHWC, fixed batch) and the shipped model."""
    from face_id_ros.core.resources import package_share_file
    try:
        seeds = [tiny_model_proto().SerializeToString(),
                 tiny_model_proto(input_shape=('batch', 112, 112, 3),
                                  layout='NHWC').SerializeToString(),
                 tiny_model_proto(input_shape=(1, 3, 112, 112)).SerializeToString()]
    except ImportError:  # onnx (the test extra) is absent: mutate the shipped model only
        seeds = []
    return {'models': seeds + [Path(package_share_file('models/face_embedder.onnx'))
                               .read_bytes()],
            'metadata': metadata_seeds()}


def generate_model(rng, seeds):
    """Return mutated model file bytes: lying metadata, lying graph, or damaged protobuf."""
    models = seeds['models']
    # The shipped model costs ~40 ms a session; pick it for one input in ten.
    seed = models[-1] if len(models) == 1 or rng.random() < 0.1 else rng.choice(models[:-1])
    mode = rng.randrange(10)
    if mode >= 7 or len(models) == 1:
        return mutate_bytes(rng, seed, max_ops=3)
    import onnx
    from face_id_ros.core.model_metadata import METADATA_KEY
    model = onnx.load_from_string(seed)
    if mode < 4:  # lying or broken metadata
        entries = [entry for entry in model.metadata_props if entry.key == METADATA_KEY]
        choice = rng.randrange(6)
        if choice == 0:
            for entry in entries:
                model.metadata_props.remove(entry)
        elif choice == 1:
            entry = model.metadata_props.add()
            entry.key = METADATA_KEY
            entry.value = generate_metadata(rng, seeds['metadata']).decode('utf-8', 'replace')
        else:
            payload = json.loads(entries[0].value)
            key = rng.choice(('embedding_size', 'input_size', 'layout', 'channel_order',
                              'template', 'mean', 'std', 'format_version', 'cosine_threshold'))
            payload[key] = rng.choice(JSON_VALUES + (8, 32, 64, 256, 512, [96, 96], [112, 96],
                                                     [224, 224], 'NHWC', 'NCHW'))
            entries[0].value = json.dumps(payload)
        data = model.SerializeToString()
        if rng.random() < 0.1:  # metadata text that is not UTF-8
            data = data.replace(b'"format_version"', b'"format_\xff\xfeion"')
        return data
    if mode < 6:  # a graph whose shapes or types lie
        graph_input = model.graph.input[0].type.tensor_type
        choice = rng.randrange(7)
        if choice == 0:
            dimension = graph_input.shape.dim[rng.randrange(len(graph_input.shape.dim))]
            dimension.dim_value = rng.choice((1, 2, 3, 16, 96, 111, 224, 10 ** 6))
        elif choice == 1:
            graph_input.elem_type = rng.choice((onnx.TensorProto.FLOAT16,
                                                onnx.TensorProto.UINT8,
                                                onnx.TensorProto.DOUBLE,
                                                onnx.TensorProto.STRING))
        elif choice == 2:
            extra = model.graph.input.add()
            extra.CopyFrom(model.graph.input[0])
            extra.name = 'second'
        elif choice == 3:
            model.ir_version = rng.choice((99, 0, 3))
        elif choice == 4:
            model.opset_import[0].version = rng.choice((99, 1, 5))
        elif choice == 5:
            del graph_input.shape.dim[rng.randrange(len(graph_input.shape.dim))]
        else:
            output = model.graph.output[0].type.tensor_type
            output.shape.dim[-1].dim_value = rng.choice((1, 8, 17, 128))
        return model.SerializeToString()
    return mutate_bytes(rng, seed, max_ops=2)  # damaged protobuf, realistic few flips


def run_model(case, workdir):
    """Open a model file as the node does and embed a batch of crops of the size it states."""
    from face_id_ros.core.embedding import OnnxEmbedder
    from face_id_ros.core.errors import ModelError
    path = _write_case_file(workdir, 'model.onnx', case)
    try:
        embedder = OnnxEmbedder(path, flip_sum=len(case) % 2 == 1)
        use_metadata(embedder.metadata)
        width, height = embedder.input_size
        crops = np.zeros((2, height, width, 3), np.uint8)
        crops[1] = 200
        embeddings = embedder.embed(crops)
        assert embeddings.shape == (2, embedder.embedding_size), embeddings.shape
        assert embeddings.dtype == np.float32 and np.all(np.isfinite(embeddings))
        assert embedder.embed(crops[:0]).shape == (0, embedder.embedding_size)
    except FaceIdError as error:
        if not isinstance(error, ModelError):  # the documented type of a model file's errors
            raise AssertionError(f'model file refused with {type(error).__name__}, '
                                 f'not ModelError: {error}')
        raise
    return embeddings.shape


# -- Gallery files ---------------------------------------------------------------------------

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


# -- Targets and the runner -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One input a stranger controls: its seeds, its mutator and the call that reads it."""

    name: str
    description: str
    share: float
    build_seeds: object
    generate: object
    execute: object
    cap: int = 0  # at most this many inputs in a run (slow targets); 0: no cap
    needs_workdir: bool = False
    hidden: bool = False  # run only when named (the runner's own check)


def selftest_kind(index):
    """Return the outcome self-test input ``index`` provokes (fixed by its number)."""
    if index == 19:
        return 'stuck'
    if index == 29:
        return 'crash'
    return {6: 'refused', 7: 'unexpected', 8: 'memory', 9: 'slow'}.get(index % 10, 'result')


def run_selftest(case, workdir):
    """Provoke one outcome: a result, FaceIdError, another exception, slowness, memory, death."""
    kind = selftest_kind(case)
    if kind == 'refused':
        raise FaceIdError('refused on purpose')
    if kind == 'unexpected':
        raise KeyError('unexpected on purpose')
    if kind == 'memory':
        block = bytearray(300 * 1024 * 1024)
        block[::4096] = b'x' * len(block[::4096])
    elif kind == 'slow':  # 1.5 s of CPU time
        began = time.process_time()
        while time.process_time() - began < 1.5:
            pass
    elif kind == 'stuck':
        time.sleep(600)
    elif kind == 'crash':
        os.abort()
    return kind


TARGETS = {target.name: target for target in (
    Target('raw_image', 'sensor_msgs/Image fields and data -> decode_image', 0.42,
           build_raw_seeds, generate_raw, run_raw),
    Target('compressed_image', 'sensor_msgs/CompressedImage JPEG/PNG -> decode_compressed_image',
           0.25, build_compressed_seeds, generate_compressed, run_compressed),
    Target('labels_yaml', 'labels YAML file -> load_labels', 0.12, build_labels_seeds,
           generate_yaml, run_labels),
    Target('config_yaml', 'pipeline config YAML file -> PipelineConfig.from_yaml', 0.10,
           build_config_seeds, generate_yaml, run_config),
    Target('model_metadata', 'face_id metadata JSON -> ModelMetadata.from_json + its use', 0.07,
           build_metadata_seeds, generate_metadata, run_metadata),
    Target('gallery_file', 'gallery file -> Gallery.open + info/snapshot/list', 0.04,
           build_gallery_seeds, generate_gallery, run_gallery, needs_workdir=True),
    Target('model_file', 'model ONNX file -> OnnxEmbedder + embed (a session per input)', 0.0,
           build_model_seeds, generate_model, run_model, cap=3000),
    Target('selftest', "the runner's own check: each outcome on purpose", 0.0,
           lambda workdir: (), None, run_selftest, hidden=True),
)}


def plan(inputs, names=None, model_inputs=None):
    """Return ``{target: count}``: capped targets get their cap, the rest share the remainder."""
    names = list(names or [name for name, target in TARGETS.items() if not target.hidden])
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise FaceIdError(f'unknown fuzz target(s) {unknown}; known: {sorted(TARGETS)}')
    counts = {}
    for name in names:
        target = TARGETS[name]
        if target.cap:
            counts[name] = (model_inputs if model_inputs is not None
                            else min(target.cap, max(1, inputs // 100)))
            if len(names) == 1:
                counts[name] = inputs
    rest = inputs - sum(counts.values())
    shares = {name: TARGETS[name].share or 1.0 for name in names if name not in counts}
    total_share = sum(shares.values())
    for position, name in enumerate(shares):
        counts[name] = int(rest * shares[name] / total_share)
    if shares:
        first = next(iter(shares))
        counts[first] += inputs - sum(counts.values())
    return {name: counts[name] for name in names if counts.get(name)}


def make_case(target, seeds, seed, index, workdir):
    """Return input ``index`` of ``target``: a function of (seed, target, index) alone."""
    if target.generate is None:
        return index
    rng = random.Random(f'{seed}/{target.name}/{index}')
    if target.needs_workdir:
        return target.generate(rng, seeds, workdir)
    return target.generate(rng, seeds)


class Seeds:
    """Each target's seeds, built on first use in one process."""

    def __init__(self, workdir):
        """Build seeds under ``workdir``."""
        self.workdir = workdir
        self._seeds = {}

    def __getitem__(self, name):
        """Return the seeds of target ``name``."""
        if name not in self._seeds:
            self._seeds[name] = TARGETS[name].build_seeds(self.workdir)
        return self._seeds[name]


def execute(target, case, workdir):
    """Run one input; return (outcome, exception or None): result, refused or unexpected."""
    try:
        target.execute(case, workdir)
        return 'result', None
    except FaceIdError:
        return 'refused', None
    except Exception as error:  # the point of fuzzing: anything else is a finding
        return 'unexpected', error


def site(error):
    """Return where an exception was raised inside the package (one key per distinct bug)."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if 'face_id_ros' in frame.filename
           and not frame.filename.endswith('fuzzing.py')] or frames[-1:]
    if not own:
        return type(error).__name__
    last = own[-1]
    return f'{type(error).__name__} at {Path(last.filename).name}:{last.lineno}'


class _CasePickler(pickle.Pickler):
    """Pickle cases, memoryview data included (as a memoryview of the same bytes)."""

    dispatch_table = {**copyreg.dispatch_table,
                      memoryview: lambda view: (memoryview, (view.tobytes(),))}


def dump_case(case):
    """Return a case as pickle bytes (memoryview data included)."""
    stream = io.BytesIO()
    _CasePickler(stream).dump(case)
    return stream.getvalue()


def save_case(out, target_name, index, case, outcome, detail):
    """Write a case for :func:`replay`; return its path (or why it could not be saved)."""
    folder = Path(out) / 'cases'
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{target_name}-{index}.pickle'
    try:
        with open(path, 'wb') as stream:
            _CasePickler(stream).dump({'target': target_name, 'index': index,
                                       'outcome': outcome, 'detail': detail, 'case': case})
    except (OSError, pickle.PicklingError, TypeError, ValueError) as error:
        return f'not saved ({error}); make it again with make_case(seed, {target_name}, {index})'
    return path


def replay(path):
    """
    Run a saved case again in this process; return (outcome, seconds, traceback text or '').

    Only replay cases this tool saved: they are pickles.
    """
    with open(path, 'rb') as stream:
        saved = pickle.load(stream)
    target = TARGETS[saved['target']]
    with tempfile.TemporaryDirectory(prefix='face_id_fuzz_') as scratch:
        started = time.monotonic()
        outcome, error = execute(target, saved['case'], scratch)
    text = ''.join(traceback.format_exception(error)) if error is not None else ''
    return outcome, time.monotonic() - started, text


def _address_space():
    with open('/proc/self/statm') as stream:
        return int(stream.read().split()[0]) * resource.getpagesize()


def _max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _restart_peak_rss():
    """
    Return this process's resident memory (MB) with its peak reset to it, where Linux allows.

    An input's memory is its peak over the resident memory it started with; the process's
    lifetime peak (``ru_maxrss``) would hide an input that stays below an earlier peak.
    """
    try:
        with open('/proc/self/clear_refs', 'w') as stream:
            stream.write('5')  # reset VmHWM to VmRSS (Linux >= 4.0)
    except OSError:
        return _max_rss_mb()
    return _status_mb('VmRSS')


def _peak_rss_mb():
    """Return the resident peak since ``_restart_peak_rss`` (the lifetime peak elsewhere)."""
    return _status_mb('VmHWM') or _max_rss_mb()


def _status_mb(field):
    with open('/proc/self/status') as stream:
        for line in stream:
            if line.startswith(f'{field}:'):
                return int(line.split()[1]) / 1024
    return 0.0


def _worker(connection, progress, seed, out, memory_mb, memory_jump_mb, deadline_s, quiet):
    """
    Run chunks of inputs the parent sends; report each chunk's counts and findings.

    An input that raises the peak RSS by more than ``memory_jump_mb`` is a *memory* finding;
    the worker then reports and exits, so the next worker's peak starts afresh.
    """
    if quiet:  # libjpeg and libpng print a line per corrupt picture
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    cv2.setNumThreads(1)
    workdir = tempfile.mkdtemp(prefix='face_id_fuzz_', dir=_scratch_root())
    seeds = Seeds(workdir)
    limited = False
    saved = set()
    try:
        while True:
            message = connection.recv()
            if message is None:
                break
            name, start, stop = message[:3]
            target = TARGETS[name]
            target_seeds = seeds[name]
            if not limited:
                for other in message[3:]:
                    seeds[other]
                if memory_mb:
                    limit = _address_space() + memory_mb * 1024 * 1024
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                limited = True
            counts = Counter()
            findings = []
            slowest = (0.0, None)
            stopped = stop
            for index in range(start, stop):
                progress.value = index
                case = make_case(target, target_seeds, seed, index, workdir)
                before = _restart_peak_rss()
                # CPU time, not wall-clock time: on a shared machine an input waits for a core.
                began = time.process_time()
                outcome, error = execute(target, case, workdir)
                seconds = time.process_time() - began
                grown = _peak_rss_mb() - before
                if seconds > slowest[0]:
                    slowest = (seconds, index)
                detail = None
                if error is not None:
                    key = site(error)
                    detail = {'site': key, 'error': f'{type(error).__name__}: {error}'[:500],
                              'traceback': ''.join(traceback.format_exception(error))[-4000:]}
                if seconds > deadline_s:
                    detail = {'site': 'hang', 'error': f'took {seconds:.1f} s of CPU time '
                              f'(deadline {deadline_s:g} s), then ended {outcome}'}
                    outcome = 'hang'
                elif memory_jump_mb and grown > memory_jump_mb:
                    outcome = 'memory'
                    detail = {'site': 'memory', 'error': f'raised the peak RSS by '
                              f'{grown:.0f} MB'}
                counts[outcome] += 1
                if detail is not None:
                    key = (name, detail['site'])
                    if outcome != 'unexpected' or (key not in saved and len(saved) < 200):
                        saved.add(key)
                        detail['case'] = str(save_case(out, name, index, case, outcome,
                                                       detail))
                    findings.append((index, outcome, detail))
                if outcome == 'memory':
                    stopped = index + 1
                    break
            progress.value = -1
            connection.send(('done', dict(counts), findings, _max_rss_mb(), slowest,
                             stopped))
            if stopped < stop:
                break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scratch_root():
    return '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None


class _Slot:
    """One worker process and the chunk it is running."""

    def __init__(self, context, warm, **options):
        self.progress = context.Value('q', -1, lock=False)
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, daemon=True,
                                       args=(child, self.progress), kwargs=options)
        self.process.start()
        child.close()
        self.warm = tuple(warm)
        self.chunk = None
        self.last_index = None
        self.last_change = time.monotonic()

    def send(self, chunk):
        self.chunk = chunk
        self.last_index, self.last_change = None, time.monotonic()
        self.connection.send(tuple(chunk) + self.warm)
        self.warm = ()

    def stop(self, kill=False):
        if kill:
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except OSError:
                pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


FAILURES = ('unexpected', 'hang', 'crash', 'memory')


@dataclass
class Report:
    """What a campaign did: per-target outcome counts, findings, time and memory."""

    seed: int
    counts: dict = field(default_factory=dict)
    slowest: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    memory_limit_mb: int = 0
    deadline_s: float = 0.0
    jobs: int = 1

    @property
    def inputs(self):
        """Return the inputs run, all targets together."""
        return sum(sum(counts.values()) for counts in self.counts.values())

    @property
    def failures(self):
        """Count unexpected exceptions, hangs, crashes and memory blow-ups, all targets."""
        return sum(counts.get(outcome, 0) for counts in self.counts.values()
                   for outcome in FAILURES)

    def table(self):
        """Return the per-target table of inputs and outcomes, as text."""
        header = (f'{"target":<17}{"inputs":>10}{"result":>9}{"FaceIdError":>12}'
                  f'{"unexpected":>11}{"hang":>5}{"crash":>6}{"memory":>7}{"max cpu s":>10}')
        lines = [header, '-' * len(header)]
        total = Counter()
        for name, counts in self.counts.items():
            total.update(counts)
            lines.append(self._row(name, counts, self.slowest.get(name, (0.0, None))[0]))
        lines += ['-' * len(header),
                  self._row('all', total, max([item[0] for item in self.slowest.values()]
                                              or [0.0]))]
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines.append(f'{self.inputs:,} inputs in {self.seconds:,.0f} s ({rate:,.0f}/s, '
                     f'{self.jobs} worker(s)), seed {self.seed}; peak RSS of a worker '
                     f'{self.peak_rss_mb:,.0f} MB; address space limited to start-up '
                     f'+{self.memory_limit_mb:,} MB; hang: over {self.deadline_s:g} s of CPU '
                     'time for one input')
        groups = Counter((name, outcome, detail['site'])
                         for name, _, outcome, detail in self.findings)
        for (name, outcome, key), count in sorted(groups.items()):
            example = next(detail for item, _, kind, detail in self.findings
                           if (item, kind, detail['site']) == (name, outcome, key))
            lines.append(f'  {outcome} in {name}: {key} x{count}: {example["error"][:150]}'
                         + (f' [{example["case"]}]' if example.get('case') else ''))
        return '\n'.join(lines)

    @staticmethod
    def _row(name, counts, slowest):
        inputs = sum(counts.values())
        return (f'{name:<17}{inputs:>10,}{counts.get("result", 0):>9,}'
                f'{counts.get("refused", 0):>12,}{counts.get("unexpected", 0):>11,}'
                f'{counts.get("hang", 0):>5,}{counts.get("crash", 0):>6,}'
                f'{counts.get("memory", 0):>7,}{slowest:>10.2f}')

    def to_dict(self):
        """Return the report as plain data (for report.json)."""
        return {'seed': self.seed, 'inputs': self.inputs, 'failures': self.failures,
                'seconds': round(self.seconds, 1), 'jobs': self.jobs,
                'peak_rss_mb': round(self.peak_rss_mb, 1),
                'memory_limit_mb': self.memory_limit_mb, 'deadline_s': self.deadline_s,
                'counts': self.counts,
                'slowest': {name: {'seconds': round(seconds, 3), 'index': index}
                            for name, (seconds, index) in self.slowest.items()},
                'findings': [{'target': name, 'index': index, 'outcome': outcome, **detail}
                             for name, index, outcome, detail in self.findings[:1000]]}


def run_campaign(inputs, seed=0, out='.cache/fuzz', targets=None, jobs=1, deadline_s=10.0,
                 memory_mb=3072, memory_jump_mb=1024, model_inputs=None, progress=False,
                 quiet=True, stall_s=None):
    """
    Run ``inputs`` fuzz inputs over ``targets`` (all by default) in ``jobs`` worker processes.

    Returns a :class:`Report`, also written to ``out/report.json`` and ``out/report.txt``;
    saved cases go to ``out/cases``. An input that takes more than ``deadline_s`` of CPU time
    is a hang, and so is one on which a worker makes no progress for ``stall_s`` of
    wall-clock time (default: 3 deadlines, at least the deadline + 30 s; the parent kills
    the worker); one that raises a worker's peak RSS by more than ``memory_jump_mb`` is a
    memory finding; a worker that dies (a native crash, or memory past its address-space
    limit of start-up + ``memory_mb``) is a crash.
    """
    counts_planned = plan(inputs, targets, model_inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [(name, start, min(start + CHUNK, count))
              for name, count in counts_planned.items() for start in range(0, count, CHUNK)]
    # Interleave the targets so that a short or interrupted run still covers each of them.
    chunks.sort(key=lambda chunk: (chunk[1] / counts_planned[chunk[0]], chunk[0]))
    report = Report(seed, {name: Counter() for name in counts_planned},
                    memory_limit_mb=memory_mb, deadline_s=deadline_s, jobs=jobs)
    options = {'seed': seed, 'out': str(out), 'memory_mb': memory_mb,
               'memory_jump_mb': memory_jump_mb, 'deadline_s': deadline_s, 'quiet': quiet}
    context = multiprocessing.get_context('spawn')
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(counts_planned.values()), desc='fuzz', unit='input',
                   smoothing=0.05, file=sys.stderr)
    parent_seeds = None
    # A worker whose input makes no progress for this long (wall-clock) is killed.
    kill_after = stall_s if stall_s is not None else max(3 * deadline_s, deadline_s + 30)
    started = last_write = time.monotonic()
    pending = list(reversed(chunks))
    slots = []

    def lost(slot, outcome, why):
        """Record the input a worker died or stuck on; queue the rest of its chunk again."""
        nonlocal parent_seeds
        name, start, stop = slot.chunk
        index = slot.progress.value if slot.progress.value >= 0 else start
        if parent_seeds is None:
            parent_seeds = Seeds(tempfile.mkdtemp(prefix='face_id_fuzz_', dir=_scratch_root()))
        case = make_case(TARGETS[name], parent_seeds[name], seed, index, parent_seeds.workdir)
        detail = {'site': outcome, 'error': f'{why} on input {index} of {name}'}
        detail['case'] = str(save_case(out, name, index, case, outcome, detail))
        report.counts[name][outcome] += 1
        report.findings.append((name, index, outcome, detail))
        if bar is not None:
            bar.update(1)
        # The worker's counts of this chunk died with it.
        if start < index:
            pending.append((name, start, index))
        if index + 1 < stop:
            pending.append((name, index + 1, stop))
        slots.remove(slot)
        slot.stop(kill=True)

    try:
        while pending or slots:
            while len(slots) < jobs and pending:
                slots.append(_Slot(context, counts_planned, **options))
            for slot in list(slots):
                if slot.chunk is None:
                    if pending:
                        slot.send(pending.pop())
                    else:
                        slots.remove(slot)
                        slot.stop()
            busy = [slot.connection for slot in slots if slot.chunk]
            ready = multiprocessing.connection.wait(busy, timeout=0.5) if busy else []
            now = time.monotonic()
            for slot in list(slots):
                if slot.chunk is None:
                    continue
                if slot.connection in ready:
                    try:
                        _, counts, findings, maxrss, slowest, stopped = slot.connection.recv()
                    except (EOFError, OSError):
                        code = slot.process.exitcode
                        lost(slot, 'crash', f'the worker died (exit code {code})')
                        continue
                    name, _, stop = slot.chunk
                    report.counts[name].update(counts)
                    report.findings += [(name, index, outcome, detail)
                                        for index, outcome, detail in findings]
                    report.peak_rss_mb = max(report.peak_rss_mb, maxrss)
                    if slowest[0] > report.slowest.get(name, (0.0, None))[0]:
                        report.slowest[name] = slowest
                    if bar is not None:
                        bar.update(sum(counts.values()))
                    slot.chunk = None
                    if stopped < stop:  # the worker stopped after a memory finding
                        pending.append((name, stopped, stop))
                        slots.remove(slot)
                        slot.stop()
                    continue
                index = slot.progress.value
                if index != slot.last_index:
                    slot.last_index, slot.last_change = index, now
                elif index >= 0 and now - slot.last_change > kill_after:
                    lost(slot, 'hang', f'the worker was still on it after {kill_after:g} s')
            if now - last_write > 60:  # the report so far, for a long run
                last_write = now
                report.seconds = now - started
                (out / 'report.txt').write_text(report.table() + '\n')
    finally:
        for slot in slots:
            slot.stop(kill=bool(slot.chunk))
        if bar is not None:
            bar.close()
        if parent_seeds is not None:
            shutil.rmtree(parent_seeds.workdir, ignore_errors=True)
        report.seconds = time.monotonic() - started
        report.counts = {name: dict(counts) for name, counts in report.counts.items()}
        (out / 'report.json').write_text(json.dumps(report.to_dict(), indent=1, default=str))
        (out / 'report.txt').write_text(report.table() + '\n')
    return report
