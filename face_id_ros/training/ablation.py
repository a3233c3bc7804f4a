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
Ablation of a recipe's options at one training budget, scored on LFW View 2.

``python -m face_id_ros.training.ablation --plan config/training/ablation.yaml``

A plan names a base recipe, the overrides every row shares (the budget) and one row per
variant: its own overrides, or an existing ONNX model as a reference point. Each variant is
trained into ``<out>/<row>`` (resumed when interrupted, skipped when its model exists) and
exported; every model is then scored on the same LFW faces, detected and aligned once by the
runtime pipeline. Writes ``ablation.csv``, ``ABLATION.md`` and ``ablation.png`` (MACs
against LFW accuracy) into the plan's ``results`` folder.
"""

import argparse
import csv
from dataclasses import dataclass, replace
import os
from pathlib import Path

from face_id_ros.core.config import build_stage, PipelineConfig, read_yaml, setting
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.errors import ConfigError, FaceIdError
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.evaluation.benchmarks import (align_photos, embed_crops, lfw_photos,
                                               lfw_verification)
from face_id_ros.training.backbones import Backbone, BackboneConfig, count_macs
from face_id_ros.training.recipes import load_recipe
from face_id_ros.training.train import Trainer
from matplotlib.figure import Figure
import numpy as np
import torch

COLUMNS = ('row', 'label', 'mmacs', 'params', 'onnx_mb', 'steps', 'val_teacher_cosine',
           'lfw_accuracy', 'lfw_std', 'lfw_threshold', 'tar_at_far_1e_3')


@dataclass(frozen=True)
class AblationRow:
    """One variant: recipe overrides to train, or an existing model to score."""

    name: str
    label: str
    overrides: tuple = ()
    onnx: str = ''
    mmacs: float = 0.0


@dataclass(frozen=True)
class AblationPlan:
    """The ``ablation`` YAML: base recipe, shared budget, rows, data and output folders."""

    base: str = setting('config/training/distill_arcfacew.yaml', 'Recipe every row starts from.')
    common: tuple = setting((), 'Overrides (section.key=value) shared by every trained row.')
    rows: tuple = setting((), 'Rows: name, label, and set (overrides) or onnx + mmacs.')
    lfw: str = setting('../shared/data/eval/lfw', 'LFW folder (pairs.txt and images/).')
    out: str = setting('runs/ablation', "Folder of the rows' training runs.")
    results: str = setting('models/ablation', 'Folder of the table, CSV and plot.')

    @classmethod
    def from_yaml(cls, path):
        """Read and check a plan; raise ConfigError naming what is wrong."""
        mapping = read_yaml(path, 'ablation plan') or {}
        plan = build_stage(cls, mapping, str(path))
        rows = tuple(_row(item, f'{path}: rows[{index}]')
                     for index, item in enumerate(plan.rows))
        names = [row.name for row in rows]
        if not rows or len(set(names)) != len(names):
            raise ConfigError(f'{path}: rows must be present and uniquely named, got {names}')
        return replace(plan, common=tuple(str(item) for item in plan.common), rows=rows)


def _row(item, where):
    """Build one AblationRow from its YAML mapping."""
    if not isinstance(item, dict) or not {'name', 'label'} <= set(item):
        raise ConfigError(f'{where}: needs name and label, got {item!r}')
    unknown = sorted(set(item) - {'name', 'label', 'set', 'onnx', 'mmacs'})
    if unknown:
        raise ConfigError(f'{where}: unknown key(s) {unknown}')
    if 'onnx' in item and 'set' in item:
        raise ConfigError(f'{where}: give set (a variant to train) or onnx (a reference)')
    return AblationRow(str(item['name']), str(item['label']),
                       tuple(str(value) for value in item.get('set') or ()),
                       str(item.get('onnx', '')), float(item.get('mmacs', 0.0)))


def train_row(plan, row):
    """Train and export one variant unless its model exists; return (onnx path, summary)."""
    out_dir = Path(plan.out) / row.name
    recipe = load_recipe(plan.base, plan.common + row.overrides)
    trainer = Trainer(recipe, out_dir)
    onnx_path = out_dir / 'face_embedder.onnx'
    if not onnx_path.exists():
        trainer.run(resume=trainer.checkpoint_path.exists())
        trainer.export()
    state = torch.load(trainer.checkpoint_path, map_location='cpu', weights_only=True)
    trainer.model.load_state_dict(state['model'])
    trainer.criterion.load_state_dict(state['loss'])
    macs, params = count_macs(Backbone(BackboneConfig.from_dict(state['backbone'])))
    return onnx_path, {'mmacs': macs / 1e6, 'params': params, 'steps': state['step'],
                       'val_teacher_cosine': trainer.validate()}


def aligned_lfw(lfw, cache):
    """Return (pairs, paths, crops): LFW aligned once by the runtime pipeline, cached."""
    pairs, paths = lfw_photos(lfw)
    cache = Path(cache)
    if cache.exists():
        crops = np.load(cache)
    else:
        crops, fallbacks = align_photos(Pipeline(PipelineConfig()), paths, 'align LFW')
        print(f'LFW: {len(paths)} photos aligned, {fallbacks} centre-crop fallbacks')
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, crops)
    if len(crops) != len(paths):
        raise ConfigError(f'{cache} holds {len(crops)} faces, LFW has {len(paths)}: delete it')
    return pairs, paths, crops


def score_row(onnx_path, pairs, paths, crops):
    """Return the row's LFW cosine results (10 folds, TAR at FAR 1e-3)."""
    embeddings = embed_crops(OnnxEmbedder(str(onnx_path), threads=1), crops)
    _, _, results = lfw_verification(pairs, paths, embeddings)
    cosine = results['cosine']
    return {'lfw_accuracy': cosine['accuracy_mean'], 'lfw_std': cosine['accuracy_std'],
            'lfw_threshold': cosine['threshold_mean'],
            'tar_at_far_1e_3': cosine['tar_at_far_1e_3']}


