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

"""Byte-level mutations every family of fuzz targets shares, and the scratch files of cases."""

from pathlib import Path


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


def write_case_file(workdir, name, data):
    """Write a case's bytes to ``workdir/name`` for a target that reads files; return the path."""
    path = Path(workdir) / name
    path.write_bytes(data)
    return path
