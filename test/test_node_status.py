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

"""The face_id_node's rates, diagnostics and gallery info, computed without ROS."""

from face_id_ros.core.newest_frame import NewestFrameSlot
from face_id_ros.core.ros_messages import rosbags_typestore, stamp_seconds
from face_id_ros.nodes.node_status import (diagnostic_report, LoadedModel, NodeStatistics,
                                           RateMeter, vision_info_fields)
import pytest

LOADED = LoadedModel('mobilefacenet', '1.2', 'ab' * 32, '/ward/gallery.db', 12, 30)
MAX_STAMP_OFFSET_S = 1.0


def report_of(summary, loaded=LOADED, topic='/cam'):
    return diagnostic_report(summary, loaded, topic, MAX_STAMP_OFFSET_S)


def test_rate_meter_measures_a_steady_stream_and_decays_when_it_stops():
    meter = RateMeter(window_s=5.0)
    for index in range(31):
        meter.tick(index / 10.0)
    assert meter.rate(3.0) == pytest.approx(10.0, rel=0.05)
    # Stopped at 3 s: at 6.05 s the window holds 20 events over 4.95 s; it keeps decaying.
    assert meter.rate(6.05) == pytest.approx(19 / 4.95)
    assert meter.rate(20.0) == 0.0 and meter.last() is None


def test_statistics_count_what_the_newest_frame_slot_drops():
    slot, statistics = NewestFrameSlot(), NodeStatistics()
    for index in range(10):
        statistics.frame_received(index * 0.01, slot.offer(index))
        if index % 3 == 2:  # the worker keeps up with one frame in three
            slot.take(timeout=0)
            statistics.frame_processed(index * 0.01, 0.020 + index * 0.001, 0.010)
    summary = statistics.summary(0.1)
    assert (summary['received'], summary['dropped']) == (slot.received, slot.dropped) == (10, 6)
    assert summary['processed'] == 3
    assert summary['latency_ms_median'] == pytest.approx(25.0)
    assert summary['processing_ms_median'] == pytest.approx(10.0)
    assert summary['input_age_s'] == pytest.approx(0.01)


def stream(statistics, start_s, end_s, latency_s=0.03, rate_hz=15.0):
    """Feed frames received and processed at ``rate_hz`` from ``start_s`` up to ``end_s``."""
    for index in range(round((end_s - start_s) * rate_hz)):
        now = start_s + index / rate_hz
        statistics.frame_received(now, False)
        statistics.frame_processed(now, latency_s, 0.012)


def _healthy_summary():
    statistics = NodeStatistics()
    stream(statistics, 0.0, 20 / 15.0)
    return statistics.summary(19 / 15.0)


def test_a_healthy_node_reports_ok_with_every_value_people_need():
    report = report_of(_healthy_summary(), topic='/camera/image_raw')
    assert report.level == 'OK'
    assert report.message == 'identifying at 15.0 Hz'
    values = dict(report.values)
    assert values['model loaded'] == values['gallery loaded'] == 'true'
    assert values['gallery revision'] == '12'
    assert values['gallery size (patients)'] == '30'
    assert values['input rate (Hz)'] == values['processing rate (Hz)'] == '15.00'
    assert values['frames dropped'] == '0'
    assert values['latency median (ms)'] == '30.0'
    assert values['model'] == 'mobilefacenet 1.2'
    assert values['frames failed'] == values['frames failed (last 5 s)'] == '0'
    assert values['last failure'] == 'none'


def test_a_robot_cut_off_from_the_gallery_server_warns_with_its_revision_and_age():
    import time
    from face_id_ros.core.gallery_sync import SyncStatus
    since = time.mktime((2026, 12, 7, 9, 30, 0, 0, 0, -1))
    offline = SyncStatus('postgresql://face_id@db/face_id', False, 12, 30, since - 5.0, since,
                         'cannot reach gallery server: connection refused')
    report = diagnostic_report(_healthy_summary(), LOADED, '/cam', MAX_STAMP_OFFSET_S,
                               offline, since + 65.0)
    assert report.level == 'WARN'
    assert report.message.startswith('gallery offline since 2026-12-07 09:30:00, revision 12 '
                                     'from the local cache: cannot reach gallery server')
    values = dict(report.values)
    assert values['gallery revision age (s)'] == '70.0'
    assert values['gallery server reachable'] == 'false'
    online = SyncStatus('postgresql://face_id@db/face_id', True, 12, 30, since, None, '')
    report = diagnostic_report(_healthy_summary(), LOADED, '/cam', MAX_STAMP_OFFSET_S,
                               online, since + 1.5)
    assert report.level == 'OK' and dict(report.values)['gallery revision age (s)'] == '1.5'


