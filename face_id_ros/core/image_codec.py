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
Turn sensor_msgs/Image and CompressedImage messages into BGR pictures, and back.

Messages are duck-typed (rclpy, rosbags or anything with the same attributes), so this module
needs no ROS. Every malformed message raises ImageDecodeError with the reason; sizes are checked
before anything is allocated, so a corrupt header cannot make the node ask for gigabytes.
"""

import array
import operator

import cv2
from face_id_ros.core.errors import ImageDecodeError
import numpy as np

# Largest picture accepted, in pixels; anything bigger is a corrupt or hostile header.
MAX_PIXELS = 8192 * 8192

# Raw encoding -> bytes per pixel. Names and byte orders follow sensor_msgs/image_encodings.hpp:
# 'yuv422' is UYVY and 'yuv422_yuy2' is YUYV; 'uyvy' and 'yuyv' are the newer aliases.
_BYTES_PER_PIXEL = {
    'bgr8': 3, 'rgb8': 3, 'bgra8': 4, 'rgba8': 4, 'mono8': 1, 'mono16': 2,
    'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
}
_YUV422_CONVERSION = {
    'yuv422': cv2.COLOR_YUV2BGR_UYVY, 'uyvy': cv2.COLOR_YUV2BGR_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2, 'yuyv': cv2.COLOR_YUV2BGR_YUY2,
}
_ENCODABLE = ('bgr8', 'rgb8', 'mono8')

_JPEG_MAGIC = b'\xff\xd8'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (all SOFn but DHT 0xC4, JPG 0xC8 and DAC 0xCC).
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])

# What numpy and OpenCV raise on inputs they cannot handle; reported as ImageDecodeError.
_LIBRARY_ERRORS = (ValueError, TypeError, OverflowError, IndexError, MemoryError, cv2.error)


def decode_image(msg):
    """Turn a sensor_msgs/Image into a contiguous BGR uint8 array of shape (height, width, 3)."""
    height = _dimension(msg, 'height')
    width = _dimension(msg, 'width')
    step = _dimension(msg, 'step')
    encoding = _attribute(msg, 'encoding')
    big_endian = _dimension(msg, 'is_bigendian') != 0
    if not isinstance(encoding, str) or encoding.strip().lower() not in _BYTES_PER_PIXEL:
        raise ImageDecodeError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(_BYTES_PER_PIXEL)}')
    encoding = encoding.strip().lower()
    _check_size(width, height)
    if encoding in _YUV422_CONVERSION and width % 2:
        raise ImageDecodeError(
            f'{encoding} packs two pixels per macropixel, but the width {width} is odd')
    row_bytes = width * _BYTES_PER_PIXEL[encoding]
    if step < row_bytes:
        raise ImageDecodeError(
            f'step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} B)')
    data = _as_uint8(_attribute(msg, 'data'))
    if data.size < step * height:
        raise ImageDecodeError(
            f'image data holds {data.size} bytes, but step {step} x height {height} needs '
            f'{step * height}')
    try:
        rows = data[:step * height].reshape(height, step)[:, :row_bytes]
        return np.ascontiguousarray(_rows_to_bgr(rows, width, encoding, big_endian))
    except _LIBRARY_ERRORS as error:
        raise ImageDecodeError(
            f'cannot decode {width}x{height} {encoding} image: {error}') from error


def decode_compressed_image(msg):
    """Turn a JPEG or PNG sensor_msgs/CompressedImage into a BGR uint8 array."""
    fmt = _attribute(msg, 'format')
    data = _as_uint8(_attribute(msg, 'data'))
    if isinstance(fmt, str) and 'compresseddepth' in fmt.lower():
        raise ImageDecodeError(
            f'compressed depth images (format {fmt!r}) are not pictures; subscribe to a '
            'colour or mono image topic')
    return decode_encoded(data, f'compressed image (format {fmt!r})')


def decode_encoded(data, what):
    """
    Turn the bytes of a JPEG or PNG (a message's or a file's) into a BGR uint8 array.

    The one guarded decoder of the package: the size in the headers is checked before
    OpenCV allocates anything, PNG chunks that run past the data and JPEGs cut off before
    their end are refused, bytes after a PNG's IEND never reach OpenCV. ``what`` names the
    input in the ImageDecodeError (``image file x.jpg``).
    """
    data = _as_uint8(data)
    payload = data.tobytes()
    if not payload:
        raise ImageDecodeError(f'{what} has no data')
    try:
        if payload.startswith(_JPEG_MAGIC):
            width, height = _jpeg_size(payload)
        elif payload.startswith(_PNG_MAGIC):
            width, height, end = _png_size(payload)
            # Nothing after IEND reaches OpenCV: 4.11 reads chunks past it, and 27 bytes
            # there stating a 2.5 GB chunk took 2.5 GB and 3 s.
            data = data[:end]
        else:
            raise ImageDecodeError(f'{len(payload)} bytes that are neither JPEG nor PNG')
        _check_size(width, height)
    except ImageDecodeError as error:
        raise ImageDecodeError(f'{what}: {error}') from None
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except _LIBRARY_ERRORS as error:
        raise ImageDecodeError(f'corrupt {what}: {error}') from error
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ImageDecodeError(f'corrupt {what}: cannot decode it')
    return _as_bgr8(bgr, what)


def _as_bgr8(image, what):
    """Return OpenCV's decoded picture as HxWx3 uint8, whatever its depth and channels."""
    # OpenCV 4.11 ignores IMREAD_COLOR's 8-bit depth on its APNG path: a 16-bit grey PNG
    # with an acTL chunk came back as uint16.
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageDecodeError(f'{what} decoded to {image.dtype} '
                               'pixels, not 8-bit ones')
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ImageDecodeError(f'{what} decoded to shape '
                               f'{image.shape}, not a colour picture')
    return np.ascontiguousarray(image)


