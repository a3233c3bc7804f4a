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
Cut a small embedder out of a trained one: drop blocks, choose channels, refit projections.

``python -m face_id_ros.training.cut --recipe config/training/X.yaml --source TEACHER
--out runs/X/cut.pt`` builds the recipe's ``model`` (a table with ``depth``, ``channels``
and ``expanded`` lists) from the source's weights, so that training starts from a net that
already embeds faces. The source is the teacher's PyTorch state_dict (``mobilefacenet.pt``)
or any checkpoint or ONNX export of this project of the same table. The steps:

1. On the source, measure on training faces how much each residual branch adds to its
   stream and how much signal every channel carries; in each bottleneck row keep the first
   block and the residual blocks that add most.
2. Give every stream (the channels a run of residual blocks shares) the channels of most
   energy, and every block the expanded channels of most energy times projection weight.
3. Walk both nets layer by layer on the same faces: convs whose input keeps every channel
   take the chosen filters as they are; every other 1x1 conv (and the embedding's linear
   layer) is refitted in closed form (ridge least squares with an intercept) so that its
   output matches the source's, given the pruned net's own inputs. A projection is fitted to
   what its block must add to the pruned stream to reach the source's block output.
4. Re-estimate every batch norm's statistics on training faces without changing what the
   net computes, so training and evaluation modes agree from the first step.

