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

"""Image files on disk: folders of photos, one sub-folder per person, read as BGR."""

import os
from pathlib import Path

from face_id_ros.core.errors import FaceIdError, ImageDecodeError
from face_id_ros.core.image_codec import decode_encoded

# Listed so that such files are refused with a reason, not skipped: only JPEG and PNG decode.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# Largest image file read; a camera photo is a few MB, and the decoded picture is bounded by
# image_codec.MAX_PIXELS anyway.
MAX_FILE_BYTES = 64 * 1024 * 1024


def image_files(paths):
    """Expand files and folders into a sorted list of image files."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(item for item in path.rglob('*')
                            if item.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FaceIdError(f'no such file or folder: {path}')
    return found


def identity_folders(root):
    """Map each sub-folder of ``root`` (one per identity) to its sorted photo paths."""
    root = Path(root)
    if not root.is_dir():
        raise FaceIdError(f'{root} is not a folder of identity sub-folders')
    people = {folder.name: [str(path) for path in image_files([folder])]
              for folder in sorted(root.iterdir()) if folder.is_dir()}
    people = {name: photos for name, photos in people.items() if photos}
    if not people:
        raise FaceIdError(f'{root} holds no identity sub-folders with photos')
    return people


def read_image(path):
    """
    Read a JPEG or PNG file as BGR through the guarded decoder; raise ImageDecodeError.

    The file's size is checked before it is read and the picture's size before it is
    decoded, so a hostile or broken file costs neither memory nor time; a truncated JPEG or
    PNG is refused, never decoded half grey.
    """
    return decode_encoded(read_image_bytes(path), f'image file {path}')


def read_image_bytes(path):
    """Return an image file's bytes; raise ImageDecodeError if it is too big for a photo."""
    try:
        with open(path, 'rb') as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ImageDecodeError(
                    f'image file {path}: {size} bytes exceed the {MAX_FILE_BYTES} a photo '
                    'may have')
            return stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ImageDecodeError(f'cannot read image file {path}: {error.strerror}') from None
