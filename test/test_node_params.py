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

"""The nodes' parameters come from the config dataclasses and go back through their checks."""

import ast
from dataclasses import fields
from pathlib import Path

from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.errors import ConfigError
from face_id_ros.nodes.gate import GateConfig
from face_id_ros.nodes.node_params import (camera_subscription_topic, NodeConfig,
                                           pipeline_config_from_parameters,
                                           pipeline_config_from_ros_yaml, pipeline_rows,
                                           refusal_reason, stage_config_from_parameters,
                                           stage_rows)
import pytest
import yaml


def test_every_pipeline_field_is_one_parameter_with_its_default_and_limits():
    rows = {row.name: row for row in pipeline_rows()}
    expected = {f'{stage.name}.{item.name}' for stage in fields(PipelineConfig)
                for item in fields(stage.default_factory)}
    assert set(rows) == expected
    assert all(row.description for row in rows.values())
    assert rows['detector.min_score'].default == 0.6
    assert (rows['detector.min_score'].low, rows['detector.min_score'].high) == (0.0, 1.0)
    assert rows['detector.backend'].choices == ('blazeface', 'yunet')
    assert rows['detector.backend'].constraints == 'one of: blazeface, yunet'
    assert rows['tracker.window'].constraints == 'from 1 to 100'
    assert rows['gallery.path'].constraints == ''
    assert rows['matcher.threshold'].constraints == 'auto, or a number from 0.0 to 1.0'
    assert rows['matcher.threshold'].dynamic_typing and not rows['tracker.window'].dynamic_typing
    # The default's Python type is the ROS parameter type: ints stay ints, floats floats.
    assert type(rows['detector.min_face_size'].default) is int
    assert type(rows['quality.min_sharpness'].default) is float
    assert type(rows['embedder.flip_sum'].default) is bool


def test_the_declared_defaults_give_back_the_default_config():
    values = {row.name: row.default for row in pipeline_rows()}
    assert pipeline_config_from_parameters(values) == PipelineConfig()


@pytest.mark.parametrize('value, threshold', [('auto', 'auto'), (0.6, 0.6), (1, 1.0)])
def test_the_threshold_parameter_takes_auto_or_a_cosine(value, threshold):
    values = {row.name: row.default for row in pipeline_rows()}
    values['matcher.threshold'] = value
    assert pipeline_config_from_parameters(values).matcher.threshold == threshold


def test_a_changed_parameter_reaches_its_stage():
    values = {row.name: row.default for row in pipeline_rows()}
    values.update({'detector.blazeface_range': 'full', 'tracker.confirm_frames': 2})
    config = pipeline_config_from_parameters(values)
    assert config.detector.blazeface_range == 'full'
    assert config.tracker.confirm_frames == 2


@pytest.mark.parametrize('values, fragment', [
    ({'detector.min_score': 2.0}, 'detector.min_score: 2.0 is above the maximum 1.0'),
    ({'detector.backend': 'haar'}, "detector.backend: 'haar' is not one of"),
    ({'tracker.window': 2.5}, 'tracker.window: expected a whole number'),
    ({'detector.min_scor': 0.5}, "unknown key(s) ['min_scor']"),
    ({'threshold': 0.4}, "unknown section(s) ['threshold']"),
    ({'tracker.window': 3, 'tracker.confirm_frames': 4}, 'exceeds tracker.window'),
    ({'matcher.threshold': -2.0}, 'matcher.threshold: -2.0 is below the minimum 0.0'),
    ({'matcher.threshold': 'Auto'}, "matcher.threshold: 'Auto' is neither a number nor one of"),
    ({'tracker.recheck_min_look': 0.5}, 'recheck_min_look: 0.5 is below the minimum 0.8'),
])
def test_invalid_parameters_are_refused_with_the_parameter_named(values, fragment):
    with pytest.raises(ConfigError) as error:
        pipeline_config_from_parameters(values)
    assert fragment in str(error.value)
    assert str(error.value).startswith('parameters')


def test_node_and_gate_settings_use_the_same_checks():
    assert stage_config_from_parameters(NodeConfig, {}) == NodeConfig()
    config = stage_config_from_parameters(NodeConfig, {'image_transport': 'compressed'})
    assert config.image_transport == 'compressed'
    with pytest.raises(ConfigError, match="image_transport: 'theora' is not one of"):
        stage_config_from_parameters(NodeConfig, {'image_transport': 'theora'})
    with pytest.raises(ConfigError, match='face_max_age_s: 0.0 is below the minimum'):
        stage_config_from_parameters(GateConfig, {'face_max_age_s': 0.0})
    assert [row.name for row in stage_rows(GateConfig)] == [
        'face_max_age_s', 'wristband_max_age_s', 'order_max_age_s', 'min_confirmed_frames',
        'require_unmasked', 'gallery_max_age_s']


