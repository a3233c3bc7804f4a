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
The ``face-id`` command line: argparse only, each command calls the library and prints.

``parser`` builds ``face-id`` and runs it; ``options`` holds what every pipeline command
shares (``--config``, ``--model``, ``--detector``...); one module per command group:
``runtime`` (enroll, gallery, identify, model, demo), ``benchmarks`` (eval-pairs,
eval-openset, calibrate-*, bench) and ``ward`` (make-ward-bag, eval-bag, ward-benchmark).
Nothing else in the package imports this one.
"""
