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
``medication_gate``: a reference consumer of ``/patient_id`` for a dispensing node.

Inputs: ``patient_id`` (vision_msgs/Detection2DArray), ``face_id/gallery_info``
(vision_msgs/VisionInfo, transient local), ``medication/order_patient_id`` and
``medication/wristband_patient_id`` (std_msgs/String holding a patient id; an empty order
cancels it). ``~/request_dispense`` (std_srvs/Trigger) answers with ``success`` true only
for a grant and the decision as JSON in ``message``; every decision is also published on
``medication/dispense_decision`` (std_msgs/String, JSON) and logged. The rules are in
``face_id_ros.nodes.gate``.
"""

from face_id_ros.core.errors import ConfigError
from face_id_ros.nodes.gate import (face_frame_from_message, GateConfig, MedicationGate,
                                    model_info_from_message)
from face_id_ros.nodes.node_params import stage_config_from_parameters, stage_rows
from face_id_ros.nodes.ros_parameters import declare_rows, read_rows, undeclared_overrides
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, VisionInfo

NODE_NAME = 'medication_gate'
# Matches the face_id_node's transient-local publisher, so the current info arrives at start.
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)


class MedicationGateNode(Node):
    """Grant a dispense only when face, order and wristband agree; log every decision."""

    def __init__(self, **kwargs):
        """Read the parameters (refusing invalid ones) and connect the topics."""
        super().__init__(NODE_NAME, **kwargs)
        rows = stage_rows(GateConfig)
        problems = list(declare_rows(self, rows).values())
        unknown = undeclared_overrides(self)
        if unknown:
            problems.append(f'unknown parameter(s) {unknown}')
        if problems:
            raise ConfigError('; '.join(problems))
        self.gate = MedicationGate(stage_config_from_parameters(GateConfig,
                                                                read_rows(self, rows)))
        self.create_subscription(Detection2DArray, 'patient_id', self._on_faces, 10)
        self.create_subscription(Detection2DArray, 'face_id/masks', self._on_masks, 10)
        self.create_subscription(VisionInfo, 'face_id/gallery_info', self._on_model_info,
                                 LATCHED_QOS)
        self.create_subscription(String, 'medication/order_patient_id', self._on_order, 10)
        self.create_subscription(String, 'medication/wristband_patient_id', self._on_wristband,
                                 10)
        self._decisions = self.create_publisher(String, 'medication/dispense_decision', 10)
        self.create_service(Trigger, '~/request_dispense', self._on_request_dispense)
        self.get_logger().info(f'ready: {self.gate.config}')

    def _now(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_faces(self, msg):
        self.gate.observe(face_frame_from_message(msg))

    def _on_masks(self, msg):
        self.gate.observe_masks(face_frame_from_message(msg))

    def _on_model_info(self, msg):
        self.gate.set_model(model_info_from_message(msg))
        self.get_logger().info(f'model {msg.method}, gallery {msg.database_location} '
                               f'revision {msg.database_version}')

    def _on_order(self, msg):
        self.gate.set_order(msg.data, self._now())
        self.get_logger().info(f'order for {msg.data.strip() or "nobody (cancelled)"}')

    def _on_wristband(self, msg):
        self.gate.scan_wristband(msg.data, self._now())
        self.get_logger().info(f'wristband reads {msg.data.strip()}')

    def _on_request_dispense(self, request, response):
        """Decide now; log and publish the decision with its evidence."""
        decision = self.gate.decide(self._now())
        text = decision.to_json()
        self._decisions.publish(String(data=text))
        if decision.granted:
            self.get_logger().info(f'GRANT {decision.patient_id}: {text}')
        else:
            self.get_logger().warning(f'DENY {decision.patient_id}: {decision.reason}: {text}')
        response.success = decision.granted
        response.message = text
        return response


def main(args=None):
    """Run the gate until Ctrl-C or an external shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = MedicationGateNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as error:
        get_logger(NODE_NAME).fatal(str(error))
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    main()
