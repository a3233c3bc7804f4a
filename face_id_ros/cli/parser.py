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

"""``face-id``: enrol, administer the gallery, identify, evaluate and benchmark, without ROS."""

import argparse
import sys

from face_id_ros.cli import benchmarks, fuzz, runtime, ward
from face_id_ros.core.errors import FaceIdError


def main(argv=None):
    """Run the ``face-id`` command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except FaceIdError as error:
        print(f'face-id: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser():
    """Build the argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog='face-id', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    for group in (runtime, benchmarks, ward, fuzz):
        group.add_commands(commands)
    return parser
