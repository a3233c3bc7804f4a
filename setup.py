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

"""Build and install face_id_ros with pip or colcon (ament_python)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE_NAME = 'face_id_ros'

# Installed under share/face_id_ros/<folder>; a folder that is empty or absent is skipped.
SHARED_FILE_GLOBS = (
    'launch/*.py',
    'config/*.yaml',
    'config/training/*.yaml',
    'models/*.onnx',
    'models/*.md',
)


def shared_data_files():
    """List the (install folder, files) pairs that colcon and pip copy into share/."""
    data_files = [
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE_NAME]),
        (os.path.join('share', PACKAGE_NAME), ['package.xml']),
    ]
    for pattern in SHARED_FILE_GLOBS:
        files = sorted(glob(pattern))
        if files:
            data_files.append((os.path.join('share', PACKAGE_NAME, os.path.dirname(pattern)),
                               files))
    return data_files


def pip_only_requirements():
    """Read requirements.txt: the runtime dependencies that rosdep cannot install."""
    with open('requirements.txt', encoding='utf-8') as requirements:
        lines = (line.strip() for line in requirements)
        return [line for line in lines if line and not line.startswith('#')]


setup(
    name=PACKAGE_NAME,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=shared_data_files(),
    python_requires='>=3.10',
    install_requires=[
        # AES-GCM for the gallery's templates; 3.4 is Ubuntu 22.04's (Humble) python3-cryptography.
        'cryptography>=3.4',
        'matplotlib',
        'numpy<2',
        'opencv-contrib-python>=4.8,<5',
        'pyyaml',
        'tqdm',
    ] + pip_only_requirements(),
    extras_require={
        'train': ['onnx', 'torch'],
        'test': [
            # The flake8 plugins a ROS CI runs with ament_flake8, so linting is as strict here.
            'flake8-builtins',
            'flake8-comprehensions',
            'flake8-docstrings',
            'flake8-import-order',
            'flake8-quotes',
            # Property tests of the decoders and loaders (test/test_fuzzing.py).
            'hypothesis',
            'onnx',
            # The PostgreSQL gallery's driver, tested against a throw-away server.
            'psycopg[binary]>=3.1',
            'pytest',
        ],
        # A hospital's PostgreSQL gallery (gallery.url); SQLite-only robots need no driver.
        'postgres': ['psycopg[binary]>=3.1'],
    },
    zip_safe=True,
    maintainer='face_id_ros maintainers',
    maintainer_email='face-id-ros@example.com',
    description='Patient face identification for nursing robots (ROS 2 and offline tools).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'face-id = face_id_ros.cli.parser:main',
            # ROS 2 nodes (`ros2 run face_id_ros <name>`); they need rclpy.
            'face_id_node = face_id_ros.nodes.face_id_node:main',
            'enroll = face_id_ros.nodes.enroll_node:main',
            'medication_gate = face_id_ros.nodes.medication_gate:main',
            'rep155_identifier = face_id_ros.nodes.rep155_identifier_node:main',
        ],
    },
)
