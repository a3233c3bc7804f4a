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
``ros2 run face_id_ros enroll --patient-id P-0042``: enrol a patient from the live camera.

Watches the camera topic, keeps the best frames that pass the quality gate, tells the
operator what it is waiting for, writes the templates to the gallery and asks the running
``face_id_node`` to reload it. It reads the same config file as the launch file
(``config/nursing.yaml``), so the templates come from the node's own model and detector.
With ``--erase`` it removes the patient instead (templates wiped from the gallery file) and
asks for the same reload, after which the node no longer matches them.
"""

import argparse
import re
import sys
import threading
import time

from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.galleries import open_gallery
from face_id_ros.core.gallery_crypto import key_from_config
from face_id_ros.core.image_codec import decode_any
from face_id_ros.core.newest_frame import NewestFrameSlot
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.resources import package_share_file
from face_id_ros.nodes.enrolment_session import EnrolmentSession, erase_patient
from face_id_ros.nodes.node_params import camera_subscription_topic, pipeline_config_from_ros_yaml
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

NODE_NAME = 'face_id_enroll'
# Repeat an unchanged hint this often, so the operator knows it is still waiting.
HINT_PERIOD_S = 3.0
SERVICE_TIMEOUT_S = 5.0
# The spinner thread looks at its stop flag this often.
SPIN_PERIOD_S = 0.1


def build_parser():
    """Build the command line: patient id, camera, how many frames, config and gallery."""
    parser = argparse.ArgumentParser(prog='ros2 run face_id_ros enroll', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--patient-id', required=True, help='pseudonymous id, e.g. P-0042')
    parser.add_argument('--camera-topic', default='/camera/image_raw')
    parser.add_argument('--image-transport', choices=('raw', 'compressed'), default='raw')
    parser.add_argument('--frames', type=int, default=5, help='templates to keep (best first)')
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds to wait')
    parser.add_argument('--replace', action='store_true',
                        help="replace the patient's templates instead of adding to them")
    parser.add_argument('--masked', action='store_true',
                        help='the patient wears a mask: store masked templates (without it, '
                             'each frame is masked where the model sees a mask)')
    parser.add_argument('--erase', action='store_true',
                        help='erase the patient instead: remove their templates (wiped from '
                             'the gallery file) and ask face_id_node to reload')
    parser.add_argument('--reload-service', default='/face_id_node/reload_gallery',
                        help='service of the running face_id_node to call after writing')
    parser.add_argument('--config', help='ROS parameters YAML of the face_id_node '
                        '(default: the shipped config/nursing.yaml)')
    parser.add_argument('--node-name', default='face_id_node',
                        help='node whose section of --config to read')
    parser.add_argument('--model', help='embedder ONNX (default: from --config)')
    parser.add_argument('--gallery', help='SQLite gallery file (default: from --config)')
    return parser


def load_config(args):
    """Read the node's settings from the ROS parameters file, then apply the overrides."""
    path = args.config or package_share_file('config/nursing.yaml')
    config = pipeline_config_from_ros_yaml(path, args.node_name)
    overrides = {'embedder': {'model': args.model}, 'gallery': {'path': args.gallery}}
    return config.replace(**{stage: {key: value for key, value in values.items()
                                     if value is not None}
                             for stage, values in overrides.items()})


class EnrolNode(Node):
    """Subscribe to the camera and hand the newest frame to the enrolment loop."""

    def __init__(self, camera_topic, image_transport):
        """Subscribe with sensor-data QoS; the callback only fills the newest-frame slot."""
        super().__init__(NODE_NAME)
        self.slot = NewestFrameSlot()
        message_type = CompressedImage if image_transport == 'compressed' else Image
        self.topic = camera_subscription_topic(camera_topic, image_transport)
        self.create_subscription(message_type, self.topic, self.slot.offer,
                                 qos_profile_sensor_data)

    def collect(self, session, timeout_s):
        """Feed the newest frames to the session until it is done, time runs out or ROS stops."""
        logger = self.get_logger()
        deadline = time.monotonic() + timeout_s
        hint, hint_time = None, 0.0
        while not session.done and time.monotonic() < deadline and rclpy.ok():
            msg = self.slot.take(timeout=0.5)
            if msg is None:
                hint, hint_time = self._hint(f'waiting for camera frames on {self.topic}',
                                             hint, hint_time)
                continue
            try:
                verdict = session.offer(decode_any(msg), time.monotonic())
            except FaceIdError as error:
                hint, hint_time = self._hint(f'unusable frame: {error}', hint, hint_time)
                continue
            if verdict.accepted:
                logger.info(f'{verdict.reason}: {verdict.accepted_frames}/'
                            f'{verdict.needed_frames} frames')
            elif verdict.reason != 'waiting between frames':
                hint, hint_time = self._hint(f'waiting for: {verdict.reason}', hint, hint_time)
        return hint

    def request_reload(self, service_name):
        """Ask the running face_id_node to re-read the gallery; return its answer or None."""
        client = self.create_client(Trigger, service_name)
        if not client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
            return None
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        return future.result() if future.done() else None

    def _hint(self, text, last, last_time):
        now = time.monotonic()
        if text != last or now - last_time > HINT_PERIOD_S:
            self.get_logger().info(text)
            return text, now
        return last, last_time


