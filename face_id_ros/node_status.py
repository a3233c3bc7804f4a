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
rates and latency; ``diagnostic_report`` turns them and the loaded model and gallery into
the level, message and key-values of one ``diagnostic_msgs/DiagnosticStatus``;
``vision_info_fields`` fills ``/face_id/gallery_info``.
"""

from collections import deque
from dataclasses import dataclass
import threading

import numpy as np

# Frames older than this on the input mean the camera (or its topic name) is wrong.
INPUT_STALE_S = 2.0
# Rates and latencies are measured over this recent window.
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
    """Thread-safe counters of frames received, dropped, processed and failed."""

    def __init__(self, window_s=WINDOW_S):
        """Start with every count at zero."""
        self._lock = threading.Lock()
        self._input = RateMeter(window_s)
        self._output = RateMeter(window_s)
        self._latencies = deque(maxlen=100)
        self._processing = deque(maxlen=100)
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
            self._latencies.append(latency_s)
            self._processing.append(processing_s)

    def frame_failed(self, reason):
        """Count a frame that could not be decoded or processed, keeping the reason."""
        with self._lock:
            self.failed += 1
            self.last_error = str(reason)

    def summary(self, now):
        """Return a dict of the current rates, counts and latency percentiles."""
        with self._lock:
            last_input = self._input.last()
            return {
                'input_rate_hz': self._input.rate(now),
                'processing_rate_hz': self._output.rate(now),
                'received': self.received,
                'dropped': self.dropped,
                'processed': self.processed,
                'failed': self.failed,
                'last_error': self.last_error,
                'input_age_s': None if last_input is None else now - last_input,
                'latency_ms_median': _percentile_ms(self._latencies, 50),
                'latency_ms_p95': _percentile_ms(self._latencies, 95),
                'processing_ms_median': _percentile_ms(self._processing, 50),
            }


def diagnostic_report(summary, loaded, camera_topic):
    """
    Judge the node's health from a ``NodeStatistics.summary`` and the LoadedModel.

    ERROR: no model or gallery loaded. WARN: no camera frames lately, frames failing, or
    nobody enrolled (every face is then ``unknown``). OK otherwise.
    """
    if loaded is None:
        return DiagnosticReport('ERROR', 'model and gallery not loaded (node unconfigured)',
                                (('model loaded', 'false'), ('gallery loaded', 'false')))
    problems = []
    age = summary['input_age_s']
    if age is None or age > INPUT_STALE_S:
        problems.append(f'no camera frames on {camera_topic}'
                        + ('' if age is None else f' for {age:.1f} s'))
    if summary['failed'] and summary['last_error']:
        problems.append(f'{summary["failed"]} frame(s) failed: {summary["last_error"]}')
    if loaded.patients == 0:
        problems.append('gallery has no enrolled patients: every face is unknown')
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
        ('latency median (ms)', _format_ms(summary['latency_ms_median'])),
        ('latency p95 (ms)', _format_ms(summary['latency_ms_p95'])),
        ('processing median (ms)', _format_ms(summary['processing_ms_median'])),
    )
    return DiagnosticReport(level, message, values)


def vision_info_fields(loaded):
    """Return the ``vision_msgs/VisionInfo`` fields (bar the header) for a LoadedModel."""
    return {
        'method': f'{loaded.model_name} {loaded.model_version} '
                  f'sha256:{loaded.model_fingerprint[:16]}',
        'database_location': loaded.gallery_path,
        'database_version': int(loaded.gallery_revision),
    }


def stamp_seconds(stamp):
    """Return a ``builtin_interfaces/Time`` (rclpy or rosbags) as float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def _percentile_ms(values, percent):
    return float(np.percentile(list(values), percent)) * 1000.0 if values else None


def _format_ms(value):
    return 'n/a' if value is None else f'{value:.1f}'