def run_plan(plan, plan_path):
    """Train, export and score every row; write the results; return the table rows."""
    models = []
    for row in plan.rows:
        if row.onnx:
            if not os.path.exists(row.onnx):
                raise ConfigError(f'{plan_path}: reference model {row.onnx} does not exist')
            models.append((row, Path(row.onnx), {'mmacs': row.mmacs}))
        else:
            print(f'== {row.name}: {row.label}')
            models.append((row, *train_row(plan, row)))
    pairs, paths, crops = aligned_lfw(plan.lfw, Path(plan.out) / 'lfw_aligned.npy')
    table = [{'row': row.name, 'label': row.label,
              'onnx_mb': os.path.getsize(onnx_path) / 2 ** 20, **summary,
              **score_row(onnx_path, pairs, paths, crops)}
             for row, onnx_path, summary in models]
    write_results(plan, plan_path, table)
    return table


def write_results(plan, plan_path, table):
    """Write ablation.csv, ABLATION.md and ablation.png into the plan's results folder."""
    results = Path(plan.results)
    results.mkdir(parents=True, exist_ok=True)
    with open(results / 'ablation.csv', 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, COLUMNS, restval='')
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in entry.items()}
                         for entry in table)
    lines = [
        '# Ablation at one training budget',
        '',
        f'Made by `python -m face_id_ros.training.ablation --plan {plan_path}`: every trained '
        f'row is `{plan.base}` with `{" ".join(plan.common) or "no budget overrides"}` and '
        'its own overrides, scored on LFW View 2 (10 folds, cosine, no flip-sum) with faces '
        'aligned once by the runtime pipeline (BlazeFace, calibrated template).',
        '',
        '| row | variant | MMACs | params | ONNX MB | steps | held-out teacher cosine '
        '| LFW accuracy | TAR@FAR=1e-3 |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    for entry in table:
        cosine = entry.get('val_teacher_cosine')
        lines.append(
            f'| {entry["row"]} | {entry["label"]} | {entry["mmacs"]:.2f} | '
            f'{_cell(entry.get("params", ""))} | {entry["onnx_mb"]:.2f} | '
            f'{entry.get("steps", "")} | {"" if cosine is None else f"{cosine:.3f}"} | '
            f'{100 * entry["lfw_accuracy"]:.2f}% ± {100 * entry["lfw_std"]:.2f} | '
            f'{100 * entry["tar_at_far_1e_3"]:.2f}% |')
    (results / 'ABLATION.md').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    plot_macs_accuracy(table, results / 'ablation.png')


def _cell(value):
    """Format a CSV cell: floats to 6 significant digits."""
    return f'{value:.6g}' if isinstance(value, float) else value


def plot_macs_accuracy(table, path):
    """Scatter LFW accuracy (with its fold std) against MACs, one labelled point per row."""
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    for entry in table:
        accuracy = 100 * entry['lfw_accuracy']
        axes.errorbar(entry['mmacs'], accuracy, yerr=100 * entry['lfw_std'], fmt='o',
                      capsize=3)
        axes.annotate(entry['row'], (entry['mmacs'], accuracy), textcoords='offset points',
                      xytext=(5, 5), fontsize=8)
    axes.set(xscale='log', xlabel='million multiply-accumulates per face (log)',
             ylabel='LFW 10-fold accuracy (%)', title='Ablation: cost against accuracy')
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    """Run an ablation plan and print its table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--plan', default='config/training/ablation.yaml',
                        help='ablation plan YAML')
    args = parser.parse_args(argv)
    try:
        plan = AblationPlan.from_yaml(args.plan)
        run_plan(plan, args.plan)
    except FaceIdError as error:
        raise SystemExit(f'error: {error}')
    print((Path(plan.results) / 'ABLATION.md').read_text(encoding='utf-8'))


if __name__ == '__main__':
    main()
