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
What the face_id_node reports about itself, computed without ROS.

``NodeStatistics`` counts frames in (camera callback) and out (worker thread) and measures
rates, failures and latency over a recent window; ``diagnostic_report`` turns them and the
loaded model and gallery into the level, message and key-values of one
``diagnostic_msgs/DiagnosticStatus``; ``vision_info_fields`` fills ``/face_id/gallery_info``.
"""

from collections import deque
from dataclasses import dataclass
import threading

import numpy as np

# Frames older than this on the input mean the camera (or its topic name) is wrong.
INPUT_STALE_S = 2.0
# Rates, failures and latencies are measured over this recent window, so the report
# recovers once the camera, the frames or the clocks are right again.
WINDOW_S = 5.0


class RateMeter:
    """Events per second over a sliding window of recent event times (seconds)."""

    def __init__(self, window_s=WINDOW_S):
        """Start with no events; ``window_s`` is the averaging window."""
        self.window_s = window_s
        self._times = deque()

    def tick(self, now):
        """Record one event at ``now``."""
        self._times.append(now)
        self._forget(now)

    def rate(self, now):
        """Return events per second over the window ending at ``now``."""
        self._forget(now)
        if len(self._times) < 2:
            return 0.0
        # Intervals up to now: a stream that stopped decays towards zero.
        span = now - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def last(self):
        """Return the time of the latest event, or None."""
        return self._times[-1] if self._times else None

    def _forget(self, now):
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class RecentValues:
    """Values with the times they were seen, keeping those of a sliding window (seconds)."""

    def __init__(self, window_s=WINDOW_S):
        """Start empty; ``window_s`` is how long a value counts."""
        self.window_s = window_s
        self._items = deque()

    def add(self, now, value):
        """Record ``value`` seen at ``now``."""
        self._items.append((now, value))
        self._forget(now)

    def values(self, now):
        """Return the values seen within the window ending at ``now``, oldest first."""
        self._forget(now)
        return [value for _, value in self._items]

    def _forget(self, now):
        while self._items and now - self._items[0][0] > self.window_s:
            self._items.popleft()


@dataclass(frozen=True)
class LoadedModel:
    """The model and gallery a configured node uses, as reported to people."""

    model_name: str
    model_version: str
    model_fingerprint: str
    gallery_path: str
    gallery_revision: int
    patients: int


@dataclass(frozen=True)
class DiagnosticReport:
    """One DiagnosticStatus: level name (OK, WARN, ERROR), message and key-value pairs."""

    level: str
    message: str
    values: tuple


class NodeStatistics:
    """
    Thread-safe counters of frames received, dropped, processed and failed.

    The counts are totals since start; rates, failures and latencies are also reported over
    the last ``window_s`` seconds, which is what the node's health is judged on.
    """

    def __init__(self, window_s=WINDOW_S):
        """Start with every count at zero."""
        self.window_s = window_s
        self._lock = threading.Lock()
        self._input = RateMeter(window_s)
        self._output = RateMeter(window_s)
        self._latencies = RecentValues(window_s)
        self._processing = RecentValues(window_s)
        self._failures = RecentValues(window_s)
        self.received = 0
        self.dropped = 0
        self.processed = 0
        self.failed = 0
        self.last_error = ''

    def frame_received(self, now, replaced_waiting_frame):
        """Count a camera frame; ``replaced_waiting_frame`` means the older one was dropped."""
        with self._lock:
            self._input.tick(now)
            self.received += 1
            self.dropped += int(replaced_waiting_frame)

    def frame_processed(self, now, latency_s, processing_s):
        """Count a published result; latency is from the image stamp to publication."""
        with self._lock:
            self._output.tick(now)
            self.processed += 1
            self._latencies.add(now, latency_s)
            self._processing.add(now, processing_s)

    def frame_failed(self, now, reason):
        """Count a frame that could not be decoded or processed at ``now``, with the reason."""
        with self._lock:
            self.failed += 1
            self.last_error = str(reason)
            self._failures.add(now, self.last_error)

    def summary(self, now):
        """
        Return a dict of the current rates, counts and latency percentiles.

        ``failed`` is the total since start, ``failed_recent`` and ``recent_error`` (the
        latest reason, or '') cover the window, as do the rates and latencies.
        """
        with self._lock:
            last_input = self._input.last()
            failures = self._failures.values(now)
            latencies = self._latencies.values(now)
            processing = self._processing.values(now)
            return {
                'window_s': self.window_s,
                'input_rate_hz': self._input.rate(now),
                'processing_rate_hz': self._output.rate(now),
                'received': self.received,
                'dropped': self.dropped,
                'processed': self.processed,
                'failed': self.failed,
                'failed_recent': len(failures),
                'recent_error': failures[-1] if failures else '',
                'last_error': self.last_error,
                'input_age_s': None if last_input is None else now - last_input,
                'latency_ms_median': _percentile_ms(latencies, 50),
                'latency_ms_p95': _percentile_ms(latencies, 95),
                'processing_ms_median': _percentile_ms(processing, 50),
            }


def diagnostic_report(summary, loaded, camera_topic, max_stamp_offset_s, sync=None,
                      now=None):
    """
    Judge the node's health from a ``NodeStatistics.summary`` and the LoadedModel.

    ERROR: no model or gallery loaded. WARN: no camera frames lately, frames failing lately,
    image stamps and the node's clock more than ``max_stamp_offset_s`` apart (median
    latency: the medication gate then finds every face stale), nobody enrolled (every
    face is then ``unknown``), or the gallery server unreachable ("gallery offline since
    ..., revision N": identifying from the local cache). OK otherwise. ``camera_topic`` is
    the topic subscribed to; ``sync`` the SyncStatus of a server gallery (None: SQLite) and
    ``now`` the wall-clock time its age is measured at.
    """
    if loaded is None:
        return DiagnosticReport('ERROR', 'model and gallery not loaded (node unconfigured)',
                                (('model loaded', 'false'), ('gallery loaded', 'false')))
    problems = []
    age = summary['input_age_s']
    if age is None or age > INPUT_STALE_S:
        problems.append(f'no camera frames on {camera_topic}'
                        + ('' if age is None else f' for {age:.1f} s'))
    window = f'{summary["window_s"]:g} s'
    if summary['failed_recent']:
        problems.append(f'{summary["failed_recent"]} frame(s) failed in the last {window}: '
                        f'{summary["recent_error"]}')
    clock = clock_disagreement(summary['latency_ms_median'], max_stamp_offset_s)
    if clock:
        problems.append(clock)
    if loaded.patients == 0:
        problems.append('gallery has no enrolled patients: every face is unknown')
    if sync is not None and not sync.online:
        problems.append(sync.describe())
    if problems:
        level, message = 'WARN', '; '.join(problems)
    else:
        level = 'OK'
        message = f'identifying at {summary["processing_rate_hz"]:.1f} Hz'
    values = (
        ('model loaded', 'true'),
        ('gallery loaded', 'true'),
        ('model', f'{loaded.model_name} {loaded.model_version}'),
        ('model fingerprint', loaded.model_fingerprint),
        ('gallery', loaded.gallery_path),
        ('gallery revision', str(loaded.gallery_revision)),
        ('gallery size (patients)', str(loaded.patients)),
        ('camera topic', camera_topic),
        ('input rate (Hz)', f'{summary["input_rate_hz"]:.2f}'),
        ('processing rate (Hz)', f'{summary["processing_rate_hz"]:.2f}'),
        ('frames received', str(summary['received'])),
        ('frames dropped', str(summary['dropped'])),
        ('frames processed', str(summary['processed'])),
        ('frames failed', str(summary['failed'])),
        (f'frames failed (last {window})', str(summary['failed_recent'])),
        ('last failure', summary['last_error'] or 'none'),
        ('latency median (ms)', _format_ms(summary['latency_ms_median'])),
        ('latency p95 (ms)', _format_ms(summary['latency_ms_p95'])),
        ('processing median (ms)', _format_ms(summary['processing_ms_median'])),
    ) + sync_values(sync, now)
    return DiagnosticReport(level, message, values)


def sync_values(sync, now):
    """Return the diagnostics key-values of a server gallery's SyncStatus (none for SQLite)."""
    if sync is None:
        return ()
    age = sync.age_s(now)
    return (
        ('gallery server', sync.server),
        ('gallery server reachable', 'true' if sync.online else 'false'),
        ('gallery revision age (s)', 'never synced' if age is None else f'{age:.1f}'),
        ('gallery sync error', sync.last_error or 'none'),
    )


def clock_disagreement(latency_ms_median, max_stamp_offset_s):
    """
    Say how far image stamps and the node's clock disagree, or return '' within the bound.

    The latency runs from the image stamp to publication on the node's clock, so a median
    beyond ``max_stamp_offset_s`` means stamps behind the clock (a bag replayed without
    ``--clock``, a camera clock running late) and a negative one stamps ahead of it
    (``use_sim_time`` without a clock, a camera clock running early).
    """
    if latency_ms_median is None:
        return ''
    offset_s = latency_ms_median / 1000.0
    if abs(offset_s) <= max_stamp_offset_s:
        return ''
    side = 'behind' if offset_s > 0 else 'ahead of'
    return (f'image stamps are {_format_duration(abs(offset_s))} {side} the node clock '
            f'(median latency, bound {max_stamp_offset_s:g} s): the medication gate denies '
            'such frames; synchronise the camera and robot clocks, or play bags with --clock '
            'and use_sim_time')


def vision_info_fields(loaded):
    """Return the ``vision_msgs/VisionInfo`` fields (bar the header) for a LoadedModel."""
    return {
        'method': f'{loaded.model_name} {loaded.model_version} '
                  f'sha256:{loaded.model_fingerprint[:16]}',
        'database_location': loaded.gallery_path,
        'database_version': int(loaded.gallery_revision),
    }


def _percentile_ms(values, percent):
    return float(np.percentile(list(values), percent)) * 1000.0 if values else None


def _format_ms(value):
    return 'n/a' if value is None else f'{value:.1f}'


def _format_duration(seconds):
    if seconds < 120.0:
        return f'{seconds:.2f} s'
    if seconds < 2 * 86400.0:
        return f'{seconds / 3600.0:.1f} h'
    return f'{seconds / 86400.0:.1f} days'
