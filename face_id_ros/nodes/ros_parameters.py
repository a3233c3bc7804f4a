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

"""Declare ``node_params.ParameterRow``s on an rclpy node, with descriptions and ranges."""

from face_id_ros.nodes.node_params import refusal_reason
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException


def descriptor(row):
    """
    Return the ParameterDescriptor of a row: description, constraints and range.

    A row that takes a number or a word (``matcher.threshold``: ``auto`` or 0.6) is declared
    with dynamic typing, and its value is checked at configure like every other.
    """
    fields = {'description': row.description, 'additional_constraints': row.constraints}
    if row.dynamic_typing:
        return ParameterDescriptor(dynamic_typing=True, **fields)
    bounded = row.low is not None and row.high is not None
    if bounded and isinstance(row.default, bool):
        bounded = False
    if bounded and isinstance(row.default, int):
        fields['integer_range'] = [IntegerRange(from_value=int(row.low), to_value=int(row.high),
                                                step=0)]
    elif bounded and isinstance(row.default, float):
        fields['floating_point_range'] = [FloatingPointRange(
            from_value=float(row.low), to_value=float(row.high), step=0.0)]
    return ParameterDescriptor(**fields)


def declare_rows(node, rows):
    """
    Declare every row on ``node``; return the refusals as ``{name: reason}``.

    A value from a YAML file or the command line that rclpy refuses (wrong type, out of
    range) would otherwise abort the constructor; it is recorded instead and the default
    is declared, so the node starts and its configure transition can fail with the reason.
    """
    refused = {}
    for row in rows:
        try:
            node.declare_parameter(row.name, row.default, descriptor(row))
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            refused[row.name] = refusal_reason(row.name, error)
            node.declare_parameter(row.name, row.default, descriptor(row), ignore_override=True)
    return refused


def undeclared_overrides(node):
    """
    Return the names given to ``node`` (YAML, launch, command line) that it never declared.

    rclpy ignores such values silently, so a misspelt key in the ward config would quietly
    leave its default in force; the nodes refuse to start with them instead.
    """
    # rclpy keeps the overrides in this attribute and offers no public accessor for them.
    overrides = getattr(node, '_parameter_overrides', {})
    return sorted(name for name in overrides
                  if not node.has_parameter(name) and not name.startswith('qos_overrides.'))


def read_rows(node, rows):
    """Return ``{name: value}`` of the declared rows."""
    return {row.name: node.get_parameter(row.name).value for row in rows}
