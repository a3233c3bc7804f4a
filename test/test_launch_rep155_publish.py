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
``nursing.launch.py rep155:=publish``: camera in, our faces out as REP-155 topics.

The portrait is enrolled as P-0001 with a tiny real ONNX embedder (as in
test_launch_nursing.py); the test publishes camera frames of it, then of nobody, and checks
that ``/humans/faces/tracked`` lists one stable face id, that the face's roi, aligned (our
model's 112x112 crop), cropped (128x128) and landmarks topics carry the camera image's header,
that ``/humans/candidate_matches`` names P-0001 for that face id, and that once nobody is in
view the list empties and the match is withdrawn. Needs ROS 2 and hri_msgs; without them
every test skips inside, saying why.
"""

import os
from pathlib import Path
import tempfile
import threading
import time
import unittest

from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.rep155 import face_topic
import pytest

try:
    from test_launch_nursing import (after_shutdown, CAMERA_FRAME, CAMERA_TOPIC, enrol_portrait,
                                     launch, launch_sources, launch_testing_actions,
                                     launch_testing_asserts, PATIENT, rclpy, rclpy_executors,
                                     ROS_MISSING, sensor_msgs, share_file, TIMEOUT_S,
                                     wait_until_active, WardProbe)
    import hri_msgs.msg as hri_msgs
except ImportError as error:  # plain pytest without ROS 2 or hri_msgs: skip inside, saying why
    MISSING = f'launch test: needs ROS 2 and hri_msgs ({error})'
    after_shutdown = (lambda cls: cls)  # noqa: E731
else:
    MISSING = ROS_MISSING
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or 'ok')


@pytest.mark.rostest
def generate_test_description():
    """Launch nursing.launch.py with REP-155 faces published, the test's model and gallery."""
    if MISSING:
        pytest.skip(MISSING)
    workdir = Path(tempfile.mkdtemp(prefix='face_id_rep155_publish_'))
    os.environ[KEY_ENV] = new_key_text()
    model, gallery = enrol_portrait(workdir)
    nursing = launch.actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(
            str(share_file('launch', 'nursing.launch.py'))),
        launch_arguments={'camera_topic': CAMERA_TOPIC, 'gallery': str(gallery),
                          'model': str(model), 'start_gate': 'false',
                          'rep155': 'publish'}.items())
    return launch.LaunchDescription([nursing, launch_testing_actions.ReadyToTest()]), {}


class TestRep155Publish(unittest.TestCase):
    """Our faces on /humans/faces/..., the patient on /humans/candidate_matches."""

    @classmethod
    def setUpClass(cls):
        """Start the camera probe and the REP-155 recorders."""
        rclpy.init()
        cls.node = rclpy.create_node('rep155_publish_probe')
        cls.probe = WardProbe(cls.node)
        cls.lock, cls.lists, cls.matches, cls.face_messages = threading.Lock(), [], [], {}
        cls.node.create_subscription(hri_msgs.IdsList, '/humans/faces/tracked',
                                     lambda m: cls._keep(cls.lists, m), 10)
        cls.node.create_subscription(hri_msgs.IdsMatch, '/humans/candidate_matches',
                                     lambda m: cls._keep(cls.matches, m), 10)
        cls.executor = rclpy_executors.SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        threading.Thread(target=cls.executor.spin, daemon=True).start()

    @classmethod
    def _keep(cls, store, message):
        with cls.lock:
            store.append(message)

    @classmethod
    def tearDownClass(cls):
        """Stop the probe."""
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def wait(self, store, predicate, what):
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self.lock:
                found = [message for message in store if predicate(message)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f'no message with {what} within {TIMEOUT_S} s')

    def test_faces_topics_and_the_patients_match(self, proc_output):
        wait_until_active(proc_output)
        self.probe.show('enrolled')
        listed = self.wait(self.lists, lambda m: len(m.ids) == 1, 'one face listed')
        face_id = listed.ids[0]
        self.assertEqual(listed.header.frame_id, CAMERA_FRAME)
        received = {}
        types = {'roi': hri_msgs.NormalizedRegionOfInterest2D,
                 'landmarks': hri_msgs.FacialLandmarks, 'aligned': sensor_msgs.Image,
                 'cropped': sensor_msgs.Image}
        for name, message_type in types.items():
            self.node.create_subscription(
                message_type, face_topic(face_id, name),
                lambda m, name=name: received.setdefault(name, m), 10)
        match = self.wait(self.matches, lambda m: m.id1 == face_id and m.confidence > 0,
                          'the face matched')
        self.assertEqual((match.id2, match.id1_type, match.id2_type),
                         (PATIENT, hri_msgs.IdsMatch.FACE, hri_msgs.IdsMatch.PERSON))
        deadline = time.monotonic() + TIMEOUT_S
        while len(received) < len(types) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(set(received), set(types))
        self.assertEqual((received['aligned'].width, received['aligned'].height), (112, 112))
        self.assertEqual((received['cropped'].width, received['cropped'].height), (128, 128))
        self.assertEqual(len(received['landmarks'].landmarks), 70)
        self.assertLess(received['roi'].xmin, received['roi'].xmax)
        self.assertEqual(received['roi'].header.frame_id, CAMERA_FRAME)
        with self.lock:
            ids = {tuple(message.ids) for message in self.lists if message.ids}
        self.assertEqual(ids, {(face_id,)}, 'the face id must stay while the face is in view')

        self.probe.show('nobody')
        self.wait(self.matches, lambda m: m.id1 == face_id and m.confidence == 0.0,
                  'the match withdrawn')
        self.wait(self.lists, lambda m: len(m.ids) == 0 and m.header.stamp.sec > 0,
                  'an empty list')


@after_shutdown
class TestRep155PublishShutdown(unittest.TestCase):
    """The nodes end cleanly when the launch shuts down."""

    def test_exit_codes(self, proc_info):
        launch_testing_asserts.assertExitCodes(proc_info)
