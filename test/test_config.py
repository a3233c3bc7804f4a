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

from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.errors import ConfigError
import pytest


def test_shipped_yaml_loads_with_the_documented_defaults(package_root):
    config = PipelineConfig.from_yaml(package_root / 'config' / 'face_id.yaml')
    assert config == PipelineConfig()


@pytest.mark.parametrize('mapping, fragment', [
    ({'detector': {'backend': 'haar'}}, "detector.backend: 'haar' is not one of"),
    ({'detector': {'min_scor': 0.5}}, "unknown key(s) ['min_scor']"),
    ({'matcher': {'margin': -0.1}}, 'matcher.margin: -0.1 is below the minimum 0.0'),
    ({'tracker': {'window': 2.5}}, 'tracker.window: expected a whole number'),
    ({'embedder': {'flip_sum': 'yes'}}, 'embedder.flip_sum: expected true or false'),
    ({'embedder': {'threads': '2'}}, 'embedder.threads: expected a number'),
    ({'tracker': {'window': 3, 'confirm_frames': 4}}, 'exceeds tracker.window'),
    ({'detector': {'backend': 'yunet'}}, 'detector.yunet_model is required'),
    ({'camera': {}}, "unknown section(s) ['camera']"),
    ([1, 2], 'expected a mapping of stages'),
])
def test_bad_values_are_refused_with_the_key_named(mapping, fragment):
    with pytest.raises(ConfigError) as error:
        PipelineConfig.from_dict(mapping, source='ward.yaml')
    assert fragment in str(error.value)
    assert 'ward.yaml' in str(error.value)


def test_integers_are_accepted_for_float_settings_and_kept_as_floats():
    config = PipelineConfig.from_dict({'matcher': {'threshold': 1, 'margin': 0}})
    assert isinstance(config.matcher.threshold, float) and config.matcher.threshold == 1.0
    assert config.matcher.margin == 0.0


def test_replace_overrides_one_stage_and_revalidates():
    config = PipelineConfig().replace(detector={'blazeface_range': 'full'})
    assert config.detector.blazeface_range == 'full'
    assert config.tracker == PipelineConfig().tracker
    with pytest.raises(ConfigError, match='tracker.window'):
        config.replace(tracker={'window': 0})


def test_unreadable_and_invalid_yaml_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match='cannot read config'):
        PipelineConfig.from_yaml(tmp_path / 'missing.yaml')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('detector: [unclosed\n')
    with pytest.raises(ConfigError, match='not valid YAML'):
        PipelineConfig.from_yaml(broken)


def test_encryption_off_written_as_the_readme_says_is_accepted(tmp_path):
    # YAML 1.1 reads a bare `off` as the boolean False; the README writes it bare.
    path = tmp_path / 'test_gallery.yaml'
    path.write_text('gallery:\n  encryption: off\n')
    assert PipelineConfig.from_yaml(path).gallery.encryption == 'off'
    path.write_text("gallery:\n  encryption: 'off'\n")
    assert PipelineConfig.from_yaml(path).gallery.encryption == 'off'
    # A boolean where no choice is its word stays an error: `on` is no encryption setting.
    path.write_text('gallery:\n  encryption: on\n')
    with pytest.raises(ConfigError, match='gallery.encryption: expected text, got True'):
        PipelineConfig.from_yaml(path)
    path.write_text('detector:\n  backend: off\n')
    with pytest.raises(ConfigError, match='detector.backend: expected text, got False'):
        PipelineConfig.from_yaml(path)
