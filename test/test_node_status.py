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
from face_id_ros.node_status import (diagnostic_report, LoadedModel, NodeStatistics,
                                     RateMeter, stamp_seconds, vision_info_fields)
from face_id_ros.ros_messages import rosbags_typestore
import pytest

LOADED = LoadedModel('mobilefacenet', '1.2', 'ab' * 32, '/ward/gallery.db', 12, 30)


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


def _healthy_summary():
    statistics = NodeStatistics()
    for index in range(20):
        statistics.frame_received(index / 15.0, False)
        statistics.frame_processed(index / 15.0, 0.03, 0.012)
    return statistics.summary(19 / 15.0)


def test_a_healthy_node_reports_ok_with_every_value_people_need():
    report = diagnostic_report(_healthy_summary(), LOADED, '/camera/image_raw')
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


def test_problems_are_warned_about_and_an_unloaded_node_is_an_error():
    statistics = NodeStatistics()
    report = diagnostic_report(statistics.summary(10.0), LOADED, '/cam')
    assert report.level == 'WARN' and 'no camera frames on /cam' in report.message
    assert dict(report.values)['latency median (ms)'] == 'n/a'
    statistics.frame_received(10.0, False)
    statistics.frame_failed('unsupported image encoding 16UC1')
    empty = LoadedModel('m', '1', 'ff' * 32, '/g.db', 0, 0)
    report = diagnostic_report(statistics.summary(10.5), empty, '/cam')
    assert report.level == 'WARN'
    assert '1 frame(s) failed: unsupported image encoding 16UC1' in report.message
    assert 'no enrolled patients' in report.message
    assert 'no camera frames' not in report.message
    assert diagnostic_report(statistics.summary(30.0), LOADED, '/cam').message.startswith(
        'no camera frames on /cam for 20.0 s')
    assert diagnostic_report(_healthy_summary(), None, '/cam').level == 'ERROR'


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
