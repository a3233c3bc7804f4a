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
Prepare a recipe's training data: pack its face folders and cache its teacher's embeddings.

``python -m face_id_ros.training.prepare --recipe config/training/X.yaml [--force]
[--export-held-out DIR]`` skips the steps already done; ``--export-held-out`` also writes the
faces the recipe keeps out of training, for ``face-id calibrate-threshold``.
"""

import argparse
import os
import time

from face_id_ros.core.errors import FaceIdError
from face_id_ros.training.data import (
    export_held_out, held_out_indices, load_pack, pack_faces, teacher_targets)
from face_id_ros.training.recipes import load_recipe


def _file_size(path):
    """Return a file's size in MB."""
    return os.path.getsize(path) / 1e6


def prepare(config, force=False, threads=2):
    """
    Pack the faces and cache the teacher targets of ``config``, skipping done steps.

    A new pack always gets new teacher targets, so the two never disagree.
    """
    repack = force or not os.path.exists(f'{config.pack}.json')
    if repack:
        started = time.monotonic()
        count = pack_faces(config.folders, config.pack, workers=threads)
        print(f'packed {count} faces in {time.monotonic() - started:.0f} s: '
              f'{config.pack}.images.npy {_file_size(config.pack + ".images.npy"):.0f} MB, '
              f'{config.pack}.json {_file_size(config.pack + ".json"):.1f} MB')
    if config.teacher and (repack or not os.path.exists(config.teacher_targets)):
        started = time.monotonic()
        targets = teacher_targets(config.pack, config.teacher, config.teacher_targets,
                                  config.teacher_mean, config.teacher_std,
                                  threads=threads)
        print(f'teacher targets {targets.shape} in {time.monotonic() - started:.0f} s: '
              f'{config.teacher_targets} {_file_size(config.teacher_targets):.1f} MB')


def main(argv=None):
    """Pack a recipe's face folders and cache its teacher's embeddings (skip done steps)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--recipe', default='config/training/distill_arcfacew.yaml')
    parser.add_argument('--force', action='store_true', help='redo steps already done')
    parser.add_argument('--threads', type=int, default=2, help='decoder and teacher threads')
    parser.add_argument('--export-held-out', metavar='DIR',
                        help='also write the faces the recipe holds out of training to DIR')
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe)  # follows its base recipes, as training does
        config = recipe.data
        prepare(config, args.force, args.threads)
        if args.export_held_out:
            count = len(load_pack(config.pack).labels)
            written = export_held_out(config.pack, held_out_indices(
                count, recipe.train.seed, config.val_fraction), args.export_held_out)
            print(f'held-out faces in {args.export_held_out}: {written}')
    except (FaceIdError, OSError) as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
