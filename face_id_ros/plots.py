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
Evaluation figures (ROC, score histograms) drawn off-screen with matplotlib's Agg canvas.

Only the command-line tool imports this module, so the runtime never needs matplotlib.
"""

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

FIGURE_SIZE_INCHES = (7.0, 5.0)
DPI = 100
MARKED_FAR = 1e-3


def plot_roc(curves, path, title):
    """Draw ROC curves {label: (far, tar)} on a log FAR axis, marking each TAR at FAR 1e-3."""
    figure, axes = _new_figure()
    smallest_far = MARKED_FAR / 10
    for label, (far, tar) in curves.items():
        far, tar = np.asarray(far, dtype=np.float64), np.asarray(tar, dtype=np.float64)
        positive = far > 0
        if positive.any():
            smallest_far = min(smallest_far, far[positive].min())
        marked_tar = tar[far <= MARKED_FAR].max(initial=0.0)
        line, = axes.plot(far[positive], tar[positive],
                          label=f'{label} (TAR {marked_tar:.3f} @ FAR 1e-3)')
        axes.plot([MARKED_FAR], [marked_tar], 'o', color=line.get_color())
    axes.axvline(MARKED_FAR, color='grey', linestyle=':', linewidth=1)
    axes.set_xscale('log')
    axes.set_xlim(smallest_far, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel('False accept rate (FAR)')
    axes.set_ylabel('True accept rate (TAR)')
    axes.set_title(title)
    axes.grid(True, which='both', alpha=0.3)
    axes.legend(loc='lower right')
    return _save(figure, path)


def plot_score_histogram(scores, same, threshold, path, title, xlabel):
    """Draw the same-person and different-person score distributions and the threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    figure, axes = _new_figure()
    bins = np.histogram_bin_edges(scores, bins=60)
    axes.hist(scores[same], bins=bins, alpha=0.6, label=f'same person ({same.sum()})')
    axes.hist(scores[~same], bins=bins, alpha=0.6, label=f'different people ({(~same).sum()})')
    axes.axvline(threshold, color='black', linestyle='--', label=f'threshold {threshold:.3f}')
    axes.set_xlabel(xlabel)
    axes.set_ylabel('Pairs')
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def _new_figure():
    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI, layout='tight')
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    # No bbox_inches='tight': the PNG keeps the fixed FIGURE_SIZE_INCHES x DPI pixel size.
    figure.savefig(path, format='png', dpi=DPI)
    return path