def enrol(node, pipeline, args):
    """Collect frames, write the templates and request a reload; return the exit status."""
    logger = node.get_logger()
    config = pipeline.config
    session = EnrolmentSession(pipeline, config.quality, keep=args.frames, masked=args.masked)
    logger.info(f'enrolling {args.patient_id}: look at the camera ({node.topic}); '
                f'keeping the best {session.keep} of {session.candidates} good frames')
    last_hint = node.collect(session, args.timeout)
    if not rclpy.ok():
        logger.warning('interrupted; nothing written')
        return 130
    if not session.enough:
        logger.error(f'timed out after {args.timeout:g} s with {len(session.samples)} of '
                     f'{session.keep} good frames (last: {last_hint}); nothing written')
        return 1
    with open_gallery(config.gallery, pipeline.embedder.fingerprint,
                      pipeline.embedder.embedding_size, create=True) as gallery:
        revision = session.write(gallery, args.patient_id, source=f'camera {node.topic}',
                                 replace=args.replace)
        path = gallery.path
    logger.info(f'enrolled {args.patient_id} with {session.keep} templates: gallery {path} '
                f'revision {revision}')
    return reload_face_id_node(node, args.reload_service)


def erase(node, pipeline, args):
    """Remove the patient from the gallery and request a reload; return the exit status."""
    path, revision = erase_patient(pipeline.config.gallery, pipeline.embedder,
                                   args.patient_id)
    node.get_logger().info(f'erased {args.patient_id}: templates wiped from gallery {path}, '
                           f'revision {revision}')
    return reload_face_id_node(node, args.reload_service)


def reload_face_id_node(node, service_name):
    """Ask face_id_node to reload the gallery; return 0, or 1 when it refused."""
    logger = node.get_logger()
    answer = node.request_reload(service_name)
    if answer is None:
        logger.warning(f'no answer from {service_name}: a running face_id_node '
                       'will see the change after its next configure or reload')
    elif not answer.success:
        logger.error(f'face_id_node refused to reload: {answer.message}')
        return 1
    else:
        logger.info(f'face_id_node reloaded: {answer.message}')
    return 0


def main(argv=None):
    """Run the enrolment (or erasure); exit 0 when written, 1 when not, 2 on a config error."""
    argv = sys.argv if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(remove_ros_args(argv)[1:])
    if args.frames < 1 or args.timeout <= 0:
        parser.error('--frames and --timeout must be positive')
    try:
        config = load_config(args)
        if not re.fullmatch(config.gallery.id_pattern, args.patient_id):
            raise FaceIdError(f'patient id {args.patient_id!r} does not match the pseudonymous '
                              f'pattern {config.gallery.id_pattern!r} (e.g. P-0042; no names)')
        key_from_config(config.gallery)  # no key: say so now, not after the frames
        pipeline = Pipeline(config)
    except FaceIdError as error:
        print(f'enroll: error: {error}', file=sys.stderr)
        return 2
    rclpy.init(args=argv)
    node = EnrolNode(args.camera_topic, args.image_transport)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(executor, stop), daemon=True)
    spinner.start()
    try:
        return erase(node, pipeline, args) if args.erase else enrol(node, pipeline, args)
    except FaceIdError as error:
        node.get_logger().error(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # The spinner must be out of rclpy's wait before anything is torn down: a thread
        # left inside it while Python exits aborts the process (SIGABRT) on every exit path.
        stop.set()
        spinner.join()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _spin(executor, stop):
    """Run the node's callbacks until ``stop`` is set or ROS shuts down (Ctrl-C)."""
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except ExternalShutdownException:
        pass


if __name__ == '__main__':
    sys.exit(main())
