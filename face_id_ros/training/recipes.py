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
Training recipes: one YAML file, one config object per section, optionally on a base recipe.

A recipe has the sections ``model`` (BackboneConfig), ``loss`` (LossConfig), ``data``
(DataConfig), ``augment`` (AugmentConfig), ``train`` (TrainConfig) and ``export``
(ExportConfig). Every training command reads its recipe through ``load_recipe``.
"""

from dataclasses import dataclass

from face_id_ros.core.config import build_stage, read_yaml, setting
from face_id_ros.core.errors import ConfigError
from face_id_ros.training.backbones import BackboneConfig
from face_id_ros.training.data import AugmentConfig, DataConfig
from face_id_ros.training.export import ExportConfig
from face_id_ros.training.losses import LossConfig
import yaml


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of a recipe: optimisation and batching."""

    epochs: int = setting(30, 'Passes over the training faces.', 1, 100000)
    max_steps: int = setting(0, 'Stop after this many steps in all (0: no step budget).',
                             0, 10 ** 9)
    batch_size: int = setting(128, 'Faces per batch.', 2, 65536)
    labelled_fraction: float = setting(0.25, 'Share of a batch drawn from labelled faces.',
                                       0.0, 1.0)
    images_per_identity: int = setting(4, 'Labelled faces per identity in a batch.', 1, 256)
    optimizer: str = setting('adamw', 'Optimiser.', choices=('adamw', 'sgd'))
    lr: float = setting(2e-3, 'Peak learning rate (cosine decay to zero).', 0.0, 10.0)
    weight_decay: float = setting(0.05, 'Weight decay of conv and linear weights.', 0.0, 1.0)
    momentum: float = setting(0.9, 'SGD momentum (Nesterov).', 0.0, 1.0)
    warmup_steps: int = setting(200, 'Linear learning-rate warm-up steps.', 0, 10 ** 9)
    threads: int = setting(2, 'torch CPU threads.', 1, 1024)
    seed: int = setting(0, 'Seed of weights, batches and augmentation.', 0, 2 ** 31 - 1)
    device: str = setting('auto', 'Device; auto means cuda when available.',
                          choices=('auto', 'cpu', 'cuda'))
    init_from: str = setting('', 'Checkpoint, or ONNX file exported by this project, whose '
                             'weights start the run (pruned into the model when it keeps '
                             'fewer expanded channels); empty: random.')
    export_minutes: float = setting(20.0, 'Export face_embedder.onnx after the first checkpoint '
                                    'this many minutes after the last export.', 0.0, 10 ** 6)
    teacher_bfloat16: bool = setting(
        True, 'Run the exact-view teacher under bfloat16 autocast (2.7x faster on a CPU with '
        'AMX; the targets are normalised, so the rounding is far below the distillation '
        'gap).')
    torch_compile: bool = setting(False, 'torch.compile the training forward pass (minutes to '
                                  'compile; no faster on the 2-core CPU, try it on a GPU).')

    @classmethod
    def from_dict(cls, mapping, source='train'):
        """Build and validate from a mapping; raise ConfigError naming the bad key."""
        return build_stage(cls, mapping, source)


SECTIONS = {'model': BackboneConfig, 'loss': LossConfig, 'data': DataConfig,
            'augment': AugmentConfig, 'train': TrainConfig, 'export': ExportConfig}


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe, one config object per section."""

    model: BackboneConfig
    loss: LossConfig
    data: DataConfig
    augment: AugmentConfig
    train: TrainConfig
    export: ExportConfig

    @classmethod
    def from_dict(cls, mapping, source='recipe'):
        """Build every section; raise ConfigError naming an unknown section or bad key."""
        mapping = mapping or {}
        unknown = sorted(set(mapping) - set(SECTIONS))
        if unknown:
            raise ConfigError(f'{source}: unknown section(s) {unknown}; known: '
                              f'{sorted(SECTIONS)}')
        recipe = cls(**{name: section.from_dict(mapping.get(name), f'{source}: {name}')
                        for name, section in SECTIONS.items()})
        if recipe.augment.mix and recipe.loss.targets == 'centre_crop':
            raise ConfigError(f'{source}: augment.mix needs loss.targets: exact_view or '
                              f"clean_view (the centre crop's target is not the mixed "
                              f"picture's)")
        return recipe


def load_recipe(path, overrides=()):
    """
    Load a recipe YAML; ``overrides`` are ``'section.key=value'`` strings (YAML values).

    A recipe may name a ``base`` recipe (a path relative to the working directory): its
    sections start from the base's and replace only the keys they list.
    """
    mapping = _read_recipe_mapping(path, seen=())
    for override in overrides:
        key, separator, value = override.partition('=')
        section, dot, name = key.partition('.')
        if not separator or not dot:
            raise ConfigError(f'override {override!r} is not section.key=value')
        mapping.setdefault(section, {})[name] = yaml.safe_load(value)
    return Recipe.from_dict(mapping, str(path))


def _read_recipe_mapping(path, seen):
    """Return the recipe at ``path`` merged over its ``base`` chain, section by section."""
    if str(path) in seen:
        raise ConfigError(f'recipe {path}: base recipes form a loop through {list(seen)}')
    mapping = dict(read_yaml(path, 'recipe') or {})
    base = mapping.pop('base', None)
    if base is None:
        return mapping
    merged = _read_recipe_mapping(base, seen + (str(path),))
    for section, values in mapping.items():
        merged[section] = {**(merged.get(section) or {}), **(values or {})}
    return merged
