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
``enroll`` as a real process: exit 0 when it enrolled, 1 when it refused or timed out.

A probe node publishes camera frames of the sample portrait. ``enroll`` enrols the face as
P-0001 into a new gallery (exit 0); once it has ended, a second ``enroll`` is shown the same
face as P-0002 and refuses it, since it already matches P-0001 (exit 1); a third watches a
topic nobody publishes and times out (exit 1). None of them may abort: while the spinner
thread was left running, every exit path ended in SIGABRT (``terminate called without an
active exception``, exit 134). The model is the tests' tiny real ONNX embedder. Needs ROS 2:
plain pytest without ROS skips it; CI runs it on Humble and Jazzy (.github/workflows/ros.yml).
"""

import array
import os
from pathlib import Path
import tempfile
import threading
import unittest

from conftest import build_tiny_embedder
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.image_codec import encode_image
from face_id_ros.evaluation.samples import compose_frame, sample_portrait
import pytest

SKIP_REASON = ('launch test: needs ROS 2 (rclpy, launch_testing, launch_ros); it runs in CI '
               'on Humble and Jazzy, see .github/workflows/ros.yml')
# Not pytest.importorskip: launch_testing's pytest plugin imports every test module while
# collecting and lets a skip escape, which drops the whole test folder (0 tests, exit 0).
try:
    import launch
    import launch.actions as launch_actions
    import launch.event_handlers as launch_event_handlers
    import launch_ros.actions as launch_ros_actions
    import launch_testing
    import launch_testing.actions as launch_testing_actions
    import launch_testing.asserts as launch_testing_asserts
    import launch_testing.markers as launch_testing_markers
    import rclpy
    import rclpy.executors as rclpy_executors
    import rclpy.qos as rclpy_qos
    import sensor_msgs.msg as sensor_msgs
except ImportError as error:  # plain pytest without ROS 2: every test here skips, saying why
    ROS_MISSING = f'{SKIP_REASON} ({error})'
else:
    ROS_MISSING = ''
pytestmark = pytest.mark.skipif(bool(ROS_MISSING), reason=ROS_MISSING)
after_shutdown = (lambda cls: cls) if ROS_MISSING else launch_testing.post_shutdown_test()
# The enrol processes end by design; without keep_alive, Humble's launch_testing ends the
# launch with them and fails every test ("Launch stopped before the active tests finished").
keep_alive = (lambda function: function) if ROS_MISSING else launch_testing_markers.keep_alive

CAMERA_TOPIC = '/enroll_test/image_raw'
SILENT_TOPIC = '/enroll_test/nobody/image_raw'
FRAME_PERIOD_S = 0.1
WAIT_TIMEOUT_S = 5.0
# Start-up (mediapipe, onnxruntime) is slow in CI containers.
PROCESS_TIMEOUT_S = 120.0
OUTPUT_TIMEOUT_S = 10.0


def enroll(name, patient_id, camera_topic, gallery, model, timeout_s):
    """Return an ``enroll`` process (as ``ros2 run face_id_ros enroll`` starts it)."""
    return launch_ros_actions.Node(
        package='face_id_ros', executable='enroll', name=name, output='screen',
        arguments=['--patient-id', patient_id, '--camera-topic', camera_topic,
                   '--gallery', str(gallery), '--model', str(model), '--frames', '1',
                   '--timeout', f'{timeout_s:g}',
                   '--reload-service', '/enroll_test/no_face_id_node/reload_gallery'])


@keep_alive
@pytest.mark.rostest
def generate_test_description():
    """Enrol P-0001, then (once that ended) the same face as P-0002; and one on no camera."""
    if ROS_MISSING:  # launch_testing is there, some other ROS package is not
        pytest.skip(ROS_MISSING)
    workdir = Path(tempfile.mkdtemp(prefix='face_id_enroll_test_'))
    os.environ[KEY_ENV] = new_key_text()  # the ward config encrypts; the processes inherit it
    model = build_tiny_embedder(workdir / 'tiny.onnx')
    gallery = workdir / 'gallery.db'
    enrolled = enroll('enrol_p0001', 'P-0001', CAMERA_TOPIC, gallery, model, 60.0)
    refused = enroll('enrol_p0002', 'P-0002', CAMERA_TOPIC, gallery, model, 60.0)
    timed_out = enroll('enrol_nobody', 'P-0003', SILENT_TOPIC, workdir / 'other.db', model,
                       3.0)
    second = launch_actions.RegisterEventHandler(launch_event_handlers.OnProcessExit(
        target_action=enrolled, on_exit=[refused]))
    return launch.LaunchDescription([
        second, enrolled, timed_out, launch_testing_actions.ReadyToTest()]), {
        'enrolled': enrolled, 'refused': refused, 'timed_out': timed_out}


class CameraProbe:
    """A test node publishing a 640x480 frame of the sample portrait ten times a second."""

    def __init__(self, node):
        """Create the publisher and its timer on ``node``."""
        self.node = node
        fields = encode_image(compose_frame(sample_portrait(), (640, 480), [(320, 240)], 300))
        self.message = sensor_msgs.Image(height=fields['height'], width=fields['width'],
                                         encoding=fields['encoding'], step=fields['step'])
        self.message.data = array.array('B', fields['data'].tobytes())
        self.message.header.frame_id = 'enroll_test_camera'
        self.camera = node.create_publisher(sensor_msgs.Image, CAMERA_TOPIC,
                                            rclpy_qos.qos_profile_sensor_data)
        node.create_timer(FRAME_PERIOD_S, self._publish)

    def _publish(self):
        self.message.header.stamp = self.node.get_clock().now().to_msg()
        self.camera.publish(self.message)


class TestEnroll(unittest.TestCase):
    """The enrolments end as they should while the probe shows the face."""

    @classmethod
    def setUpClass(cls):
        """Start the probe node, spinning in a thread that tearDownClass joins."""
        rclpy.init()
        cls.node = rclpy.create_node('enroll_test_camera')
        cls.probe = CameraProbe(cls.node)
        cls.executor = rclpy_executors.SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        cls.stop = threading.Event()
        cls.spinner = threading.Thread(target=cls._spin, daemon=True)
        cls.spinner.start()

    @classmethod
    def _spin(cls):
        while not cls.stop.is_set() and rclpy.ok():
            cls.executor.spin_once(timeout_sec=FRAME_PERIOD_S)

    @classmethod
    def tearDownClass(cls):
        """Stop the probe node."""
        cls.stop.set()
        cls.spinner.join(WAIT_TIMEOUT_S)
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_a_face_is_enrolled_then_refused_as_another_patient(self, proc_info, proc_output,
                                                                enrolled, refused):
        proc_info.assertWaitForShutdown(process=enrolled, timeout=PROCESS_TIMEOUT_S)
        proc_output.assertWaitFor('enrolled P-0001 with 1 templates', process=enrolled,
                                  timeout=OUTPUT_TIMEOUT_S)
        proc_info.assertWaitForShutdown(process=refused, timeout=PROCESS_TIMEOUT_S)
        proc_output.assertWaitFor('this face already matches enrolled patient P-0001',
                                  process=refused, timeout=OUTPUT_TIMEOUT_S)

    def test_no_camera_frames_time_out(self, proc_info, proc_output, timed_out):
        proc_info.assertWaitForShutdown(process=timed_out, timeout=PROCESS_TIMEOUT_S)
        proc_output.assertWaitFor('timed out after 3 s with 0 of 1 good frames',
                                  process=timed_out, timeout=OUTPUT_TIMEOUT_S)


@after_shutdown
class TestEnrollExitCodes(unittest.TestCase):
    """Exit 0 for the enrolment, 1 for the refusal and the time-out; no abort."""

    def test_exit_codes(self, proc_info, enrolled, refused, timed_out):
        launch_testing_asserts.assertExitCodes(proc_info, [0], process=enrolled)
        launch_testing_asserts.assertExitCodes(proc_info, [1], process=refused)
        launch_testing_asserts.assertExitCodes(proc_info, [1], process=timed_out)
