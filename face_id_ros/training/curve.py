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
The learning curve of a model trained across sessions: hours vs held-out cosine vs LFW.

``python -m face_id_ros.training.curve --run runs/X --curve models/X/curve.csv
--lfw ../shared/data/eval/lfw [--hours-before H] [--label L]`` scores every export the run
kept (``exports.csv``, written by training) that the curve does not hold yet on LFW View 2
with the runtime's alignment, appends a row each (steps, hours of steps over all sessions,
held-out cosine, LFW) and redraws ``curve.png`` beside the CSV. LFW is reported, never
selected on: a candidate is kept on its held-out cosine. The aligned LFW crops are cached
(``--crops``, outside the work tree), so a point costs one pass of the embedder.
"""

import argparse
import csv
from datetime import datetime, timezone
import hashlib
from pathlib import Path

from face_id_ros.core.errors import FaceIdError
from face_id_ros.training.ablation import aligned_lfw, score_row
from matplotlib.figure import Figure

COLUMNS = ('label', 'date', 'steps', 'hours', 'val_teacher_cosine', 'lfw_accuracy',
           'lfw_std', 'lfw_tar_far_1e_3', 'model_sha256')


def new_exports(run_dir, curve):
    """Return the rows of a run's exports.csv whose model the curve does not hold yet."""
    with open(Path(run_dir) / 'exports.csv', encoding='utf-8') as stream:
        exports = list(csv.DictReader(stream))
    known = set()
    if Path(curve).exists():
        with open(curve, encoding='utf-8') as stream:
            known = {row['model_sha256'] for row in csv.DictReader(stream)}
    return [row for row in exports
            if _sha256(Path(run_dir) / row['model'])[:16] not in known]


def add_point(curve, row):
    """Append ``row`` to the curve CSV (header when new) and redraw curve.png beside it."""
    curve = Path(curve)
    curve.parent.mkdir(parents=True, exist_ok=True)
    new = not curve.exists()
    with open(curve, 'a', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    plot_curve(curve, curve.with_suffix('.png'))


def plot_curve(curve, out):
    """Draw hours against held-out cosine and LFW accuracy, one line per label."""
    with open(curve, encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    figure = Figure(figsize=(11, 4))
    cosine_axes, lfw_axes = figure.subplots(1, 2)
    for label in dict.fromkeys(row['label'] for row in rows):
        mine = [row for row in rows if row['label'] == label]
        hours = [float(row['hours']) for row in mine]
        cosine_axes.plot(hours, [float(row['val_teacher_cosine']) for row in mine],
                         marker='o', label=label)
        lfw_axes.plot(hours, [100 * float(row['lfw_accuracy']) for row in mine],
                      marker='o', label=label)
    cosine_axes.set(xlabel='hours of training steps (all sessions)',
                    ylabel='student-teacher cosine', title='held-out training-side faces')
    lfw_axes.set(xlabel='hours of training steps (all sessions)', ylabel='accuracy (%)',
                 title='LFW View 2, 10 folds (reported, never selected on)')
    for axes in (cosine_axes, lfw_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def _sha256(path):
    with open(path, 'rb') as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def main(argv=None):
    """Score a run's new exports on LFW and add them to the learning curve."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--run', required=True, help='training output folder')
    parser.add_argument('--curve', required=True, help='curve CSV, e.g. models/X/curve.csv')
    parser.add_argument('--lfw', required=True, help='folder with pairs.txt and images/')
    parser.add_argument('--crops', default='../face_id_cache/lfw_aligned.npy',
                        help='cache of the aligned LFW crops')
    parser.add_argument('--hours-before', type=float, default=0.0,
                        help='training hours of the model the run started from')
    parser.add_argument('--label', default='', help='line of the plot (default: run name)')
    args = parser.parse_args(argv)
    try:
        exports = new_exports(args.run, args.curve)
        if exports:
            pairs, paths, crops = aligned_lfw(args.lfw, args.crops)
        for export in exports:
            model = Path(args.run) / export['model']
            result = score_row(model, pairs, paths, crops)
            hours = args.hours_before + float(export['run_hours'])
            row = {'label': args.label or Path(args.run).name,
                   'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M'),
                   'steps': export['steps'], 'hours': f'{hours:.3f}',
                   'val_teacher_cosine': export['val_teacher_cosine'],
                   'lfw_accuracy': f'{result["lfw_accuracy"]:.5f}',
                   'lfw_std': f'{result["lfw_std"]:.5f}',
                   'lfw_tar_far_1e_3': f'{result["tar_at_far_1e_3"]:.5f}',
                   'model_sha256': _sha256(model)[:16]}
            add_point(args.curve, row)
            print(f'{row["label"]}: step {row["steps"]}, {hours:.2f} h, held-out cosine '
                  f'{row["val_teacher_cosine"]}, LFW {100 * result["lfw_accuracy"]:.2f}% '
                  f'± {100 * result["lfw_std"]:.2f}, TAR@FAR=1e-3 '
                  f'{100 * result["tar_at_far_1e_3"]:.2f}%; {args.curve}')
    except (FaceIdError, OSError) as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
