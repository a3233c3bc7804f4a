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
``face_id_node``: the managed node that turns camera frames into ``/patient_id``.

Unconfigured, it holds only its parameters. ``configure`` validates them, loads the model
and the gallery and creates the publishers and ``~/reload_gallery``; ``activate`` subscribes
to the camera and starts the worker; ``deactivate`` stops both, so an inactive node looks at
no face. The camera callback only offers each message to a ``NewestFrameSlot``; the worker
thread takes the newest frame, runs the pipeline and publishes, so a slow frame drops stale
ones instead of queueing them and the executor is never blocked.
"""

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from face_id_ros.core.annotate import draw_results
from face_id_ros.core.errors import ConfigError, FaceIdError
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.newest_frame import NewestFrameSlot
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.ros_messages import rclpy_detection_types, stamp_seconds
from face_id_ros.nodes.node_params import (camera_subscription_topic, NodeConfig,
                                           pipeline_config_from_parameters, pipeline_rows,
                                           stage_config_from_parameters, stage_rows)
from face_id_ros.nodes.node_status import (diagnostic_report, LoadedModel, NodeStatistics,
                                           vision_info_fields)
from face_id_ros.nodes.rep155_output import image_message, Rep155FacePublisher
from face_id_ros.nodes.ros_parameters import declare_rows, read_rows, undeclared_overrides
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, VisionInfo

NODE_NAME = 'face_id_node'
# Late subscribers (a medication gate started later) still get the current gallery info.
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
WORKER_JOIN_TIMEOUT_S = 5.0


class FaceIdNode(LifecycleNode):
    """Identify patients' faces in camera frames; publish ``/patient_id`` and diagnostics."""

    def __init__(self, **kwargs):
        """Declare the parameters only; nothing is loaded before ``configure``."""
        super().__init__(NODE_NAME, **kwargs)
        self._pipeline_rows = pipeline_rows()
        self._node_rows = stage_rows(NodeConfig)
        self._refused = declare_rows(self, self._pipeline_rows + self._node_rows)
        self.add_on_set_parameters_callback(self._on_parameters_set)
        self._pipeline = None
        self._frames = None
        self._loaded = None
        self._settings = None
        self._statistics = NodeStatistics()
        self._outputs = {}
        self._reload_service = None
        self._rep155 = None
        self._camera_subscription = None
        self._diagnostics_timer = None
        self._slot = None
        self._worker = None

    # Lifecycle transitions.

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Validate the parameters, load model and gallery, create publishers and services.

        SUCCESS leads to inactive. FAILURE (an invalid parameter, a missing or unreadable
        model, no gallery or one made by another model) leads back to unconfigured, with the
        reason logged.
        """
        try:
            self._configure()
        except Exception as error:  # rclpy would turn it into a silent ERROR transition
            self.get_logger().error(f'configure failed: {describe(error)}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        loaded = self._loaded
        self.get_logger().info(
            f'configured: model {loaded.model_name} {loaded.model_version}, gallery '
            f'{loaded.gallery_path} revision {loaded.gallery_revision} '
            f'({loaded.patients} patients)')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Enable the publishers, start the worker and subscribe to the camera.

        SUCCESS leads to active; this transition does not fail.
        """
        result = super().on_activate(state)
        self._pipeline.tracker.reset()
        self._slot = NewestFrameSlot()
        self._worker = threading.Thread(target=self._work, args=(self._slot,),
                                        name='face_id_worker', daemon=True)
        self._worker.start()
        message_type, topic = self._camera_input()
        self._camera_subscription = self.create_subscription(
            message_type, topic, self._on_image, qos_profile_sensor_data)
        self._diagnostics_timer = self.create_timer(self._settings.diagnostics_period_s,
                                                    self._publish_diagnostics)
        self._publish_gallery_info()
        self.get_logger().info(f'active: identifying faces on {topic}')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Unsubscribe from the camera, finish the frame in hand and disable the publishers.

        SUCCESS leads to inactive; this transition does not fail.
        """
        self._stop_camera()
        if self._rep155 is not None:
            self._rep155.withdraw()
        self.get_logger().info('inactive: not looking at the camera')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release model, gallery, publishers and services; SUCCESS leads to unconfigured."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release everything, from any state; SUCCESS leads to finalized."""
        self._stop_camera()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release everything after a failed transition; SUCCESS: unconfigured."""
        self._stop_camera()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        """Stop the worker before the node goes (Ctrl-C while active)."""
        self._stop_camera()
        self._release()
        return super().destroy_node()

    # Configuration and release.

    def _configure(self):
        if self._refused:
            raise ConfigError('; '.join(self._refused.values()))
        unknown = undeclared_overrides(self)
        if unknown:
            raise ConfigError(f'unknown parameter(s) {unknown}; see `ros2 param list '
                              f'{self.get_fully_qualified_name()}`')
        config = pipeline_config_from_parameters(read_rows(self, self._pipeline_rows))
        self._settings = stage_config_from_parameters(NodeConfig,
                                                      read_rows(self, self._node_rows))
        self._pipeline = Pipeline(config)
        if self._pipeline.threshold_warning:  # a threshold below the model's, allowed
            self.get_logger().warning(self._pipeline.threshold_warning)
        self._frames = FrameWorker(self._pipeline, rclpy_detection_types(),
                                   on_gallery=self._on_gallery_synced)
        self._load_gallery()
        self._outputs = {
            'patient_id': self.create_lifecycle_publisher(Detection2DArray, 'patient_id', 10),
            'masks': self.create_lifecycle_publisher(Detection2DArray, 'face_id/masks', 10),
            'gallery_info': self.create_lifecycle_publisher(
                VisionInfo, 'face_id/gallery_info', LATCHED_QOS),
            'diagnostics': self.create_lifecycle_publisher(DiagnosticArray, '/diagnostics', 10),
        }
        if self._settings.publish_debug_image:
            self._outputs['debug_image'] = self.create_lifecycle_publisher(
                Image, '~/debug_image', qos_profile_sensor_data)
        self._reload_service = self.create_service(Trigger, '~/reload_gallery',
                                                   self._on_reload_gallery)
        if self._settings.rep155_faces:  # hri_msgs only now: ConfigError when it is absent
            self._rep155 = Rep155FacePublisher(self, config.tracker.max_gap_s)

    def _load_gallery(self):
        """Read the gallery into a new snapshot and swap it in (atomically, for the worker)."""
        self._set_loaded(self._frames.reload_gallery())

    def _set_loaded(self, loaded):
        embedder = self._pipeline.embedder
        self._loaded = LoadedModel(embedder.metadata.name, embedder.metadata.version,
                                   embedder.fingerprint, loaded.path, loaded.revision,
                                   loaded.patients)

    def _on_gallery_synced(self, loaded):
        """Report a server gallery's new revision, now in use (called by the sync thread)."""
        if self._pipeline is None:
            return
        previous = self._loaded.gallery_revision if self._loaded else None
        self._set_loaded(loaded)
        if previous is not None and previous != loaded.revision:
            self.get_logger().info(f'gallery revision {loaded.revision} '
                                   f'({loaded.patients} patients), was revision {previous}')
        self._publish_gallery_info()

    def _release(self):
        if self._rep155 is not None:
            self._rep155.close()
            self._rep155 = None
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs = {}
        if self._reload_service is not None:
            self.destroy_service(self._reload_service)
            self._reload_service = None
        if self._frames is not None:
            self._frames.close()  # stops following a server gallery
        if self._pipeline is not None:
            self._pipeline.detector.close()
        self._pipeline = None
        self._frames = None
        self._loaded = None

    def _on_parameters_set(self, parameters):
        # A value fixed with `ros2 param set` is no longer refused; it applies at configure.
        for parameter in parameters:
            self._refused.pop(parameter.name, None)
        return SetParametersResult(successful=True)

    # The camera and the worker.

    def _camera_input(self):
        """Return the camera message type and the topic subscribed to."""
        settings = self._settings
        message_type = CompressedImage if settings.image_transport == 'compressed' else Image
        return message_type, camera_subscription_topic(settings.camera_topic,
                                                       settings.image_transport)

    def _on_image(self, msg):
        """Offer the frame to the worker; never does the work here."""
        replaced = self._slot.offer(msg)
        self._statistics.frame_received(time.monotonic(), replaced)

    def _stop_camera(self):
        if self._camera_subscription is not None:
            self.destroy_subscription(self._camera_subscription)
            self._camera_subscription = None
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._slot is not None:
            self._slot.close()
        if self._worker is not None:
            self._worker.join(WORKER_JOIN_TIMEOUT_S)
            self._worker = None

    def _work(self, slot):
        """Process the newest frame until the slot closes (deactivation)."""
        while True:
            msg = slot.take()
            if msg is None or slot.closed:
                return
            try:
                self._process(msg)
            except Exception as error:  # neither a bad frame nor a bug may stop the worker
                self._statistics.frame_failed(time.monotonic(), describe(error))
                self.get_logger().warning(f'frame skipped: {describe(error)}',
                                          throttle_duration_sec=5.0)

    def _process(self, msg):
        """Decode, identify, publish ``/patient_id`` with the image's own header."""
        started = time.perf_counter()
        frame = self._frames.process(msg)
        self._outputs['patient_id'].publish(frame.message)
        self._outputs['masks'].publish(frame.masks)
        if self._rep155 is not None:
            self._rep155.publish(msg.header, frame.image, frame.result, self._pipeline)
        if 'debug_image' in self._outputs:
            self._outputs['debug_image'].publish(
                image_message(msg.header, draw_results(frame.image, frame.result)))
        latency = self.get_clock().now().nanoseconds * 1e-9 - stamp_seconds(msg.header.stamp)
        self._statistics.frame_processed(time.monotonic(), latency,
                                         time.perf_counter() - started)

    # Gallery reload, gallery info and diagnostics.

    def _on_reload_gallery(self, request, response):
        """Re-read the gallery; the next frame uses the new snapshot, never a mix."""
        previous = self._loaded.gallery_revision
        try:
            self._load_gallery()
        except FaceIdError as error:
            response.success = False
            response.message = f'gallery not reloaded, revision {previous} stays: {error}'
            self.get_logger().error(response.message)
            return response
        loaded = self._loaded
        response.success = True
        response.message = (f'gallery revision {loaded.gallery_revision} '
                            f'({loaded.patients} patients), was revision {previous}')
        self.get_logger().info(response.message)
        self._publish_gallery_info()
        return response

    def _publish_gallery_info(self):
        publisher = self._outputs.get('gallery_info')
        if publisher is None or self._loaded is None:
            return
        message = VisionInfo(**vision_info_fields(self._loaded))
        # The stamp says when the revision was last known current: the gate's
        # gallery_max_age_s measures from it. A SQLite gallery is current when published.
        stamp = self.get_clock().now()
        sync = self._frames.sync_status() if self._frames is not None else None
        if sync is not None:
            age = sync.age_s(time.time())
            stamp = Time() if age is None else stamp - Duration(nanoseconds=int(age * 1e9))
        message.header.stamp = stamp.to_msg()
        publisher.publish(message)

    def _publish_diagnostics(self):
        summary = self._statistics.summary(time.monotonic())
        topic = self._camera_input()[1]
        sync = self._frames.sync_status()
        report = diagnostic_report(summary, self._loaded, topic,
                                   self._settings.max_stamp_offset_s, sync, time.time())
        if sync is not None:
            self._publish_gallery_info()  # the revision's age moves on
        status = DiagnosticStatus(
            level=getattr(DiagnosticStatus, report.level),
            name=f'{self.get_name()}: face identification', message=report.message,
            hardware_id=topic,  # the topic subscribed to (.../compressed when compressed)
            values=[KeyValue(key=key, value=value) for key, value in report.values])
        message = DiagnosticArray(status=[status])
        message.header.stamp = self.get_clock().now().to_msg()
        self._outputs['diagnostics'].publish(message)


def describe(error):
    """Return an error for people: our own errors by their reason, others with their type."""
    return str(error) if isinstance(error, FaceIdError) else f'{type(error).__name__}: {error}'


def main(args=None):
    """Run the node until Ctrl-C or an external shutdown."""
    rclpy.init(args=args)
    node = FaceIdNode()
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
