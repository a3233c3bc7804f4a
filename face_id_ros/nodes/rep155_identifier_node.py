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
``rep155_identifier``: identify the faces another REP-155 node publishes (managed node).

It reads the face_id_node section of the parameters (the launch file names it face_id_node,
so the gate and ``ros2 lifecycle`` see the same node) and ignores the camera settings.
``configure`` loads model and gallery (and needs hri_msgs); ``activate`` subscribes to
``/humans/faces/tracked`` and, per listed face, to its roi, landmarks and face image, unsubscribing
when it leaves. Each frame (``core.rep155_identifier``) publishes ``/humans/candidate_matches``
and ``/patient_id`` with the upstream image header, and ``/face_id/gallery_info``.
"""

from face_id_ros.core.errors import ConfigError
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.patient_id import patient_detections
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.rep155 import CANDIDATE_MATCHES, face_topic, FACES_TRACKED
from face_id_ros.core.rep155_identifier import face_part, FrameAssembler, Rep155Identifier
from face_id_ros.core.ros_messages import (build_detection_array, rclpy_detection_types,
                                           stamp_seconds)
from face_id_ros.nodes.face_id_node import describe, LATCHED_QOS
from face_id_ros.nodes.node_params import (NodeConfig, pipeline_config_from_parameters,
                                           pipeline_rows, stage_config_from_parameters,
                                           stage_rows)
from face_id_ros.nodes.node_status import LoadedModel, vision_info_fields
from face_id_ros.nodes.rep155_output import hri_msgs_types
from face_id_ros.nodes.ros_parameters import declare_rows, read_rows
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, VisionInfo


class Rep155IdentifierNode(LifecycleNode):
    """Match REP-155 faces against our gallery; publish candidate matches and /patient_id."""

    def __init__(self, **kwargs):
        """Declare the parameters only; nothing is loaded before ``configure``."""
        super().__init__('rep155_identifier', **kwargs)
        self._rows = (pipeline_rows(), stage_rows(NodeConfig))
        self._refused = declare_rows(self, self._rows[0] + self._rows[1])
        self._identifier = self._assembler = self._msg = None
        self._outputs, self._faces, self._tracked, self._headers = {}, {}, None, {}

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load model, gallery and hri_msgs; SUCCESS: inactive, FAILURE: unconfigured."""
        try:
            self._configure()
        except Exception as error:
            self.get_logger().error(f'configure failed: {describe(error)}')
            self._outputs = {}
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the tracked faces; SUCCESS leads to active."""
        result = super().on_activate(state)
        self._identifier.reset()
        self._assembler = FrameAssembler(self._identifier.face_source)
        self._tracked = self.create_subscription(self._msg.IdsList, FACES_TRACKED,
                                                 self._on_tracked, 10)
        self._outputs['gallery_info'].publish(self._gallery_info)
        self.get_logger().info(f'active: identifying REP-155 faces on {FACES_TRACKED}')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe from every face; SUCCESS leads to inactive."""
        self._unsubscribe()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release model and publishers; SUCCESS leads to unconfigured."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release everything; SUCCESS leads to finalized."""
        self._unsubscribe()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _configure(self):
        if self._refused:
            raise ConfigError('; '.join(self._refused.values()))
        config = pipeline_config_from_parameters(read_rows(self, self._rows[0]))
        settings = stage_config_from_parameters(NodeConfig, read_rows(self, self._rows[1]))
        self._msg = hri_msgs_types()
        pipeline = Pipeline(config)
        loaded = FrameWorker(pipeline, rclpy_detection_types()).reload_gallery()
        pipeline.detector.close()  # upstream detects; only the embedder is used here
        self._identifier = Rep155Identifier(pipeline.embedder, config, pipeline.threshold,
                                            settings.rep155_face_source)
        self._identifier.set_gallery(pipeline.snapshot)
        metadata = pipeline.embedder.metadata
        self._gallery_info = VisionInfo(**vision_info_fields(LoadedModel(
            metadata.name, metadata.version, pipeline.embedder.fingerprint, loaded.path,
            loaded.revision, loaded.patients)))
        self._outputs = {
            'matches': self.create_lifecycle_publisher(self._msg.IdsMatch, CANDIDATE_MATCHES,
                                                       10),
            'patient_id': self.create_lifecycle_publisher(Detection2DArray, 'patient_id', 10),
            'gallery_info': self.create_lifecycle_publisher(VisionInfo, 'face_id/gallery_info',
                                                            LATCHED_QOS),
        }

    def _release(self):
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs, self._identifier = {}, None

    def _unsubscribe(self):
        for face_id in list(self._faces):
            self._forget(face_id)
        if self._tracked is not None:
            self.destroy_subscription(self._tracked)
            self._tracked = None

    def _forget(self, face_id):
        for subscription in self._faces.pop(face_id):
            self.destroy_subscription(subscription)

    def _on_tracked(self, message):
        ids = list(message.ids)
        for face_id in set(self._faces) - set(ids):
            self._forget(face_id)
        for face_id in set(ids) - set(self._faces):
            self._faces[face_id] = [self._subscribe(face_id, name)
                                    for name in self._assembler.needed]
        stamp = stamp_seconds(message.header.stamp)
        self._headers[stamp] = message.header  # /patient_id goes out with the image's header
        self._handle(self._assembler.add_tracked(stamp, ids))

    def _subscribe(self, face_id, name):
        types = {'roi': self._msg.NormalizedRegionOfInterest2D,
                 'landmarks': self._msg.FacialLandmarks}

        def received(message):
            self._handle(self._assembler.add_face_part(
                stamp_seconds(message.header.stamp), face_id, name, face_part(name, message)))
        return self.create_subscription(types.get(name, Image), face_topic(face_id, name),
                                        received, qos_profile_sensor_data)

    def _handle(self, frames):
        for stamp, ids, parts in frames:
            header = self._headers.pop(stamp)
            self._headers = {key: value for key, value in self._headers.items() if key > stamp}
            try:
                frame = self._identifier.process(stamp, ids, self._assembler.views(parts))
            except Exception as error:  # a bad face image must not stop the node
                self.get_logger().warning(f'frame skipped: {describe(error)}',
                                          throttle_duration_sec=5.0)
                continue
            for match in frame.matches:
                self._outputs['matches'].publish(self._msg.IdsMatch(**match.fields()))
            self._outputs['patient_id'].publish(build_detection_array(
                rclpy_detection_types(), header, patient_detections(frame.result)))


def main(args=None):
    """Run the node until Ctrl-C or an external shutdown."""
    rclpy.init(args=args)
    node = Rep155IdentifierNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
