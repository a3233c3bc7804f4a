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
``nursing.launch.py rep155:=identify``: REP-155 faces in, candidate matches and /patient_id out.

The test plays an upstream REP-155 face detector: it detects the sample portrait (enrolled as
P-0001 from its re-aligned ``cropped`` image, with a tiny real ONNX embedder) and publishes
``/humans/faces/tracked`` and the face's roi, cropped, aligned and landmarks as hri_face_detect
does (faces first, the list last, one header). The launched rep155_identifier must name P-0001
on ``/humans/candidate_matches`` and confirm it on ``/patient_id``; a stranger (to the tiny
model, the mirrored portrait) under a new face id is named by no match, and when the
patient's face leaves the list its match is withdrawn (confidence 0). Needs ROS 2 and
hri_msgs; without them every test skips inside, saying why.
"""

import os
from pathlib import Path
import tempfile
import threading
import time
import unittest

from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.rep155 import (align_cropped, cropped_face, face_topic, FACE_TOPICS,
                                     landmark_fields, normalized_roi)
from face_id_ros.nodes.node_params import pipeline_config_from_ros_yaml
import pytest

try:
    from test_launch_nursing import (after_shutdown, build_tiny_embedder, launch,
                                     launch_sources, launch_testing_actions,
                                     launch_testing_asserts, rclpy, rclpy_executors,
                                     ROS_MISSING, share_file, vision_msgs, ward_frames)
    from face_id_ros.nodes.rep155_output import image_message
    import hri_msgs.msg as hri_msgs
    import std_msgs.msg as std_msgs
except ImportError as error:  # plain pytest without ROS 2 or hri_msgs: skip inside, saying why
    MISSING = f'launch test: needs ROS 2 and hri_msgs ({error})'
    after_shutdown = (lambda cls: cls)  # noqa: E731
else:
    MISSING = ROS_MISSING
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or 'ok')

PATIENT = 'P-0001'
FRAME_PERIOD_S = 0.1
START_TIMEOUT_S = 120.0
TIMEOUT_S = 30.0


def enrol_cropped_portrait(workdir):
    """Enrol the portrait's re-aligned cropped face as P-0001; return model and gallery."""
    model = build_tiny_embedder(workdir / 'tiny.onnx')
    config = pipeline_config_from_ros_yaml(share_file('config', 'nursing.yaml'),
                                           'face_id_node').replace(
        embedder={'model': str(model)}, gallery={'path': str(workdir / 'gallery.db')})
    pipeline = Pipeline(config)
    frame = ward_frames()['enrolled']
    face = pipeline.detector.detect(frame)[0]
    crop = align_cropped(cropped_face(frame, face.box), face.box, face.landmarks,
                         pipeline.template, pipeline.embedder.input_size)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        gallery.add_templates(PATIENT, pipeline.embedder.embed(crop[None]), ['launch test'],
                              [1.0])
    pipeline.detector.close()
    return model, workdir / 'gallery.db'


@pytest.mark.rostest
def generate_test_description():
    """Launch nursing.launch.py in REP-155 identify mode with the test's model and gallery."""
    if MISSING:
        pytest.skip(MISSING)
    workdir = Path(tempfile.mkdtemp(prefix='face_id_rep155_test_'))
    os.environ[KEY_ENV] = new_key_text()
    model, gallery = enrol_cropped_portrait(workdir)
    nursing = launch.actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(
            str(share_file('launch', 'nursing.launch.py'))),
        launch_arguments={'rep155': 'identify', 'gallery': str(gallery), 'model': str(model),
                          'start_gate': 'false'}.items())
    return launch.LaunchDescription([nursing, launch_testing_actions.ReadyToTest()]), {}