@pytest.mark.parametrize('topic, transport, subscribed', [
    ('/camera/image_raw', 'raw', '/camera/image_raw'),
    ('/camera/image_raw', 'compressed', '/camera/image_raw/compressed'),
    ('/camera/color/image_raw/', 'compressed', '/camera/color/image_raw/compressed'),
])
def test_the_subscribed_topic_is_what_diagnostics_name(topic, transport, subscribed):
    # face_id_node subscribes to it and reports it as hardware_id; enroll subscribes to it.
    assert camera_subscription_topic(topic, transport) == subscribed


class HumbleInvalidParameterValue(Exception):
    """rclpy 3.3's (Humble's) InvalidParameterValueException, built as it builds it."""

    def __init__(self, parameter, value, reason):
        Exception.__init__(
            self, f'Invalid parameter value ({value}) for parameter. Reason: {reason}',
            parameter)


def test_a_refused_parameter_is_logged_as_a_sentence_not_a_python_tuple():
    reason = 'Parameter detector.min_score out of range. Min: 0.0, Max: 1.0, value: 1.5'
    humble = HumbleInvalidParameterValue('detector.min_score', 1.5, reason)
    assert str(humble).startswith("('Invalid parameter value")  # what was logged
    assert refusal_reason('detector.min_score', humble) == (
        f'parameter detector.min_score: Invalid parameter value (1.5) for parameter. '
        f'Reason: {reason}')
    # Jazzy's rclpy formats one message; it is kept as it is.
    jazzy = Exception(f'Invalid parameter value (1.5) for parameter. Reason: {reason}: '
                      'detector.min_score')
    assert refusal_reason('detector.min_score', jazzy) == (
        f'parameter detector.min_score: {jazzy}')


def ros_type(value):
    return {bool: 'bool', int: 'integer', float: 'double', str: 'string'}[type(value)]


def _flatten(mapping, prefix=''):
    flat = {}
    for key, value in mapping.items():
        name = f'{prefix}.{key}' if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


@pytest.mark.parametrize('node_name, rows', [
    ('face_id_node', pipeline_rows() + stage_rows(NodeConfig)),
    ('medication_gate', stage_rows(GateConfig)),
])
def test_the_ward_config_sets_every_parameter_with_its_ros_type(package_root, node_name, rows):
    document = yaml.safe_load((package_root / 'config' / 'nursing.yaml').read_text())
    values = _flatten(document[node_name]['ros__parameters'])
    declared = {row.name: row for row in rows}
    assert set(values) == set(declared)
    for name, value in values.items():
        # rclpy refuses 30 for a float parameter: the YAML must carry the declared type.
        if declared[name].dynamic_typing:  # a word or a number: either type is declared
            assert ros_type(value) in ('string', 'double'), name
        else:
            assert ros_type(value) == ros_type(declared[name].default), name


def test_the_ward_config_loads_for_offline_tools(package_root):
    config = pipeline_config_from_ros_yaml(package_root / 'config' / 'nursing.yaml',
                                           'face_id_node')
    assert config.detector.blazeface_range == 'full'
    assert config.detector.min_face_size == 40
    assert config.tracker == PipelineConfig().tracker


def test_ros_yaml_accepts_dotted_names_and_names_a_missing_section(tmp_path):
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'use_sim_time': False, 'camera_topic': '/cam', 'matcher.margin': 0.1}}}))
    assert pipeline_config_from_ros_yaml(path, 'face_id_node').matcher.margin == 0.1
    with pytest.raises(ConfigError, match='matcher.margin: -1.0 is below the minimum'):
        path.write_text('face_id_node:\n  ros__parameters:\n    matcher: {margin: -1.0}\n')
        pipeline_config_from_ros_yaml(path, 'face_id_node')
    path.write_text('other_node:\n  ros__parameters: {}\n')
    with pytest.raises(ConfigError, match='no "face_id_node: ros__parameters:" section'):
        pipeline_config_from_ros_yaml(path, 'face_id_node')
    with pytest.raises(ConfigError, match='cannot read config'):
        pipeline_config_from_ros_yaml(tmp_path / 'missing.yaml', 'face_id_node')


def test_the_core_never_imports_ros_or_the_nodes(package_root):
    for source in Path(package_root, 'face_id_ros', 'core').glob('*.py'):
        imported = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        roots = {name.split('.')[0] for name in imported}
        assert not roots & {'rclpy', 'torch', 'launch', 'launch_ros'}, source.name
        assert not any(name.startswith('face_id_ros.nodes') for name in imported), source.name
