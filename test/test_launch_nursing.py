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
``nursing.launch.py`` end to end: camera frames in, ``/patient_id`` and gate decisions out.

The test enrols the sample portrait as P-0001 with a tiny real ONNX embedder, launches the
ward launch file with that model and gallery, publishes camera frames of the enrolled face,
of an unknown face and of nobody, and checks what arrives on ``/patient_id``, what the
medication gate decides, and that a deactivated node publishes nothing. The tiny embedder is
no face model: to it the mirrored portrait is another person, which makes a deterministic
stranger. Needs ROS 2 (rclpy, launch_testing): plain pytest without ROS skips it; CI runs it
on Humble and Jazzy (.github/workflows/ros.yml).
"""

import array
import json
import os
from pathlib import Path
import tempfile
import threading
import time
import unittest

from conftest import build_tiny_embedder
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.image_codec import encode_image
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.evaluation.samples import compose_frame, sample_portrait
from face_id_ros.nodes.enrolment_session import EnrolmentSession
from face_id_ros.nodes.node_params import pipeline_config_from_ros_yaml
import numpy as np
import pytest

SKIP_REASON = ('launch test: needs ROS 2 (rclpy, launch_testing, vision_msgs); it runs in CI '
               'on Humble and Jazzy, see .github/workflows/ros.yml')
# Not pytest.importorskip: launch_testing's pytest plugin imports every test module while
# collecting and lets a skip escape, which drops the whole test folder (0 tests, exit 0).
try:
    import ament_index_python.packages as ament_packages
    import diagnostic_msgs.msg as diagnostic_msgs
    import launch
    import launch.launch_description_sources as launch_sources
    import launch_testing
    import launch_testing.actions as launch_testing_actions
    import launch_testing.asserts as launch_testing_asserts
    import launch_testing_ros.wait_for_topics as wait_for_topics
    import lifecycle_msgs.msg as lifecycle_msgs
    import lifecycle_msgs.srv as lifecycle_srvs
    import rclpy
    import rclpy.executors as rclpy_executors
    import rclpy.qos as rclpy_qos
    import sensor_msgs.msg as sensor_msgs
    import std_msgs.msg as std_msgs
    import std_srvs.srv as std_srvs
    import vision_msgs.msg as vision_msgs
except ImportError as error:  # plain pytest without ROS 2: every test here skips, saying why
    ROS_MISSING = f'{SKIP_REASON} ({error})'
else:
    ROS_MISSING = ''
pytestmark = pytest.mark.skipif(bool(ROS_MISSING), reason=ROS_MISSING)
after_shutdown = (lambda cls: cls) if ROS_MISSING else launch_testing.post_shutdown_test()

CAMERA_TOPIC = '/test_camera/image_raw'
CAMERA_FRAME = 'test_camera_optical'
PATIENT = 'P-0001'
FRAME_PERIOD_S = 0.1
START_TIMEOUT_S = 120.0
TIMEOUT_S = 30.0


def share_file(*parts):
    return Path(ament_packages.get_package_share_directory('face_id_ros'), *parts)


def ward_frames():
    """Camera frames (640x480): the enrolled face, a stranger (to the tiny model), nobody."""
    portrait = sample_portrait()
    return {
        'enrolled': compose_frame(portrait, (640, 480), [(320, 240)], 300),
        'stranger': compose_frame(portrait[:, ::-1].copy(), (640, 480), [(320, 240)], 300),
        'nobody': np.full((480, 640, 3), 96, np.uint8),
    }


def enrol_portrait(workdir):
    """Enrol the portrait as P-0001 with the ward config and a tiny model; return paths."""
    model = build_tiny_embedder(workdir / 'tiny.onnx')
    gallery_path = workdir / 'gallery.db'
    config = pipeline_config_from_ros_yaml(share_file('config', 'nursing.yaml'),
                                           'face_id_node').replace(
        embedder={'model': str(model)}, gallery={'path': str(gallery_path)})
    pipeline = Pipeline(config)
    session = EnrolmentSession(pipeline, config.quality, keep=1)
    verdict = session.offer(ward_frames()['enrolled'], 0.0)
    assert verdict.accepted, verdict.reason
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        session.write(gallery, PATIENT, source='launch test')
    pipeline.detector.close()
    return model, gallery_path


@pytest.mark.rostest
def generate_test_description():
    """Launch nursing.launch.py with the test's camera topic, model and gallery."""
    if ROS_MISSING:  # launch_testing is there, some other ROS package is not
        pytest.skip(ROS_MISSING)
    workdir = Path(tempfile.mkdtemp(prefix='face_id_launch_test_'))
    os.environ[KEY_ENV] = new_key_text()  # the ward config encrypts; the nodes inherit it
    model, gallery = enrol_portrait(workdir)
    nursing = launch.actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(
            str(share_file('launch', 'nursing.launch.py'))),
        launch_arguments={'camera_topic': CAMERA_TOPIC, 'gallery': str(gallery),
                          'model': str(model), 'start_gate': 'true'}.items())
    return launch.LaunchDescription([nursing, launch_testing_actions.ReadyToTest()]), {
        'gallery': gallery}


