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

"""Fuzz targets of pictures: Image fields, CompressedImage JPEG and PNG, image files."""

import array
from types import SimpleNamespace
import zlib

import cv2
from face_id_ros.evaluation.fuzz.mutation import (INTERESTING_8, interesting_int, mutate_bytes,
                                                  write_case_file)
import numpy as np


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


def mutate_encoded(rng, payload, others, operation):
    """Return ``payload`` mutated: its JPEG or PNG structure (operation 0 or 1) or its bytes."""
    if operation < 2 and payload.startswith(b'\xff\xd8'):
        return mutate_jpeg(rng, payload, others)
    if operation < 2 and payload.startswith(b'\x89PNG'):
        return mutate_png(rng, payload, others)
    return mutate_bytes(rng, payload, others)


def generate_compressed(rng, seeds):
    """Return a mutated CompressedImage case: format and data."""
    fields = dict(rng.choice(seeds))
    payload = np.asarray(fields['data'], np.uint8).tobytes()
    others = [np.asarray(seed['data'], np.uint8).tobytes() for seed in rng.sample(seeds, 2)]
    for _ in range(1 + int(rng.expovariate(1.2))):
        operation = rng.randrange(6)
        if operation < 4:
            payload = mutate_encoded(rng, payload, others, operation)
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


def build_file_seeds(workdir):
    """Real JPEG and PNG files: the compressed frames' bytes, as a camera or a phone saves them."""
    return [np.asarray(seed['data'], np.uint8).tobytes()
            for seed in build_compressed_seeds(workdir)]


def generate_file(rng, seeds):
    """Return a mutated image file's bytes: JPEG segments, PNG chunks, bytes; cut or not."""
    payload = rng.choice(seeds)
    others = rng.sample(seeds, 2)
    for _ in range(1 + int(rng.expovariate(1.2))):
        operation = rng.randrange(5)
        if operation < 4:
            payload = mutate_encoded(rng, payload, others, operation)
        else:  # a file cut off, as a copy or a download interrupted leaves it
            payload = payload[:rng.randrange(len(payload) + 1)]
    return payload


def run_file(case, workdir):
    """Read an image file as `face-id identify` and `enroll` do."""
    from face_id_ros.core.image_files import read_image
    bgr = read_image(write_case_file(workdir, 'photo', case))
    check_picture(bgr)
    return bgr.shape
