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

"""Image codec tests on real rosbags messages built from a real face photo."""

import array
from types import SimpleNamespace

import cv2
from face_id_ros.core import image_codec
from face_id_ros.core.errors import ImageDecodeError
from face_id_ros.core.image_codec import (
    decode_any, decode_compressed_image, decode_image, encode_compressed, encode_image)
from matplotlib import cbook
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
Image = TYPESTORE.types['sensor_msgs/msg/Image']
CompressedImage = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
Header = TYPESTORE.types['std_msgs/msg/Header']
Time = TYPESTORE.types['builtin_interfaces/msg/Time']


@pytest.fixture(scope='module')
def face():
    """Grace Hopper's portrait (600x512 BGR) that ships with matplotlib."""
    path = cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (600, 512, 3)
    return bgr


def header():
    return Header(stamp=Time(sec=1700000000, nanosec=5), frame_id='head_camera')


def through_cdr(msg):
    """Serialise to CDR and back, as a message read from a bag or the wire."""
    raw = TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
    return TYPESTORE.deserialize_cdr(raw, msg.__msgtype__)


def raw_message(pixels, encoding, padding=0, big_endian=0, fill=0xAB):
    """Build an Image from an HxW(xC) array of bytes, with `padding` junk bytes per row."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    padded = np.full((height, rows.shape[1] + padding), fill, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return Image(header=header(), height=height, width=width, encoding=encoding,
                 is_bigendian=big_endian, step=padded.shape[1], data=padded.reshape(-1))


def mono16_bytes(gray, big_endian):
    """Gray levels in the high byte and noise in the low byte, in the given byte order."""
    low = np.arange(gray.size, dtype=np.uint16).reshape(gray.shape) % 251 + 1
    values = (gray.astype(np.uint16) << 8) | low
    return values.astype('>u2' if big_endian else '<u2').view(np.uint8).reshape(*gray.shape, 2)


@pytest.mark.parametrize('padding', [0, 13])
@pytest.mark.parametrize('encoding, to_source', [
    ('bgr8', None),
    ('rgb8', cv2.COLOR_BGR2RGB),
    ('bgra8', cv2.COLOR_BGR2BGRA),
    ('rgba8', cv2.COLOR_BGR2RGBA),
])
def test_colour_encodings_decode_pixel_exact(face, encoding, to_source, padding):
    source = face if to_source is None else cv2.cvtColor(face, to_source)
    decoded = decode_image(through_cdr(raw_message(source, encoding, padding)))
    assert decoded.dtype == np.uint8 and decoded.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(decoded, face)


@pytest.mark.parametrize('padding', [0, 7])
def test_mono8_decodes_to_grey_bgr(face, padding):
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    decoded = decode_image(through_cdr(raw_message(gray, 'mono8', padding)))
    np.testing.assert_array_equal(decoded, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


@pytest.mark.parametrize('padding', [0, 6])
@pytest.mark.parametrize('big_endian', [0, 1])
def test_mono16_keeps_the_high_byte_in_either_byte_order(face, big_endian, padding):
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    msg = raw_message(mono16_bytes(gray, big_endian), 'mono16', padding, big_endian)
    assert msg.width == gray.shape[1] and msg.step == 2 * gray.shape[1] + padding
    decoded = decode_image(through_cdr(msg))
    np.testing.assert_array_equal(decoded, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


def uyvy_and_yuyv(bgr):
    """Return the picture as UYVY bytes and as YUYV bytes (the same samples reordered)."""
    uyvy = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY)
    height, width = bgr.shape[:2]
    macro = uyvy.reshape(height, width // 2, 4)  # U Y0 V Y1
    yuyv = macro[..., [1, 0, 3, 2]].reshape(height, width, 2)  # Y0 U Y1 V
    return uyvy, np.ascontiguousarray(yuyv)


@pytest.mark.parametrize('encoding, order, conversion', [
    ('yuv422', 0, cv2.COLOR_YUV2BGR_UYVY),
    ('uyvy', 0, cv2.COLOR_YUV2BGR_UYVY),
    ('yuv422_yuy2', 1, cv2.COLOR_YUV2BGR_YUY2),
    ('yuyv', 1, cv2.COLOR_YUV2BGR_YUY2),
])
def test_yuv422_byte_orders_match_opencv(face, encoding, order, conversion):
    packed = uyvy_and_yuyv(face)[order]
    decoded = decode_image(through_cdr(raw_message(packed, encoding, padding=4)))
    np.testing.assert_array_equal(decoded, cv2.cvtColor(packed, conversion))
    # Chroma subsampling loses a little; a wrong byte order would be far off.
    assert np.abs(decoded.astype(int) - face).mean() < 2.0


def test_yuv422_in_the_wrong_byte_order_is_far_from_the_picture(face):
    uyvy = uyvy_and_yuyv(face)[0]
    decoded = decode_image(raw_message(uyvy, 'yuv422_yuy2'))
    assert np.abs(decoded.astype(int) - face).mean() > 20.0


@pytest.mark.parametrize('container', [
    bytes, bytearray, list, lambda d: array.array('B', d),
    lambda d: np.frombuffer(d, np.uint8).copy()])
def test_every_data_container_decodes(face, container):
    crop = np.ascontiguousarray(face[200:240, 180:220])
    msg = SimpleNamespace(height=40, width=40, encoding='bgr8', is_bigendian=0, step=120,
                          data=container(crop.tobytes()))
    np.testing.assert_array_equal(decode_image(msg), crop)


def test_data_longer_than_needed_is_accepted(face):
    crop = face[:20, :30]
    data = np.concatenate([crop.reshape(-1), np.zeros(50, np.uint8)])
    msg = SimpleNamespace(height=20, width=30, encoding='bgr8', is_bigendian=0, step=90,
                          data=data)
    np.testing.assert_array_equal(decode_image(msg), crop)


@pytest.mark.parametrize('encoding, channels', [('bgr8', 3), ('rgb8', 3), ('mono8', 1)])
def test_encode_image_builds_a_real_message_that_decodes_back(face, encoding, channels):
    fields = encode_image(face, encoding)
    assert fields['step'] == 512 * channels and fields['data'].dtype == np.uint8
    assert fields['data'].ndim == 1
    msg = through_cdr(Image(header=header(), **fields))
    assert (msg.height, msg.width, msg.encoding) == (600, 512, encoding)
    expected = face if channels == 3 else cv2.cvtColor(
        cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(decode_any(msg), expected)


def test_jpeg_round_trip_through_cdr_is_close(face):
    fields = encode_compressed(face, 'jpeg', quality=90)
    assert fields['format'] == 'bgr8; jpeg compressed bgr8'
    msg = through_cdr(CompressedImage(header=header(), **fields))
    decoded = decode_any(msg)
    assert decoded.shape == face.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - face).mean() < 3.0


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8', 'png', ''])
def test_the_format_string_does_not_change_the_pixels(face, fmt):
    encoded = encode_compressed(face, 'jpeg')['data']
    decoded = decode_compressed_image(CompressedImage(header=header(), format=fmt,
                                                      data=encoded))
    np.testing.assert_array_equal(decoded, cv2.imdecode(encoded, cv2.IMREAD_COLOR))


def test_png_round_trip_is_exact(face):
    fields = encode_compressed(face, 'png')
    assert fields['format'] == 'bgr8; png compressed bgr8'
    msg = through_cdr(CompressedImage(header=header(), **fields))
    np.testing.assert_array_equal(decode_any(msg), face)


def test_grey_png_decodes_to_three_channels(face):
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    encoded = cv2.imencode('.png', gray)[1].reshape(-1)
    msg = CompressedImage(header=header(), format='mono8; png compressed mono8', data=encoded)
    np.testing.assert_array_equal(decode_any(msg), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


def valid_raw(**changes):
    fields = {'height': 4, 'width': 6, 'encoding': 'bgr8', 'is_bigendian': 0, 'step': 18,
              'data': bytes(72)}
    fields.update(changes)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize('msg, reason', [
    (valid_raw(encoding='bayer_rggb8'), 'unsupported image encoding'),
    (valid_raw(encoding=None), 'unsupported image encoding'),
    (valid_raw(width=0, step=0, data=b''), 'empty'),
    (valid_raw(height=0, data=b''), 'empty'),
    (valid_raw(height=-4), 'negative'),
    (valid_raw(width=6.0), 'integer'),
    (valid_raw(step=17), 'smaller than one row'),
    (valid_raw(data=bytes(71)), 'needs 72'),
    (valid_raw(data=b''), 'needs 72'),
    (valid_raw(encoding='yuv422', width=5, step=10, data=bytes(40)), 'odd'),
    (valid_raw(encoding='yuv422_yuy2', width=5, step=10, data=bytes(40)), 'odd'),
    (valid_raw(data=[0, 256] * 36), '0..255'),
    (valid_raw(data='not bytes'), 'image data'),
    (valid_raw(data=np.zeros(72, np.float32)), 'image data'),
    (valid_raw(data=None), 'image data'),
    (SimpleNamespace(height=4, width=6, encoding='bgr8', is_bigendian=0, data=bytes(72)),
     "no attribute 'step'"),
    (SimpleNamespace(height=4, width=6, encoding='bgr8', step=18, data=bytes(72)),
     "no attribute 'is_bigendian'"),
])
def test_malformed_raw_images_are_refused_with_the_reason(msg, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(msg)


def test_absurd_size_is_refused_before_allocating():
    # 10^12 pixels with a tiny buffer: the check must come before any reshape or copy.
    msg = valid_raw(height=10 ** 6, width=10 ** 6, step=3 * 10 ** 6)
    with pytest.raises(ImageDecodeError, match='MAX_PIXELS'):
        decode_image(msg)


def test_max_pixels_is_configurable(face, monkeypatch):
    msg = raw_message(face, 'bgr8')
    monkeypatch.setattr(image_codec, 'MAX_PIXELS', 600 * 512 - 1)
    with pytest.raises(ImageDecodeError, match='exceeds MAX_PIXELS'):
        decode_image(msg)
    monkeypatch.setattr(image_codec, 'MAX_PIXELS', 600 * 512)
    assert decode_image(msg).shape == (600, 512, 3)


def compressed(data, fmt='jpeg'):
    return CompressedImage(header=header(), format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.fixture(scope='module')
def small_jpeg(face):
    return cv2.imencode('.jpg', face[:64, :64])[1].tobytes()


def jpeg_claiming_size(jpeg, width, height):
    """Rewrite the frame header of a real JPEG to claim another size."""
    data = bytearray(jpeg)
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def corrupt_huffman_table(jpeg):
    """Claim 255 codes of every length in the first Huffman table, which libjpeg rejects."""
    data = bytearray(jpeg)
    table = data.index(b'\xff\xc4')
    data[table + 5:table + 21] = bytes([255] * 16)
    return bytes(data)


def test_compressed_bomb_header_is_refused_before_decoding(small_jpeg, monkeypatch):
    monkeypatch.setattr(image_codec, 'MAX_PIXELS', 1000 * 1000)
    with pytest.raises(ImageDecodeError, match='MAX_PIXELS'):
        decode_any(compressed(jpeg_claiming_size(small_jpeg, 2000, 2000)))
    png = bytearray(cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = (60000).to_bytes(4, 'big') * 2
    with pytest.raises(ImageDecodeError, match='MAX_PIXELS'):
        decode_any(compressed(bytes(png), 'png'))


def test_compressed_data_longer_than_needed_is_accepted(face, small_jpeg):
    decoded = decode_any(compressed(small_jpeg + bytes(100)))
    assert np.abs(decoded.astype(int) - face[:64, :64]).mean() < 3.0


@pytest.mark.parametrize('mangle, fmt, reason', [
    (lambda jpeg: b'', 'jpeg', 'no data'),
    (lambda jpeg: jpeg[:len(jpeg) // 2], 'jpeg', 'ends before'),
    (lambda jpeg: jpeg[:40], 'jpeg', 'corrupt JPEG'),
    (lambda jpeg: jpeg_claiming_size(jpeg, 64, 0), 'jpeg', 'empty'),
    (lambda jpeg: jpeg[:2] + bytes(len(jpeg) - 2), 'jpeg', 'corrupt JPEG'),
    (lambda jpeg: corrupt_huffman_table(jpeg), 'jpeg', 'corrupt compressed'),
    (lambda jpeg: bytes(range(256)), 'jpeg', 'neither JPEG nor PNG'),
    (lambda jpeg: cv2.imencode('.bmp', np.zeros((4, 4, 3), np.uint8))[1].tobytes(), 'bmp',
     'neither JPEG nor PNG'),
    (lambda jpeg: jpeg, '16UC1; compressedDepth png', 'depth'),
])
def test_malformed_compressed_images_are_refused_with_the_reason(
        small_jpeg, mangle, fmt, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_compressed_image(compressed(mangle(small_jpeg), fmt))


def test_corrupt_png_is_refused(face):
    png = cv2.imencode('.png', face[:64, :64])[1].tobytes()
    with pytest.raises(ImageDecodeError, match='corrupt'):
        decode_any(compressed(png[:len(png) // 2], 'png'))
    with pytest.raises(ImageDecodeError, match='IHDR'):
        decode_any(compressed(png[:8] + bytes(40), 'png'))


def test_a_message_of_neither_kind_is_refused():
    with pytest.raises(ImageDecodeError, match='neither an Image'):
        decode_any(SimpleNamespace(height=1, width=1, data=b'\0\0\0'))
    with pytest.raises(ImageDecodeError, match="no attribute 'data'"):
        decode_any(SimpleNamespace(format='jpeg'))


@pytest.mark.parametrize('call, reason', [
    (lambda face: encode_image(face, 'bgra8'), 'cannot encode'),
    (lambda face: encode_image(face[..., 0]), 'HxWx3'),
    (lambda face: encode_image(face.astype(np.float32)), 'float32'),
    (lambda face: encode_compressed(face[:0]), 'non-empty'),
    (lambda face: encode_compressed(face, 'webp'), 'cannot compress'),
    (lambda face: encode_compressed(face, 'jpeg', quality=0), 'quality'),
])
def test_encoding_refuses_what_it_cannot_write(face, call, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        call(face)
