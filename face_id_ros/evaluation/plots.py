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
Evaluation figures (ROC, score histograms, ward-round timelines), drawn off-screen (Agg).

Only evaluation imports this module, so the runtime and the nodes never need matplotlib.
"""

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

FIGURE_SIZE_INCHES = (7.0, 5.0)
DPI = 100
MARKED_FAR = 1e-3
TIMELINE_SIZE_INCHES = (14.0, 4.0)
SOAK_SIZE_INCHES = (9.0, 6.0)
SUBJECT_COLOURS = {'nobody': 'whitesmoke', 'stranger': 'tab:orange', 'patient': 'tab:blue'}
DECISION_COLOURS = {'correct': 'tab:green', 'wrong': 'tab:red', 'unknown': 'tab:gray',
                    'pending': 'gold'}


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


def plot_ward_timeline(spans, decisions, path, title):
    """
    Draw who was in view (top row) against what was published (bottom row) over time.

    ``spans`` are ``(start, end, subject, masked)`` in seconds; a masked visit is hatched
    and labelled so. ``decisions`` are ``(seconds, outcome)`` per processed frame with a
    face, outcome one of ``DECISION_COLOURS``.
    """
    figure, axes = _new_figure(TIMELINE_SIZE_INCHES)
    for start, end, subject, masked in spans:
        colour = SUBJECT_COLOURS.get(subject, SUBJECT_COLOURS['patient'])
        axes.broken_barh([(start, end - start)], (1.1, 0.8), facecolor=colour,
                         hatch='////' if masked else None, edgecolor='white', linewidth=0)
        if subject != 'nobody':
            axes.text((start + end) / 2, 2.0, f'{subject} (masked)' if masked else subject,
                      rotation=90, fontsize=6, ha='center', va='bottom')
    for outcome, colour in DECISION_COLOURS.items():
        times = [seconds for seconds, kind in decisions if kind == outcome]
        axes.vlines(times, 0.1, 0.9, color=colour, linewidth=0.6,
                    label=f'{outcome} ({len(times)} frames)')
    axes.set_ylim(0.0, 3.0)
    axes.set_yticks([0.5, 1.5], ['published', 'in view'])
    axes.set_xlabel('seconds since the bag start')
    axes.set_title(title)
    axes.legend(loc='upper right', fontsize=7, ncol=len(DECISION_COLOURS))
    return _save(figure, path)


def plot_score_trace(times, cosines, is_subject, threshold, path, title):
    """Draw each processed face's best cosine over time, marking whether it named the truth."""
    figure, axes = _new_figure(TIMELINE_SIZE_INCHES)
    times, cosines = np.asarray(times, np.float64), np.asarray(cosines, np.float64)
    is_subject = np.asarray(is_subject, dtype=bool)
    axes.plot(times[is_subject], cosines[is_subject], '.', markersize=2, color='tab:green',
              label=f'best candidate is the person in view ({is_subject.sum()})')
    axes.plot(times[~is_subject], cosines[~is_subject], '.', markersize=2, color='tab:red',
              label=f'best candidate is someone else ({(~is_subject).sum()})')
    axes.axhline(threshold, color='black', linestyle='--', label=f'threshold {threshold:.3f}')
    axes.set_xlabel('seconds since the bag start')
    axes.set_ylabel('best cosine similarity')
    axes.set_title(title)
    axes.legend(loc='lower right', fontsize=7)
    return _save(figure, path)


def plot_latency_histogram(latencies_ms, path, title):
    """Draw per-frame latency distributions ``{label: milliseconds}`` with their medians."""
    figure, axes = _new_figure()
    values = [np.asarray(item, np.float64) for item in latencies_ms.values() if len(item)]
    bins = np.histogram_bin_edges(np.concatenate(values), bins=60) if values else 10
    for label, milliseconds in latencies_ms.items():
        if len(milliseconds):
            axes.hist(milliseconds, bins=bins, alpha=0.6,
                      label=f'{label} (median {np.median(milliseconds):.1f} ms)')
    axes.set_xlabel('milliseconds per frame')
    axes.set_ylabel('frames')
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def plot_soak(memory_minutes, rss_mib, anon_mib, minutes, p50_ms, p99_ms, path, title):
    """Draw resident memory (total and anonymous) over per-minute latency p50/p99 of a soak."""
    figure = Figure(figsize=SOAK_SIZE_INCHES, dpi=DPI, layout='tight')
    FigureCanvasAgg(figure)
    memory, latency = figure.subplots(2, 1, sharex=True)
    memory.plot(memory_minutes, rss_mib, color='tab:blue', linewidth=1, label='resident')
    memory.plot(memory_minutes, anon_mib, color='tab:purple', linewidth=1,
                label='anonymous resident (heap: where a leak grows)')
    memory.set_ylim(bottom=0.0)
    memory.legend(loc='lower right')
    memory.set_ylabel('memory (MiB)')
    memory.set_title(title)
    memory.grid(True, alpha=0.3)
    latency.plot(minutes, p50_ms, 'o-', markersize=3, label='p50 per minute')
    latency.plot(minutes, p99_ms, 's-', markersize=3, label='p99 per minute')
    latency.set_ylim(bottom=0.0)
    latency.set_xlabel('minutes since the start')
    latency.set_ylabel('latency (ms per frame)')
    latency.grid(True, alpha=0.3)
    latency.legend()
    return _save(figure, path)


def _new_figure(size=FIGURE_SIZE_INCHES):
    figure = Figure(figsize=size, dpi=DPI, layout='tight')
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    # No bbox_inches='tight': the PNG keeps the fixed FIGURE_SIZE_INCHES x DPI pixel size.
    figure.savefig(path, format='png', dpi=DPI)
    return path