class WardProbe:
    """A test node: publishes camera frames, records /patient_id, talks to the gate."""

    def __init__(self, node):
        """Create the publishers, subscriptions and clients on ``node``."""
        self.node = node
        self.lock = threading.Lock()
        self.frames = ward_frames()
        self.showing = None
        self.sent_stamps = set()
        self.received = []
        self.masks = []
        self.gallery_info = None
        self.camera = node.create_publisher(sensor_msgs.Image, CAMERA_TOPIC,
                                            rclpy_qos.qos_profile_sensor_data)
        self.order = node.create_publisher(std_msgs.String, 'medication/order_patient_id', 10)
        self.wristband = node.create_publisher(std_msgs.String,
                                               'medication/wristband_patient_id', 10)
        node.create_subscription(vision_msgs.Detection2DArray, 'patient_id',
                                 self._on_patient_id, 10)
        node.create_subscription(vision_msgs.Detection2DArray, 'face_id/masks',
                                 self._on_masks, 10)
        node.create_subscription(
            vision_msgs.VisionInfo, 'face_id/gallery_info', self._on_gallery_info,
            rclpy_qos.QoSProfile(depth=1,
                                 durability=rclpy_qos.DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=rclpy_qos.ReliabilityPolicy.RELIABLE))
        self.dispense = node.create_client(std_srvs.Trigger, '/medication_gate/request_dispense')
        self.change_state = node.create_client(lifecycle_srvs.ChangeState,
                                               '/face_id_node/change_state')
        node.create_timer(FRAME_PERIOD_S, self._publish_frame)

    def show(self, name):
        """Publish this frame from now on (None: no frames at all)."""
        with self.lock:
            self.showing = name
            self.received = []

    def _publish_frame(self):
        if self.showing is None:
            return
        fields = encode_image(self.frames[self.showing])
        message = sensor_msgs.Image(height=fields['height'], width=fields['width'],
                                    encoding=fields['encoding'], step=fields['step'])
        message.data = array.array('B', fields['data'].tobytes())
        message.header.stamp = self.node.get_clock().now().to_msg()
        message.header.frame_id = CAMERA_FRAME
        with self.lock:
            self.sent_stamps.add((message.header.stamp.sec, message.header.stamp.nanosec))
        self.camera.publish(message)

    def _on_patient_id(self, message):
        with self.lock:
            self.received.append(message)

    def _on_masks(self, message):
        with self.lock:
            self.masks.append(message)

    def masks_of(self, message, timeout=TIMEOUT_S):
        """Return the /face_id/masks message published with ``message`` (same stamp)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [item for item in self.masks if item.header.stamp == message.header.stamp]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f'no /face_id/masks message for the frame within {timeout} s')

    def _on_gallery_info(self, message):
        self.gallery_info = message

    def wait_for(self, predicate, what, timeout=TIMEOUT_S):
        """Return the first /patient_id message received that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [message for message in self.received if predicate(message)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f'no /patient_id message with {what} within {timeout} s')

    def say(self, publisher, text):
        publisher.publish(std_msgs.String(data=text))

    def call(self, client, request, timeout=TIMEOUT_S):
        assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name} is missing'
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert future.done(), f'{client.srv_name} did not answer'
        return future.result()

    def request_dispense(self, until=None, timeout=TIMEOUT_S):
        """
        Ask the gate; with ``until(granted, decision)``, ask again until it holds.

        The gate grants only on a frame whose face was embedded in that frame, and the node
        embeds a confirmed face that looks unchanged every recheck_period_s: in between a
        dispensing node is told to ask again.
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self.call(self.dispense, std_srvs.Trigger.Request())
            granted, decision = response.success, json.loads(response.message)
            if until is None or until(granted, decision) or time.monotonic() > deadline:
                return granted, decision
            time.sleep(0.1)


def wait_until_active(proc_output):
    """Wait until the launch file has configured and activated face_id_node."""
    proc_output.assertWaitFor('active: identifying faces on ' + CAMERA_TOPIC,
                              timeout=START_TIMEOUT_S, strict_proc_matching=False)


def decision_of(message):
    """Return the decision class id of a one-face /patient_id message, else None."""
    if len(message.detections) != 1 or not message.detections[0].results:
        return None
    return message.detections[0].results[0].hypothesis.class_id


class TestNursingLaunch(unittest.TestCase):
    """Frames in, /patient_id and gate decisions out, while the launch is running."""

    @classmethod
    def setUpClass(cls):
        """Start a test node spinning in the background."""
        rclpy.init()
        cls.node = rclpy.create_node('nursing_launch_probe')
        cls.probe = WardProbe(cls.node)
        cls.executor = rclpy_executors.SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        cls.spinner = threading.Thread(target=cls.executor.spin, daemon=True)
        cls.spinner.start()

    @classmethod
    def tearDownClass(cls):
        """Stop the test node."""
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_faces_on_patient_id_and_the_gates_decisions(self, proc_output, gallery):
        wait_until_active(proc_output)
        probe = self.probe
        waiter = wait_for_topics.WaitForTopics([('/diagnostics', diagnostic_msgs.DiagnosticArray)],
                                               timeout=TIMEOUT_S)
        try:
            self.assertTrue(waiter.wait(), '/diagnostics never arrived from the active node')
        finally:
            waiter.shutdown()
        deadline = time.monotonic() + TIMEOUT_S
        while probe.gallery_info is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIsNotNone(probe.gallery_info, 'no transient-local /face_id/gallery_info')
        self.assertEqual(probe.gallery_info.database_version, 1)
        self.assertEqual(probe.gallery_info.database_location, str(gallery))
        self.assertTrue(probe.gallery_info.method.startswith('tiny-test 0 sha256:'))

        probe.show('enrolled')
        message = probe.wait_for(lambda m: decision_of(m) == PATIENT, f'{PATIENT} confirmed')
        detection = message.detections[0]
        self.assertEqual(message.header.frame_id, CAMERA_FRAME)
        self.assertIn((message.header.stamp.sec, message.header.stamp.nanosec),
                      probe.sent_stamps, 'the header must be the image header, not now()')
        self.assertEqual(detection.header.stamp, message.header.stamp)
        self.assertTrue(detection.id.startswith('face-'))
        self.assertAlmostEqual(detection.bbox.center.position.x, 320.0, delta=40.0)
        self.assertGreater(detection.bbox.size_x, 80.0)
        scores = [result.hypothesis.score for result in detection.results]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertTrue(all(0.0 <= score <= 1.0 for score in scores))
        masks = probe.masks_of(message)  # the tiny test model has no mask output
        self.assertEqual([item.id for item in masks.detections], [detection.id])
        self.assertEqual(masks.detections[0].results[0].hypothesis.class_id, 'unknown')
        self.assertEqual(masks.header.frame_id, CAMERA_FRAME)

        probe.say(probe.order, PATIENT)
        probe.say(probe.wristband, PATIENT)
        time.sleep(1.0)  # the order and scan arrive; more confirmed frames follow
        denials = []
        granted, decision = probe.request_dispense(
            until=lambda granted, decision: granted or denials.append(decision['reason']))
        self.assertTrue(granted, decision['reason'])
        # Only a carried identity is a reason to ask again (it is embedded within 0.5 s).
        self.assertTrue(all('carries the identity embedded' in reason for reason in denials),
                        denials)
        self.assertTrue(decision['evidence']['face']['faces_in_view'][0]['fresh'])
        self.assertEqual(decision['decision'], 'grant')
        self.assertEqual(decision['evidence']['gallery']['revision'], 1)
        self.assertEqual(decision['evidence']['face']['faces_in_view'][0]['track'],
                         detection.id)

        probe.say(probe.wristband, 'P-0002')
        time.sleep(0.5)
        granted, decision = probe.request_dispense()
        self.assertFalse(granted)
        self.assertIn('the wristband reads P-0002', decision['reason'])

        probe.say(probe.wristband, PATIENT)
        probe.show('stranger')
        probe.wait_for(lambda m: decision_of(m) == 'unknown', 'the stranger unknown')
        time.sleep(0.3)
        granted, decision = probe.request_dispense()
        self.assertFalse(granted)
        self.assertIn('matches no enrolled patient', decision['reason'])

        probe.show('nobody')
        probe.wait_for(lambda m: len(m.detections) == 0, 'an empty array for nobody')
        granted, decision = probe.request_dispense()
        self.assertFalse(granted)
        self.assertIn('nobody in view', decision['reason'])

    def test_a_deactivated_node_publishes_nothing(self, proc_output):
        wait_until_active(proc_output)
        probe = self.probe
        probe.show('enrolled')
        probe.wait_for(lambda m: True, 'any content')
        transition = lifecycle_msgs.Transition
        request = lifecycle_srvs.ChangeState.Request()
        request.transition.id = transition.TRANSITION_DEACTIVATE
        self.assertTrue(probe.call(probe.change_state, request).success)
        time.sleep(0.5)  # messages already in flight
        probe.show('enrolled')
        time.sleep(2.0)
        with probe.lock:
            self.assertEqual(probe.received, [], 'an inactive node must not publish')
        request.transition.id = transition.TRANSITION_ACTIVATE
        self.assertTrue(probe.call(probe.change_state, request).success)
        probe.wait_for(lambda m: True, 'frames again after re-activation')


@after_shutdown
class TestNursingShutdown(unittest.TestCase):
    """Both nodes end cleanly when the launch shuts down."""

    def test_exit_codes(self, proc_info):
        launch_testing_asserts.assertExitCodes(proc_info)