The output is a checkpoint that ``train.init_from`` and ``training.export`` take.
"""

import argparse
from dataclasses import asdict
import os
from pathlib import Path

from face_id_ros.core.errors import ConfigError, FaceIdError
from face_id_ros.training.backbones import (
    ARCHITECTURES, Backbone, BackboneConfig, count_macs, InvertedResidual,
    recalibrate_batch_norms)
from face_id_ros.training.data import held_out_indices, load_pack, network_faces
from face_id_ros.training.export import backbone_from_onnx
from face_id_ros.training.recipes import load_recipe
import numpy as np
import torch
from torch.nn import functional

# Faces whose activations choose the channels and fit the projections.
FIT_FACES = 512
# Positions (face x pixel) sampled for one least-squares fit.
FIT_POSITIONS = 200_000
# Ridge of the fits, relative to the mean input energy.
RIDGE = 1e-3

# The teacher's state_dict names (foamliu/MobileFaceNet) -> the MobileFaceNet table's.
_TEACHER_PREFIXES = (('conv1.0.', 'features.0.0.'), ('conv1.1.', 'features.0.1.'),
                     ('dw_conv.depthwise.', 'features.1.0.'),
                     ('dw_conv.bn1.', 'features.1.1.'),
                     ('dw_conv.pointwise.', 'features.2.0.'),
                     ('dw_conv.bn2.', 'features.2.1.'),
                     ('conv2.0.', 'features.18.0.'), ('conv2.1.', 'features.18.1.'),
                     ('gdconv.depthwise.', 'head.pool.0.'), ('gdconv.bn.', 'head.pool.1.'),
                     ('bn.', 'head.norm.'))
TEACHER_CONFIG = BackboneConfig(arch='mobilefacenet', activation='relu6', head='gdconv',
                                embedding_size=128)


def teacher_backbone(path, mean, std):
    """
    Load the MobileFaceNet teacher's state_dict as a Backbone taking our input normalisation.

    The teacher sees ``(pixel - mean) / std`` (RGB, 0-255 units); our nets see
    ``(pixel - 127.5) / 127.5``. The first conv absorbs the difference (its bias goes into
    the batch norm's running mean), and the embedding's linear bias into the last batch
    norm's, so the Backbone computes the teacher's embedding (up to the value of the zero
    padding around the image).
    """
    state = torch.load(path, map_location='cpu', weights_only=True)
    mapped = {}
    for name, value in state.items():
        for old, new in _TEACHER_PREFIXES:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        else:
            name = _teacher_block_name(name)
        mapped[name] = value
    linear_bias = mapped.pop('conv3.bias')
    mapped['head.linear.weight'] = mapped.pop('conv3.weight').flatten(1)
    mapped['head.norm.running_mean'] = mapped['head.norm.running_mean'] - linear_bias
    mean, std = (torch.tensor(values, dtype=torch.float32) for values in (mean, std))
    scale, offset = 127.5 / std, (127.5 - mean) / std
    weight = mapped['features.0.0.weight']
    mapped['features.0.0.weight'] = weight * scale[None, :, None, None]
    mapped['features.0.1.running_mean'] = (mapped['features.0.1.running_mean']
                                           - (weight * offset[None, :, None, None]).sum((1, 2, 3)))
    model = Backbone(TEACHER_CONFIG)
    try:
        model.load_state_dict(mapped)
    except RuntimeError as error:
        raise ConfigError(f'{path} is not the MobileFaceNet teacher: {error}')
    return model.eval()


def _teacher_block_name(name):
    """Map ``features.i.conv.{0,1,2,3}...`` of the teacher onto Backbone's block names."""
    parts = name.split('.')
    if parts[0] != 'features' or parts[2] != 'conv':
        return name
    index, layer = int(parts[1]) + 3, parts[3]
    rest = '.'.join(parts[4:])
    if layer in ('2', '3'):  # the projection's conv and batch norm: our ConvBNAct's 0 and 1
        rest, layer = f'{int(layer) - 2}.{rest}', '2'
    return f'features.{index}.conv.{layer}.{rest}'


def load_source(path, calibration_inputs, mean, std):
    """Return the Backbone in ``path``: teacher state_dict, our checkpoint, or our ONNX."""
    if not os.path.exists(path):
        raise ConfigError(f'cut source {path} does not exist')
    if str(path).endswith('.onnx'):
        return backbone_from_onnx(path, calibration_inputs)[0]
    state = torch.load(path, map_location='cpu', weights_only=True)
    if 'backbone' not in state:
        return teacher_backbone(path, mean, std)
    model = Backbone(BackboneConfig.from_dict(state['backbone'], f'{path}: backbone'))
    model.load_state_dict(state['model'])
    return model.eval()


def blocks_by_row(model):
    """Return the model's stem layers, its blocks grouped by bottleneck row, and the rest."""
    layers = list(model.features)
    first = next(index for index, layer in enumerate(layers)
                 if isinstance(layer, InvertedResidual))
    last = first + sum(isinstance(layer, InvertedResidual) for layer in layers)
    blocks, rows = iter(layers[first:last]), []
    for repeats in model.config.depth or [row[2] for row in ARCHITECTURES[
            model.config.arch].blocks]:
        rows.append([next(blocks) for _ in range(repeats)])
    return layers[:first], rows, layers[last:]


def measure_source(source, inputs):
    """
    Return per-layer channel energies and per-block branch shares of ``source`` on inputs.

    ``energy[layer]`` is the mean square of each output channel of a top-level feature
    layer; ``branch[block]`` is ||F(x)||^2 / ||x||^2 of a residual block's branch.
    """
    energy, branch = {}, {}

    def hook(module, args, output):
        energy[module] = energy.get(module, 0) + output.pow(2).mean((0, 2, 3))
        if isinstance(module, InvertedResidual) and module.use_residual:
            share = (output - args[0]).pow(2).sum() / args[0].pow(2).sum()
            branch[module] = branch.get(module, 0) + share

    handles = [layer.register_forward_hook(hook) for layer in source.features]
    try:
        with torch.no_grad():
            for batch in inputs.split(128):
                source(batch)
    finally:
        for handle in handles:
            handle.remove()
    return energy, branch


def kept_blocks(source_rows, depth, branch):
    """In each row keep the first block and the ``depth - 1`` branches that add most."""
    kept = []
    for blocks, count in zip(source_rows, depth):
        rest = sorted(blocks[1:], key=lambda block: -float(branch.get(block, 0)))
        chosen = set(rest[:count - 1]) | {blocks[0]}
        kept.append([block for block in blocks if block in chosen])
    return kept


def _top(scores, count):
    """Return the indices of the ``count`` largest scores, in channel order."""
    if count > len(scores):
        raise ConfigError(f'cannot keep {count} channels of {len(scores)}')
    return scores.argsort(descending=True)[:count].sort().values


def _fit(inputs, targets, prior, generator):
    """
    Least squares ``targets ~ W inputs + b`` over sampled positions; return (W, b).

    ``inputs`` (N, Cin, H, W) and ``targets`` (N, Cout, H, W), or (N, C) for linear layers.
    The ridge pulls W towards ``prior`` (the source's weights on the kept channels), not
    towards zero: where the faces leave W undetermined it stays the source's, and a cut
    that keeps every channel gets the source's weights back.
    """
    if inputs.ndim == 4:
        inputs = inputs.permute(0, 2, 3, 1).reshape(-1, inputs.shape[1])
        targets = targets.permute(0, 2, 3, 1).reshape(-1, targets.shape[1])
    if len(inputs) > FIT_POSITIONS:
        picked = torch.randperm(len(inputs), generator=generator)[:FIT_POSITIONS]
        inputs, targets = inputs[picked], targets[picked]
    design = torch.cat([inputs, torch.ones(len(inputs), 1)], 1).double()
    gram = design.T @ design
    ridge = RIDGE * gram.diagonal()[:-1].mean()
    gram[:-1, :-1] += ridge * torch.eye(len(gram) - 1, dtype=gram.dtype)
    right = design.T @ targets.double()
    right[:-1] += ridge * prior.T.double()
    solution = torch.linalg.solve(gram, right).float()
    return solution[:-1].T.contiguous(), solution[-1]


def _pre_norm_target(norm, output, channels):
    """Invert an evaluation-mode batch norm's ``channels``: the input that gives ``output``."""
    scale = norm.weight[channels] / torch.sqrt(norm.running_var[channels] + norm.eps)
    return ((output - norm.bias[channels, None, None]) / scale[:, None, None]
            + norm.running_mean[channels, None, None])


def _set_norm(norm, source, channels, intercept=None):
    """Copy the chosen channels of a batch norm; fold a conv's intercept into its mean."""
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        getattr(norm, name).copy_(getattr(source, name)[channels])
    if intercept is not None:
        norm.running_mean.sub_(intercept)


def _copy_conv(target, source, out_channels, in_channels=None):
    """Copy a ConvBNAct's chosen filters (and input channels), batch norm and slopes."""
    weight = source[0].weight[out_channels]
    if in_channels is not None and source[0].groups == 1:
        weight = weight[:, in_channels]
    target[0].weight.copy_(weight)
    _set_norm(target[1], source[1], out_channels)
    _copy_slopes(target, source, out_channels)


def _copy_slopes(target, source, channels):
    """Copy PReLU slopes of the chosen channels, when the activation has them."""
    if len(source) > 2 and hasattr(source[2], 'weight'):
        target[2].weight.copy_(source[2].weight[channels])


def _refit_conv(target, source, student_in, source_in, out_channels, in_channels, generator,
                wanted=None):
    """
    Fit a 1x1 ConvBNAct of the student to the source conv's output on ``out_channels``.

    The student's input holds the source's ``in_channels``; ``wanted`` is the batch-norm
    output to reach (default: the source's own). Return the student's output.
    """
    if wanted is None:
        goal = source[0](source_in)[:, out_channels]
    else:
        goal = _pre_norm_target(source[1], wanted, out_channels)
    prior = source[0].weight.flatten(1)[out_channels][:, in_channels]
    weight, intercept = _fit(student_in, goal, prior, generator)
    target[0].weight.copy_(weight[:, :, None, None])
    _set_norm(target[1], source[1], out_channels, intercept)
    _copy_slopes(target, source, out_channels)
    return target(student_in)


class Cutter:
    """Walk a source net and a pruned student side by side, filling the student's weights."""

    def __init__(self, source, config, faces, seed=0):
        """``faces`` are normalised NCHW inputs of the fit (FIT_FACES of them is plenty)."""
        if (config.arch, config.head, config.embedding_size) != (
                source.config.arch, source.config.head, source.config.embedding_size):
            raise ConfigError('a cut keeps the source table, head and embedding size: '
                              f'source {source.config.arch}/{source.config.head}/'
                              f'{source.config.embedding_size}')
        self.source, self.faces = source.eval(), faces
        self.student = Backbone(config).eval()
        self.generator = torch.Generator().manual_seed(seed)
        # The source's channels that each bottleneck row's output keeps, for feature matching.
        self.row_channels = []

    def run(self):
        """Return the cut student (evaluation mode, batch norms of the source)."""
        source, student = self.source, self.student
        energy, branch = measure_source(source, self.faces)
        source_stem, source_rows, source_last = blocks_by_row(source)
        student_stem, student_rows, student_last = blocks_by_row(student)
        depth = student.config.depth or [len(row) for row in source_rows]
        kept = {block for row in kept_blocks(source_rows, depth, branch) for block in row}
        with torch.no_grad():
            source_x = student_x = self.faces
            channels = None
            for target, layer in zip(student_stem, source_stem):
                source_out = layer(source_x)
                if layer[0].groups > 1:  # depthwise: keeps its input's channels
                    _copy_conv(target, layer, channels)
                    student_x = target(student_x)
                elif channels is None:  # the first conv sees every input channel
                    channels = _top(energy[layer], target[0].out_channels)
                    _copy_conv(target, layer, channels)
                    student_x = target(student_x)
                else:
                    chosen = _top(energy[layer], target[0].out_channels)
                    student_x = _refit_conv(target, layer, student_x, source_x, chosen,
                                            channels, self.generator)
                    channels = chosen
                source_x = source_out
            students = iter(block for row in student_rows for block in row)
            source_blocks = [block for row in source_rows for block in row]
            row_ends = {row[-1] for row in source_rows}
            for index, block in enumerate(source_blocks):
                source_out = block(source_x)
                if block in kept:
                    target = next(students)
                    stream = channels if target.use_residual else _top(
                        _stream_energy(energy, source_blocks[index:]),
                        target.conv[-1][0].out_channels)
                    student_x = self._cut_block(target, block, student_x, source_x,
                                                source_out, channels, stream)
                    channels = stream
                source_x = source_out
                if block in row_ends:
                    self.row_channels.append(channels.tolist())
            for target, layer in zip(student_last, source_last):
                chosen = _top(energy[layer] * _head_weight(source), target[0].out_channels)
                student_x = _refit_conv(target, layer, student_x, source_x, chosen, channels,
                                        self.generator)
                source_x, channels = layer(source_x), chosen
            self._cut_head(student_x, source_x, channels)
        return student

    def _cut_block(self, target, block, student_x, source_x, source_out, in_stream,
                   out_stream):
        """Fill one kept block; return its output on the student's input."""
        source_layers, target_layers = list(block.conv), list(target.conv)
        if len(source_layers) != 3 or len(target_layers) != len(source_layers):
            raise ConfigError('a cut needs blocks of expand, depthwise and projection convs '
                              '(no ECA, no expansion 1)')
        expand, depthwise = source_layers[0], source_layers[1]
        source_dw = depthwise(expand(source_x))
        projection = source_layers[-1][0].weight.flatten(1)
        hidden = _top(source_dw.pow(2).mean((0, 2, 3)) * projection.pow(2).sum(0),
                      target_layers[-1][0].in_channels)
        student_hidden = _refit_conv(target_layers[0], expand, student_x, source_x, hidden,
                                     in_stream, self.generator)
        _copy_conv(target_layers[1], depthwise, hidden)
        student_dw = target_layers[1](student_hidden)
        wanted = source_out[:, out_stream]
        if target.use_residual:  # the branch adds what the pruned stream lacks
            wanted = wanted - student_x
        branch = _refit_conv(target_layers[-1], source_layers[-1], student_dw, None,
                             out_stream, hidden, self.generator, wanted)
        return branch + student_x if target.use_residual else branch

    def _cut_head(self, student_x, source_x, channels):
        """Copy the chosen GDConv channels and refit the linear embedding."""
        source_head, target_head = self.source.head, self.student.head
        if self.source.config.head == 'gdconv':
            _copy_conv(target_head.pool, source_head.pool, channels)
        pooled = torch.flatten(target_head.pool(student_x), 1)
        goal = source_head.linear(torch.flatten(source_head.pool(source_x), 1))
        prior = source_head.linear.weight[:, channels]
        weight, intercept = _fit(pooled, goal, prior, self.generator)
        target_head.linear.weight.copy_(weight)
        _set_norm(target_head.norm, source_head.norm, slice(None), intercept)


def _stream_energy(energy, blocks):
    """Energy of the stream that ``blocks[0]`` starts: summed over it and its residuals."""
    total = energy[blocks[0]]
    for block in blocks[1:]:
        if not block.use_residual:
            break
        total = total + energy[block]
    return total


def _head_weight(source):
    """How much each last-conv channel reaches the embedding (GDConv and linear weights)."""
    linear = source.head.linear.weight.pow(2).sum(0)
    if source.config.head == 'gdconv':
        return linear * source.head.pool[0].weight.pow(2).flatten(1).sum(1)
    return linear


def cosine_to(student, source, inputs):
    """Mean cosine of student and source embeddings of ``inputs`` (evaluation mode)."""
    student.eval()
    with torch.no_grad():
        return float(torch.cat([functional.cosine_similarity(student(batch), source(batch))
                                for batch in inputs.split(128)]).mean())


def cut_from_recipe(recipe, source_path, out_path, faces=FIT_FACES):
    """Cut ``recipe.model`` from ``source_path``; write a checkpoint; return a report dict."""
    pack = load_pack(recipe.data.pack)
    seed = recipe.train.seed
    val = held_out_indices(len(pack.labels), seed, recipe.data.val_fraction)
    train = np.setdiff1d(np.arange(len(pack.labels)), val)
    rng = np.random.default_rng(seed)
    size = recipe.model.input_size
    fit_inputs = network_faces(pack.images[np.sort(rng.choice(train, faces, replace=False))],
                               size)
    check_inputs = network_faces(pack.images[val[:faces]], size)
    source = load_source(source_path, fit_inputs, recipe.data.teacher_mean,
                         recipe.data.teacher_std)
    cutter = Cutter(source, recipe.model, fit_inputs, seed)
    student = cutter.run()
    report = {'cut_cosine': cosine_to(student, source, check_inputs)}
    recalibrate_batch_norms(student, network_faces(
        pack.images[np.sort(rng.choice(train, faces, replace=False))], size))
    report['recalibrated_cosine'] = cosine_to(student, source, check_inputs)
    report['macs'], report['parameters'] = count_macs(student, (size, size))
    report['source_macs'] = count_macs(source, (size, size))[0]
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'backbone': asdict(recipe.model), 'model': student.state_dict(), 'step': 0,
                'export': asdict(recipe.export), 'pack': recipe.data.pack,
                'source': str(source_path), 'report': report,
                'teacher_channels': cutter.row_channels}, out_path)
    return report


def main(argv=None):
    """Cut a recipe's pruned model out of a trained source and write a checkpoint."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--recipe', required=True, help='config/training/X.yaml')
    parser.add_argument('--source', required=True,
                        help="the teacher's mobilefacenet.pt, or our checkpoint or ONNX")
    parser.add_argument('--out', required=True, help='checkpoint to write (train.init_from)')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override a recipe value (repeatable)')
    parser.add_argument('--faces', type=int, default=FIT_FACES, help='faces of the fit')
    args = parser.parse_args(argv)
    try:
        report = cut_from_recipe(load_recipe(args.recipe, args.set), args.source, args.out,
                                 args.faces)
    except FaceIdError as error:
        raise SystemExit(f'error: {error}')
    print(f'wrote {args.out}: {report["macs"] / 1e6:.2f}M MACs '
          f'(source {report["source_macs"] / 1e6:.1f}M), {report["parameters"]:,} parameters; '
          f'held-out cosine to the source {report["cut_cosine"]:.4f} as cut, '
          f'{report["recalibrated_cosine"]:.4f} with re-estimated batch norms')


if __name__ == '__main__':
    main()
