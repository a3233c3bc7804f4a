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

from pathlib import Path

from face_id_ros.core.errors import FaceIdError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


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
    """Read an image file as BGR; raise FaceIdError if it is not a readable picture."""
    import cv2
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceIdError(f'cannot read image {path}')
    return image
