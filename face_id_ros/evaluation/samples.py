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
Sample input that ships with our dependencies, for the demo and the benchmark.

matplotlib installs a portrait of Grace Hopper (public domain, US Navy) as sample data, so a
new user can run the whole pipeline without any data of their own.
"""

from pathlib import Path

import cv2
from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.image_files import read_image
import numpy as np


def sample_portrait():
    """Return matplotlib's Grace Hopper portrait as a BGR image."""
    import matplotlib
    path = Path(matplotlib.get_data_path()) / 'sample_data' / 'grace_hopper.jpg'
    if not path.is_file():
        raise FaceIdError(f'matplotlib sample portrait missing: {path}')
    return read_image(path)


def compose_frame(portrait, size, centres, face_width, brightness=1.0, background=96):
    """
    Paste the portrait into a ``size`` (width, height) frame once per centre.

    ``face_width`` is the pasted portrait's width in pixels (its face is about 40% of it).
    """
    width, height = size
    frame = np.full((height, width, 3), background, np.uint8)
    scale = face_width / portrait.shape[1]
    tile = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    tile_height, tile_width = tile.shape[:2]
    for centre_x, centre_y in centres:
        x0, y0 = int(centre_x - tile_width / 2), int(centre_y - tile_height / 2)
        x1, y1 = max(x0, 0), max(y0, 0)
        x2, y2 = min(x0 + tile_width, width), min(y0 + tile_height, height)
        if x2 > x1 and y2 > y1:
            frame[y1:y2, x1:x2] = tile[y1 - y0:y2 - y0, x1 - x0:x2 - x0]
    return cv2.convertScaleAbs(frame, alpha=brightness)


def grid_centres(size, count):
    """Return ``count`` centres on a grid that fills a ``size`` frame."""
    width, height = size
    columns = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / columns))
    return [((index % columns + 0.5) * width / columns, (index // columns + 0.5) * height / rows)
            for index in range(count)]
