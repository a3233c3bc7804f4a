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

import inspect
from pathlib import Path
import urllib.request

import ament_xmllint.main
from ament_xmllint.main import main
import pytest

# package.xml names its schema by URL; xmllint fetches it unless ament_xmllint has a copy.
SCHEMA_URL = 'http://download.ros.org/schema/package_format3.xsd'
# Debian's python3-ament-xmllint ships the schemas and reads them from here; the ROS
# packages' ament_xmllint (Humble, Jazzy) has no copy and downloads the schema.
LOCAL_SCHEMA = Path('/usr/share/ament_xmllint/xml-catalog/download.ros.org/schema/'
                    'package_format3.xsd')


def schema_available():
    """Return True when xmllint can read the schema: a local copy, or the network."""
    if LOCAL_SCHEMA.is_file() and 'xml-catalog' in inspect.getsource(ament_xmllint.main):
        return True
    try:
        with urllib.request.urlopen(SCHEMA_URL, timeout=10):
            return True
    except OSError:
        return False


@pytest.mark.linter
@pytest.mark.xmllint
def test_xmllint(package_root):
    if not schema_available():
        pytest.skip(f'xmllint needs {SCHEMA_URL}: this ament_xmllint has no local copy and '
                    'the network cannot reach it (offline machine); the ROS CI runs it')
    rc = main(argv=[str(package_root / 'package.xml')])
    assert rc == 0, 'Found code style errors / warnings'
