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
How well the pipeline works, measured: plain functions with arguments, no argparse.

``metrics`` (the LFW pairs protocol, ROC, TAR at FAR, open-set identification),
``benchmarks`` (LFW verification and open set, calibration, per-stage latency),
``bag_eval`` (replaying a rosbag2 and scoring it against its ``labels``), ``wardbag``
(synthetic ward rounds as rosbag2), ``ward_benchmark`` (LFW to ward-round numbers),
``plots`` and ``samples`` (the sample portrait and synthetic frames). It imports only
``face_id_ros.core``; the ``face-id`` command line calls it.
"""
