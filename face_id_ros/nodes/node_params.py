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
ROS parameters made from the config dataclasses' field metadata, and config made from them.

Every field of a config dataclass (built with ``core.config.setting``) becomes one parameter
row: its name (``stage.key`` for the pipeline, as a nested ``ros__parameters`` YAML gives),
default, description and range or choices. A node declares the rows and turns the declared
values back into config objects through the same validation the YAML loader uses, so the
YAML file, the command-line tool and the nodes can never disagree. No ROS here.
"""

from dataclasses import dataclass, fields

from face_id_ros.core.config import build_stage, PipelineConfig, read_yaml, setting
from face_id_ros.core.errors import ConfigError

PARAMETER_SOURCE = 'parameters'
# Parameters every rclpy node has; they are not the pipeline's.
ROS_OWN_PARAMETERS = frozenset({'use_sim_time', 'start_type_description_service'})


@dataclass(frozen=True)
class ParameterRow:
    """One parameter: name, default (its type is the parameter's), description, limits."""

    name: str
    default: object
    description: str
    low: object = None
    high: object = None
    choices: tuple = None
    words: tuple = None

    @property
    def dynamic_typing(self):
        """Whether the parameter takes a number or a word (``auto``): two ROS types."""
        return bool(self.words)

    @property
    def constraints(self):
        """Describe the allowed values for people (``ros2 param describe``)."""
        if self.choices:
            return 'one of: ' + ', '.join(str(choice) for choice in self.choices)
        words = f'{", ".join(self.words)}, or a number ' if self.words else ''
        if self.low is not None and self.high is not None:
            return f'{words}from {self.low} to {self.high}'
        return ''


@dataclass(frozen=True)
class NodeConfig:
    """The face_id_node's own settings (camera input, outputs), beside the pipeline's."""

    camera_topic: str = setting(
        '/camera/image_raw',
        'Camera image topic; with image_transport compressed the node subscribes to '
        '<camera_topic>/compressed, as image_transport names it.')
    image_transport: str = setting('raw', 'Camera message type: raw (sensor_msgs/Image) or '
                                   'compressed (sensor_msgs/CompressedImage, JPEG or PNG).',
                                   choices=('raw', 'compressed'))
    publish_debug_image: bool = setting(
        False, 'Publish annotated frames on ~/debug_image (costs CPU; shows faces).')
    diagnostics_period_s: float = setting(1.0, 'Seconds between /diagnostics messages.',
                                          0.1, 60.0)
    max_stamp_offset_s: float = setting(
        1.0, '/diagnostics warns when the median latency from image stamp to publication is '
        'beyond this many seconds either way: image stamps and the node clock disagree (camera '
        'clock, bag played without --clock, use_sim_time) and the medication gate denies.',
        0.01, 3600.0)
    rep155_faces: bool = setting(
        False, 'Also publish REP-155 (ROS4HRI) faces: /humans/faces/tracked, per face roi, '
        'cropped, aligned and landmarks, and /humans/candidate_matches (needs hri_msgs).')
    rep155_face_source: str = setting(
        'cropped', 'rep155_identifier only: embed /humans/faces/<id>/cropped re-aligned with '
        'the landmarks (any REP-155 detector), or /aligned as it is (only a face_id_ros '
        'publisher upstream).', choices=('cropped', 'aligned'))


def camera_subscription_topic(camera_topic, image_transport):
    """Return the topic a node subscribes to: ``<camera_topic>/compressed`` for compressed."""
    if image_transport == 'compressed':
        return camera_topic.rstrip('/') + '/compressed'
    return camera_topic


def refusal_reason(name, error):
    """
    Return ``parameter NAME: why`` for a value rclpy refused when the node declared it.

    rclpy of Humble builds its parameter exceptions with several arguments (the message,
    then the parameter's name), so ``str()`` of them prints a Python tuple; the message is
    the first argument. Later rclpy passes one formatted message.
    """
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    return f'parameter {name}: {message}'


def stage_rows(stage_cls, prefix=''):
    """Return a ParameterRow per field of one config dataclass, named ``prefix.key``."""
    rows = []
    for item in fields(stage_cls):
        meta = item.metadata
        choices = tuple(meta['choices']) if meta.get('choices') else None
        words = tuple(meta['words']) if meta.get('words') else None
        rows.append(ParameterRow(f'{prefix}.{item.name}' if prefix else item.name,
                                 item.default, meta.get('doc', ''), meta.get('low'),
                                 meta.get('high'), choices, words))
    return rows


def pipeline_rows():
    """Return the rows of every pipeline stage (``detector.backend``, ``matcher.margin``...)."""
    return [row for stage in fields(PipelineConfig)
            for row in stage_rows(stage.default_factory, stage.name)]


def pipeline_config_from_parameters(values):
    """
    Build a PipelineConfig from ``{'stage.key': value}``; raise ConfigError naming the key.

    Names without a stage prefix are refused, as are unknown stages and keys.
    """
    nested = {}
    for name, value in values.items():
        stage, dot, key = name.partition('.')
        nested.setdefault(stage, {})[key if dot else name] = value
    return PipelineConfig.from_dict(nested, source=PARAMETER_SOURCE)


def stage_config_from_parameters(stage_cls, values):
    """Build one flat config dataclass (NodeConfig, GateConfig) from ``{key: value}``."""
    return build_stage(stage_cls, dict(values), PARAMETER_SOURCE)


def pipeline_config_from_ros_yaml(path, node_name):
    """
    Read the pipeline settings of ``node_name`` from a ROS parameters YAML file.

    The file has the ``node_name: ros__parameters: ...`` layout ``ros2 launch`` reads, so
    offline tools (live enrolment) use exactly the node's model and detector. Stages may be
    nested (``detector: {backend: ...}``) or dotted (``detector.backend: ...``); the node's
    own settings (camera topic...) are left out. Raises ConfigError naming the problem.
    """
    document = read_yaml(path) or {}
    document = document if isinstance(document, dict) else {}
    section = document.get(node_name, document.get('/**'))
    if not isinstance(section, dict) or not isinstance(section.get('ros__parameters'), dict):
        raise ConfigError(f'{path}: no "{node_name}: ros__parameters:" section')
    node_keys = {item.name for item in fields(NodeConfig)} | ROS_OWN_PARAMETERS
    values = {name: value for name, value in _flatten(section['ros__parameters']).items()
              if name not in node_keys and not name.startswith('qos_overrides.')}
    return pipeline_config_from_parameters(values)


def _flatten(mapping, prefix=''):
    flat = {}
    for key, value in mapping.items():
        name = f'{prefix}.{key}' if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat
