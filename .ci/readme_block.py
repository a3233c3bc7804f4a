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
Print the shell block of README.md marked ``<!-- ci: NAME -->``, so CI runs it as written.

The marker stands on the line before the block's opening fence. The ROS CI runs the
``ros-humble`` and ``ros-jazzy`` blocks (.github/workflows/ros.yml); the unit tests check
that ``test`` is the command .ci/run calls. Standard library only.
"""

import argparse
import sys


def readme_block(text, name):
    """Return the lines of the fenced block after ``<!-- ci: name -->``; raise KeyError."""
    lines = text.splitlines()
    marker = f'<!-- ci: {name} -->'
    if marker not in lines:
        raise KeyError(f'no {marker} in the README')
    start = lines.index(marker) + 1
    if start >= len(lines) or not lines[start].startswith('```'):
        raise KeyError(f'{marker} is not followed by a fenced block')
    for end in range(start + 1, len(lines)):
        if lines[end].startswith('```'):
            return lines[start + 1:end]
    raise KeyError(f'the block after {marker} is not closed')


def main(argv=None):
    """Print the named block; return 0, or 2 when the README has no such block."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('readme', help='README.md')
    parser.add_argument('name', help='block name, e.g. ros-humble')
    args = parser.parse_args(argv)
    with open(args.readme, encoding='utf-8') as readme:
        text = readme.read()
    try:
        lines = readme_block(text, args.name)
    except KeyError as error:
        print(f'{args.readme}: {error.args[0]}', file=sys.stderr)
        return 2
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
