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

"""Find the files the package ships in share/face_id_ros (models, configs, launch files)."""

from pathlib import Path
import sys

PACKAGE_NAME = 'face_id_ros'


def package_share_file(relative):
    """
    Return the path of a shipped file, given relative to share/face_id_ros.

    Looks in the ament index (a colcon install), then in the source checkout this module
    was imported from (a plain checkout or a pip editable install), then in
    ``sys.prefix/share/face_id_ros`` (a pip install).

    Raises FileNotFoundError naming every place it looked.
    """
    candidates = [directory / relative for directory in _share_directories()]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f'{relative} is not shipped with {PACKAGE_NAME}; looked in: '
        + ', '.join(str(candidate) for candidate in candidates))


def _share_directories():
    """List the share directories that may hold this installation's files, best first."""
    directories = []
    ament_share = _ament_share_directory()
    if ament_share is not None:
        directories.append(ament_share)
    checkout = Path(__file__).resolve().parents[2]
    # The ament resource marker tells a source checkout from an unrelated site-packages.
    if (checkout / 'resource' / PACKAGE_NAME).is_file():
        directories.append(checkout)
    directories.append(Path(sys.prefix) / 'share' / PACKAGE_NAME)
    return directories


def _ament_share_directory():
    """Return the share directory from the ament index; None without ROS or a colcon install."""
    try:
        from ament_index_python.packages import get_package_share_directory
        from ament_index_python.packages import PackageNotFoundError
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE_NAME))
    except PackageNotFoundError:
        return None


DEFAULT_MODEL = 'models/face_embedder.onnx'


def default_model_path():
    """Return the path of the embedder shipped in models/."""
    return str(package_share_file(DEFAULT_MODEL))