def decode_any(msg):
    """Decode a CompressedImage (it has `format`) or an Image (it has `encoding`) to BGR."""
    if hasattr(msg, 'format'):
        return decode_compressed_image(msg)
    if hasattr(msg, 'encoding'):
        return decode_image(msg)
    raise ImageDecodeError(
        f'{type(msg).__name__} is neither an Image (no encoding) nor a CompressedImage '
        '(no format)')


def encode_image(bgr, encoding='bgr8'):
    """Return the fields of a sensor_msgs/Image (bgr8, rgb8 or mono8) holding a BGR picture."""
    _check_bgr(bgr)
    if encoding == 'bgr8':
        pixels = bgr
    elif encoding == 'rgb8':
        pixels = bgr[..., ::-1]
    elif encoding == 'mono8':
        pixels = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
    else:
        raise ImageDecodeError(
            f'cannot encode to {encoding!r}; supported: {", ".join(_ENCODABLE)}')
    height, width = bgr.shape[:2]
    return {
        'height': height, 'width': width, 'encoding': encoding, 'is_bigendian': 0,
        'step': width * (1 if encoding == 'mono8' else 3),
        'data': np.ascontiguousarray(pixels).reshape(-1),
    }


def encode_compressed(bgr, fmt='jpeg', quality=90):
    """Return the fields of a sensor_msgs/CompressedImage; quality (1-100) is for JPEG only."""
    _check_bgr(bgr)
    if fmt == 'jpeg':
        if not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ImageDecodeError(f'JPEG quality must be within 1..100, got {quality}')
        ok, encoded = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == 'png':
        ok, encoded = cv2.imencode('.png', bgr)
    else:
        raise ImageDecodeError(f'cannot compress to {fmt!r}; supported: jpeg, png')
    if not ok:
        raise ImageDecodeError(f'OpenCV failed to encode a {bgr.shape} picture as {fmt}')
    # The format string image_transport's compressed publisher writes for a bgr8 source.
    return {'format': f'bgr8; {fmt} compressed bgr8', 'data': encoded.reshape(-1)}


