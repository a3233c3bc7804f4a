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
Ground truth of a recorded ward round: who is in front of the camera, and when.

A labels file is YAML with one key, ``intervals``: a list of ``{start, end, subject}``.
``start`` and ``end`` are seconds since the start of the bag (the earliest receive
timestamp of any message, the zero of ``ros2 bag info``, rqt_bag and Foxglove); an interval
holds the camera frames received at ``start <= t < end``. ``subject`` is the enrolled
patient's id (e.g. ``P-0042``), ``stranger`` (a person who is not enrolled) or ``nobody``.
A visit may say ``masked: true`` when the person in view wears a face mask (absent: false).
Intervals must not overlap; frames outside every interval are not scored::

    intervals:
      - {start: 0.0, end: 1.5, subject: nobody}
      - {start: 1.5, end: 5.2, subject: P-0042, masked: false}
      - {start: 5.2, end: 6.8, subject: nobody}
      - {start: 6.8, end: 10.1, subject: stranger, masked: true}
"""

from dataclasses import dataclass
import math
import re

from face_id_ros.core.config import GalleryConfig, read_yaml, short_repr, sorted_keys
from face_id_ros.core.errors import FaceIdError
import yaml

STRANGER = 'stranger'
NOBODY = 'nobody'


@dataclass(frozen=True)
class Interval:
    """Seconds since the bag's start, ``start <= t < end``, who is in view, masked or not."""

    start: float
    end: float
    subject: str
    masked: bool = False

    @property
    def is_visit(self):
        """Tell whether a person (a patient or a stranger) is in view."""
        return self.subject != NOBODY

    @property
    def is_patient(self):
        """Tell whether an enrolled patient is in view."""
        return self.subject not in (NOBODY, STRANGER)

    def contains(self, seconds):
        """Tell whether a frame received ``seconds`` after the bag's start lies inside."""
        return self.start <= seconds < self.end


def parse_labels(mapping, source='labels', id_pattern=GalleryConfig().id_pattern):
    """
    Validate a labels mapping; return its intervals sorted by start.

    Raises FaceIdError naming the interval and the field that is wrong.
    """
    if not isinstance(mapping, dict) or set(mapping) != {'intervals'}:
        found = sorted_keys(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise FaceIdError(f'{source}: expected a mapping with the one key "intervals", '
                          f'got {found}')
    items = mapping['intervals']
    if not isinstance(items, list) or not items:
        raise FaceIdError(f'{source}: "intervals" must be a non-empty list')
    pattern = re.compile(id_pattern)
    intervals = sorted((_interval(item, f'{source}: interval {index + 1}', pattern)
                        for index, item in enumerate(items)), key=lambda item: item.start)
    for before, after in zip(intervals, intervals[1:]):
        if after.start < before.end:
            raise FaceIdError(f'{source}: intervals overlap: {before.subject} '
                              f'[{before.start}, {before.end}) and {after.subject} '
                              f'[{after.start}, {after.end})')
    return intervals


def load_labels(path, id_pattern=GalleryConfig().id_pattern):
    """Read and validate a labels YAML file; raise FaceIdError saying what is wrong."""
    return parse_labels(read_yaml(path, 'labels'), str(path), id_pattern)


def save_labels(path, intervals):
    """Write intervals as a labels YAML file (times rounded to the millisecond)."""
    rows = [{'start': round(item.start, 3), 'end': round(item.end, 3), 'subject': item.subject,
             **({'masked': item.masked} if item.is_visit else {})} for item in intervals]
    with open(path, 'w', encoding='utf-8') as stream:
        stream.write('# face_id_ros ward-round labels: seconds since the start of the bag, '
                     'start <= t < end\n')
        yaml.safe_dump({'intervals': rows}, stream, sort_keys=False,
                       default_flow_style=None, width=99)
    return path


def subject_at(intervals, seconds):
    """Return the interval holding a frame received ``seconds`` after the start, or None."""
    for interval in intervals:
        if interval.contains(seconds):
            return interval
    return None


def _interval(item, where, pattern):
    if not isinstance(item, dict) or not (
            {'start', 'end', 'subject'} <= set(item) <= {'start', 'end', 'subject', 'masked'}):
        found = sorted_keys(item) if isinstance(item, dict) else short_repr(item)
        raise FaceIdError(f'{where}: expected the keys start, end, subject and optionally '
                          f'masked, got {found}')
    start, end = (_seconds(item[key], f'{where}.{key}') for key in ('start', 'end'))
    if end <= start:
        raise FaceIdError(f'{where}: end {end} must be after start {start}')
    subject = item['subject']
    if not isinstance(subject, str) or not (
            subject in (STRANGER, NOBODY) or pattern.fullmatch(subject)):
        raise FaceIdError(f'{where}: subject {short_repr(subject)} is neither a patient id '
                          f'matching {pattern.pattern!r} nor "{STRANGER}" nor "{NOBODY}"')
    masked = item.get('masked', False)
    if not isinstance(masked, bool):
        raise FaceIdError(f'{where}.masked: expected true or false, got '
                          f'{short_repr(masked)}')
    if masked and subject == NOBODY:
        raise FaceIdError(f'{where}: nobody is in view, so nobody can be masked')
    return Interval(start, end, subject, masked)


def _seconds(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaceIdError(f'{where}: expected seconds since the bag start, got '
                          f'{short_repr(value)}')
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise FaceIdError(f'{where}: {short_repr(value)} must be a finite, non-negative '
                          'number of seconds since the bag start')
    return seconds