class UpstreamDetector:
    """Publish the shown face as REP-155 topics, as hri_face_detect would."""

    def __init__(self, node):
        """Detect the test frames once; create the list publisher and the recorders."""
        self.node, self.lock = node, threading.Lock()
        pipeline = Pipeline(pipeline_config_from_ros_yaml(
            share_file('config', 'nursing.yaml'), 'face_id_node'))
        self.faces = {}
        for name, frame in ward_frames().items():
            found = pipeline.detector.detect(frame)
            self.faces[name] = (frame, found[0]) if found else None
        self.landmark_set = pipeline.detector.landmark_set
        pipeline.detector.close()
        self.showing, self.face_id, self.matches, self.patient_ids = None, None, [], []
        self.tracked = node.create_publisher(hri_msgs.IdsList, '/humans/faces/tracked', 1)
        self.publishers = {}
        node.create_subscription(hri_msgs.IdsMatch, '/humans/candidate_matches',
                                 self._on_match, 10)
        node.create_subscription(vision_msgs.Detection2DArray, 'patient_id',
                                 self._on_patient_id, 10)
        node.create_timer(FRAME_PERIOD_S, self._publish)

    def show(self, name, face_id):
        """Show this face (None: nobody) under this REP-155 face id from now on."""
        with self.lock:
            self.showing, self.face_id = name, face_id

    def _publisher(self, face_id, name):
        types = {'roi': hri_msgs.NormalizedRegionOfInterest2D,
                 'landmarks': hri_msgs.FacialLandmarks}
        key = (face_id, name)
        if key not in self.publishers:
            from sensor_msgs.msg import Image
            self.publishers[key] = self.node.create_publisher(
                types.get(name, Image), face_topic(face_id, name), 1)
        return self.publishers[key]

    def _publish(self):
        with self.lock:
            showing, face_id = self.showing, self.face_id
        header = std_msgs.Header(stamp=self.node.get_clock().now().to_msg(), frame_id='cam')
        ids = []
        if showing and self.faces.get(showing):
            frame, face = self.faces[showing]
            size = (frame.shape[1], frame.shape[0])
            xmin, ymin, xmax, ymax = normalized_roi(face.box, size)
            self._publisher(face_id, 'roi').publish(hri_msgs.NormalizedRegionOfInterest2D(
                header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=1.0))
            crop = cropped_face(frame, face.box)
            self._publisher(face_id, 'cropped').publish(image_message(header, crop))
            self._publisher(face_id, 'aligned').publish(image_message(header, crop))
            fields = landmark_fields(face.landmarks, self.landmark_set, size, 1.0)
            self._publisher(face_id, 'landmarks').publish(hri_msgs.FacialLandmarks(
                header=header, height=fields['height'], width=fields['width'],
                landmarks=[hri_msgs.NormalizedPointOfInterest2D(x=x, y=y, c=c)
                           for x, y, c in fields['entries']]))
            ids = [face_id]
        self.tracked.publish(hri_msgs.IdsList(header=header, ids=ids))

    def _on_match(self, message):
        with self.lock:
            self.matches.append((message.id1, message.id2, message.confidence))

    def _on_patient_id(self, message):
        with self.lock:
            self.patient_ids.append(message)

    def wait_for(self, predicate, what, timeout=TIMEOUT_S):
        """Return the first candidate match satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [item for item in self.matches if predicate(item)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f'no /humans/candidate_matches message with {what} in {timeout} s')


class TestRep155Identify(unittest.TestCase):
    """REP-155 faces in; candidate matches and /patient_id out, fail closed."""

    @classmethod
    def setUpClass(cls):
        """Start the upstream detector node spinning in the background."""
        rclpy.init()
        cls.node = rclpy.create_node('rep155_upstream_probe')
        cls.upstream = UpstreamDetector(cls.node)
        cls.executor = rclpy_executors.SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        threading.Thread(target=cls.executor.spin, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        """Stop the upstream node."""
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_the_patient_is_named_the_stranger_never_and_a_leaving_face_is_withdrawn(
            self, proc_output):
        proc_output.assertWaitFor('active: identifying REP-155 faces',
                                  timeout=START_TIMEOUT_S, strict_proc_matching=False)
        upstream = self.upstream
        self.assertEqual(set(FACE_TOPICS), {'roi', 'cropped', 'aligned', 'landmarks'})
        upstream.show('enrolled', 'fabcd_1')
        match = upstream.wait_for(lambda item: item[0] == 'fabcd_1' and item[2] > 0,
                                  'the patient named')
        self.assertEqual(match[1], PATIENT)
        deadline = time.monotonic() + TIMEOUT_S
        confirmed = []
        while not confirmed and time.monotonic() < deadline:
            with upstream.lock:
                confirmed = [message for message in upstream.patient_ids if message.detections
                             and message.detections[0].results[0].hypothesis.class_id
                             == PATIENT]
            time.sleep(0.05)
        self.assertTrue(confirmed, '/patient_id never confirmed the patient')
        self.assertEqual(confirmed[0].detections[0].id, 'fabcd_1')
        self.assertEqual(confirmed[0].header.frame_id, 'cam')

        upstream.show('stranger', 'fabcd_2')  # fabcd_1 leaves the list: withdrawn
        upstream.wait_for(lambda item: item[0] == 'fabcd_1' and item[2] == 0.0,
                          'the leaving face withdrawn')
        time.sleep(3.0)
        with upstream.lock:
            named = [item for item in upstream.matches if item[0] == 'fabcd_2' and item[2] > 0]
        self.assertEqual(named, [], 'a stranger was matched to a patient')


@after_shutdown
class TestRep155Shutdown(unittest.TestCase):
    """The identifier ends cleanly when the launch shuts down."""

    def test_exit_codes(self, proc_info):
        launch_testing_asserts.assertExitCodes(proc_info)