def _rows_to_bgr(rows, width, encoding, big_endian):
    height = rows.shape[0]
    if encoding in ('bgr8', 'rgb8', 'bgra8', 'rgba8'):
        pixels = rows.reshape(height, width, -1)
        return pixels[..., :3] if encoding.startswith('bgr') else pixels[..., 2::-1]
    if encoding == 'mono8':
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_GRAY2BGR)
    if encoding == 'mono16':
        mono16 = np.ascontiguousarray(rows).view('>u2' if big_endian else '<u2')
        return cv2.cvtColor((mono16 >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    packed = np.ascontiguousarray(rows).reshape(height, width, 2)
    return cv2.cvtColor(packed, _YUV422_CONVERSION[encoding])


def _attribute(msg, name):
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageDecodeError(f'{type(msg).__name__} has no attribute {name!r}') from None


def _dimension(msg, name):
    value = _attribute(msg, name)
    try:
        value = operator.index(value)
    except TypeError:
        raise ImageDecodeError(f'{name} must be an integer, got {value!r}') from None
    if value < 0:
        raise ImageDecodeError(f'{name} must not be negative, got {value}')
    return value


def _check_size(width, height):
    if width == 0 or height == 0:
        raise ImageDecodeError(f'image is empty ({width}x{height} pixels)')
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f'image of {width}x{height} pixels exceeds MAX_PIXELS ({MAX_PIXELS}); '
            'the header is corrupt or the camera resolution absurd')


def _as_uint8(data):
    """Return message data as a flat uint8 array, sharing memory where the input allows."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return np.frombuffer(data, dtype=np.uint8)
        if isinstance(data, array.array) and data.itemsize == 1:
            return np.frombuffer(data, dtype=np.uint8)
        if isinstance(data, (np.ndarray, list, tuple)):
            values = np.asarray(data).reshape(-1)
            if values.dtype == np.uint8:
                return values
            if values.dtype.kind in 'iu' and (values.size == 0 or (
                    values.min() >= 0 and values.max() <= 255)):
                return values.astype(np.uint8)
    except _LIBRARY_ERRORS:
        pass
    raise ImageDecodeError(
        f'image data must be bytes or a sequence of values 0..255, got {type(data).__name__}')


def _check_bgr(bgr):
    if not (isinstance(bgr, np.ndarray) and bgr.dtype == np.uint8 and bgr.ndim == 3
            and bgr.shape[2] == 3 and bgr.size):
        description = (f'{bgr.dtype} array of shape {bgr.shape}'
                       if isinstance(bgr, np.ndarray) else type(bgr).__name__)
        raise ImageDecodeError(f'expected a non-empty HxWx3 uint8 BGR array, got {description}')


def _png_size(payload):
    """Return (width, height, end of IEND) from IHDR; refuse chunks that run past the data."""
    # The IHDR chunk comes first: 4-byte length, b'IHDR', then width and height, big-endian.
    if len(payload) < 24 or payload[12:16] != b'IHDR':
        raise ImageDecodeError('corrupt PNG: no IHDR header')
    # Each chunk is a 4-byte length, a 4-byte type, the data and a 4-byte CRC. OpenCV 4.11's
    # reader allocates a chunk's stated length before reading it: 79 bytes stating 4 GB took
    # 4 GB and 8 s. A chunk longer than the bytes left, or data ending before IEND, is corrupt.
    position = 8
    has_data = False
    while True:
        if position + 12 > len(payload):
            raise ImageDecodeError('corrupt PNG: the data ends before the IEND chunk')
        length = int.from_bytes(payload[position:position + 4], 'big')
        if position + 12 + length > len(payload):
            raise ImageDecodeError(
                f'corrupt PNG: chunk {payload[position + 4:position + 8]!r} at byte {position} '
                f'states {length} bytes, but {len(payload) - position - 12} remain')
        kind = payload[position + 4:position + 8]
        if kind == b'acTL':
            # An animated PNG is no camera frame, and OpenCV 4.11's APNG reader is where the
            # fuzzer found 16-bit and black pictures: refuse it.
            raise ImageDecodeError('animated PNG (acTL chunk): a camera frame is one picture')
        position += 12 + length
        has_data = has_data or kind == b'IDAT'
        if kind == b'IEND':
            break
    if not has_data:
        raise ImageDecodeError('corrupt PNG: no IDAT chunk, so no pixels')
    return (int.from_bytes(payload[16:20], 'big'), int.from_bytes(payload[20:24], 'big'),
            position)


def _jpeg_size(payload):
    """Return (width, height) from the frame header; refuse a JPEG cut off before its end."""
    size = None
    position = 2
    # Walk the marker segments: the start-of-frame holds the size, the start-of-scan ends the
    # headers, and the end-of-image marker must follow (libjpeg pads a cut-off scan with grey).
    while position + 4 <= len(payload) and payload[position] == 0xFF:
        marker = payload[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker == 0xDA:
            if size is None:
                break
            if payload.rfind(b'\xff\xd9') < position:
                raise ImageDecodeError('corrupt JPEG: the data ends before the end-of-image')
            return size
        else:
            if marker in _JPEG_SOF_MARKERS and position + 9 <= len(payload):
                size = (int.from_bytes(payload[position + 7:position + 9], 'big'),
                        int.from_bytes(payload[position + 5:position + 7], 'big'))
            position += 2 + int.from_bytes(payload[position + 2:position + 4], 'big')
    raise ImageDecodeError('corrupt JPEG: its headers lack a frame or scan header')
