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

"""Tests for finding the files shipped in share/face_id_ros."""

from pathlib import Path
import sys

from face_id_ros.core.resources import package_share_file
import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def test_finds_the_package_manifest_shipped_with_the_code():
    found = package_share_file('package.xml')
    # From a checkout this is the source file; from a colcon install, its installed copy.
    assert found.read_bytes() == (SOURCE_ROOT / 'package.xml').read_bytes()


def test_finds_a_shipped_folder():
    assert package_share_file('config').is_dir()


def test_missing_file_names_every_place_it_looked():
    with pytest.raises(FileNotFoundError) as raised:
        package_share_file('models/no_such_model.onnx')
    message = str(raised.value)
    assert str(SOURCE_ROOT / 'models' / 'no_such_model.onnx') in message
    assert str(Path(sys.prefix) / 'share' / 'face_id_ros' / 'models' / 'no_such_model.onnx') \
        in message
