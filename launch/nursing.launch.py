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
Face identification on a ward: face_id_node (managed) and, optionally, the medication gate.

``ros2 launch face_id_ros nursing.launch.py camera_topic:=/camera/color/image_raw``
configures and activates face_id_node once it starts (``autostart:=false`` leaves it
unconfigured for a supervisor to drive). ``gallery`` and ``model`` override the config
file's values when given. ``rep155:=identify`` runs the rep155_identifier executable under
the name face_id_node (same parameters, same lifecycle commands, same /patient_id for the
gate) on the faces of an upstream REP-155 detector such as hri_face_detect.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction
from launch.actions import RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

ARGUMENTS = (
    ('camera_topic', '/camera/image_raw', 'camera image topic (raw; compressed adds '
                                          '/compressed)'),
    ('image_transport', 'raw', 'raw (sensor_msgs/Image) or compressed (CompressedImage)'),
    ('gallery', '', "SQLite gallery file; empty: the config file's gallery.path"),
    ('model', '', "embedder ONNX; empty: the config file's embedder.model"),
    ('config_file', os.path.join(get_package_share_directory('face_id_ros'), 'config',
                                 'nursing.yaml'), 'ROS parameters YAML for both nodes'),
    ('start_gate', 'true', 'also start the medication_gate reference consumer'),
    ('autostart', 'true', 'configure and activate face_id_node at start-up'),
    ('rep155', 'off', 'REP-155 (ROS4HRI): off; publish (face_id_node also publishes '
                      '/humans/faces/... and /humans/candidate_matches); identify (identify '
                      'the faces another REP-155 detector publishes instead of the camera)'),
    ('log_level', 'info', 'log level of both nodes'),
)


def generate_launch_description():
    """Declare the arguments; the nodes are built once their values are known."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_nodes)])


def launch_nodes(context):
    """Return the node actions and the lifecycle events for the given arguments."""
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    if value['rep155'] not in ('off', 'publish', 'identify'):
        raise ValueError(f"rep155:={value['rep155']} is not one of off, publish, identify")
    overrides = {'camera_topic': value['camera_topic'],
                 'image_transport': value['image_transport'],
                 'rep155_faces': value['rep155'] == 'publish'}
    if value['gallery']:
        overrides['gallery.path'] = value['gallery']
    if value['model']:
        overrides['embedder.model'] = value['model']
    ros_arguments = ['--ros-args', '--log-level', value['log_level']]
    executable = 'rep155_identifier' if value['rep155'] == 'identify' else 'face_id_node'
    face_id = LifecycleNode(
        package='face_id_ros', executable=executable, name='face_id_node', namespace='',
        parameters=[value['config_file'], overrides], arguments=ros_arguments,
        output='screen')
    gate = Node(
        package='face_id_ros', executable='medication_gate', name='medication_gate',
        parameters=[value['config_file']], arguments=ros_arguments, output='screen',
        condition=IfCondition(value['start_gate']))
    autostart = IfCondition(value['autostart'])
    configure = RegisterEventHandler(OnProcessStart(
        target_action=face_id,
        on_start=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(face_id),
            transition_id=Transition.TRANSITION_CONFIGURE))]), condition=autostart)
    # Once only: a supervisor that later reconfigures the node decides about activation.
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=face_id, start_state='configuring', goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(face_id),
            transition_id=Transition.TRANSITION_ACTIVATE))],
        handle_once=True), condition=autostart)
    # The handlers go first, so they are in place before the process starts.
    return [configure, activate, face_id, gate]