def test_problems_are_warned_about_and_an_unloaded_node_is_an_error():
    statistics = NodeStatistics()
    report = report_of(statistics.summary(10.0))
    assert report.level == 'WARN' and 'no camera frames on /cam' in report.message
    assert dict(report.values)['latency median (ms)'] == 'n/a'
    statistics.frame_received(10.0, False)
    statistics.frame_failed(10.0, 'unsupported image encoding 16UC1')
    empty = LoadedModel('m', '1', 'ff' * 32, '/g.db', 0, 0)
    report = report_of(statistics.summary(10.5), empty)
    assert report.level == 'WARN'
    assert ('1 frame(s) failed in the last 5 s: unsupported image encoding 16UC1'
            in report.message)
    assert 'no enrolled patients' in report.message
    assert 'no camera frames' not in report.message
    assert report_of(statistics.summary(30.0)).message.startswith(
        'no camera frames on /cam for 20.0 s')
    assert report_of(_healthy_summary(), None).level == 'ERROR'


def test_one_bad_frame_warns_for_the_window_then_good_frames_are_ok_again():
    statistics = NodeStatistics(window_s=5.0)
    stream(statistics, 0.0, 2.0)
    statistics.frame_failed(2.0, 'ImageDecodeError: truncated JPEG')
    stream(statistics, 2.0, 6.0)
    report = report_of(statistics.summary(6.0))
    assert report.level == 'WARN'
    assert report.message == ('1 frame(s) failed in the last 5 s: '
                              'ImageDecodeError: truncated JPEG')
    # 70 s of good frames later the node is healthy again; the total stays a value.
    stream(statistics, 6.0, 76.0)
    report = report_of(statistics.summary(76.0))
    assert report.level == 'OK', report.message
    values = dict(report.values)
    assert values['frames failed'] == '1'
    assert values['frames failed (last 5 s)'] == '0'
    assert values['last failure'] == 'ImageDecodeError: truncated JPEG'


def test_failures_in_the_window_are_counted_and_the_newest_reason_shown():
    statistics = NodeStatistics(window_s=5.0)
    statistics.frame_failed(1.0, 'first')
    for now in (4.0, 5.0, 6.5):
        statistics.frame_failed(now, f'at {now}')
    stream(statistics, 6.0, 7.0)
    summary = statistics.summary(7.0)
    assert (summary['failed'], summary['failed_recent']) == (4, 3)
    assert summary['recent_error'] == 'at 6.5'


@pytest.mark.parametrize('latency_s, side, amount', [
    (334 * 86400.0, 'behind', '334.0 days'),   # a bag from 334 days ago, played without --clock
    (2.5, 'behind', '2.50 s'),
    (-1.7e9, 'ahead of', '19675.9 days'),      # use_sim_time with no /clock: the node is at 0
    (-3.0 * 3600, 'ahead of', '3.0 h'),        # a camera clock in another time zone
])
def test_stamps_and_node_clock_that_disagree_are_warned_about_saying_which_is_ahead(
        latency_s, side, amount):
    statistics = NodeStatistics()
    stream(statistics, 0.0, 3.0, latency_s=latency_s)
    report = report_of(statistics.summary(3.0))
    assert report.level == 'WARN'
    assert report.message.startswith(f'image stamps are {amount} {side} the node clock '
                                     '(median latency, bound 1 s)')
    assert 'medication gate denies' in report.message


def test_stamps_within_the_bound_are_ok_and_the_check_looks_at_recent_frames_only():
    statistics = NodeStatistics(window_s=5.0)
    stream(statistics, 0.0, 3.0, latency_s=0.9)
    assert report_of(statistics.summary(3.0)).level == 'OK'
    assert diagnostic_report(statistics.summary(3.0), LOADED, '/cam', 0.5).message.startswith(
        'image stamps are 0.90 s behind')
    # A bag played without --clock, then again with it: the warning goes with the old frames.
    stream(statistics, 3.0, 6.0, latency_s=3.0e7)
    assert 'behind the node clock' in report_of(statistics.summary(6.0)).message
    stream(statistics, 6.0, 12.0, latency_s=0.05)
    assert report_of(statistics.summary(12.0)).level == 'OK'


def test_gallery_info_serialises_as_a_real_vision_info():
    store = rosbags_typestore('ROS2_JAZZY')
    Header, Time = store.types['std_msgs/msg/Header'], store.types['builtin_interfaces/msg/Time']
    message = store.types['vision_msgs/msg/VisionInfo'](
        header=Header(stamp=Time(sec=5, nanosec=250000000), frame_id=''),
        **vision_info_fields(LOADED))
    decoded = store.deserialize_cdr(store.serialize_cdr(message, 'vision_msgs/msg/VisionInfo'),
                                    'vision_msgs/msg/VisionInfo')
    assert decoded.method == 'mobilefacenet 1.2 sha256:' + 'ab' * 8
    assert decoded.database_location == '/ward/gallery.db'
    assert decoded.database_version == 12
    assert stamp_seconds(decoded.header.stamp) == 5.25
