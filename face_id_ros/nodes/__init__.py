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
The ROS 2 nodes and, beside them, what they compute without ROS.

The nodes (``face_id_node``, ``enroll_node``, ``medication_gate``, and ``ros_parameters``
that declares their parameters) need rclpy; they only convert messages and parameters and
call their ROS-free helpers here: ``node_params`` (parameters), ``node_status`` (rates,
diagnostics, gallery info), ``enrolment_session`` (live enrolment) and ``gate`` (the
medication gate's rules), which import and test without ROS. This package imports only
``face_id_ros.core``; importing it loads no rclpy.
"""
