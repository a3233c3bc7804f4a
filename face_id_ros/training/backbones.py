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
Face embedding backbones built from tables, in the manner of torchvision's mobilenetv2.py.

An architecture is data, not a class: stem rows ``(kind, c, k, s[, activation])`` of plain
convolutions (``'conv'`` a full k x k conv to c channels, ``'dw'`` a depthwise k x k conv that
keeps its c input channels; the activation defaults to the config's), bottleneck rows
``(t, c, n, s)`` (expansion, output channels, repeats, stride of the first repeat) and the
width of a final 1x1 conv. One block class (the inverted residual), one conv + BN +
activation helper and one embedding head build every table.

A net pruned from a trained one is the same table with three lists in its config: ``depth``
(blocks kept per bottleneck row), ``channels`` (the width of every stem conv row, bottleneck
row and the last conv) and ``expanded`` (the expanded width of every block); see ``cut.py``.

Run ``python -m face_id_ros.training.backbones`` to print parameters and MACs of the named
configurations.
"""

import argparse
from dataclasses import dataclass, replace
import itertools

from face_id_ros.core.config import build_stage, setting
from face_id_ros.core.errors import ConfigError
import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """A backbone as tables: stem rows, bottleneck rows, last 1x1 width, channel rounding."""

    stem: tuple
    blocks: tuple
    last_channels: int
    round_nearest: int


# Nursing-robot paper, Table 3: about 15M MACs at 112x112; the final feature map is 4x4.
PRUNED_MOBILENETV2 = Architecture(
    stem=(('conv', 32, 3, 2),),
    blocks=((1, 8, 1, 1), (6, 12, 2, 2), (5, 16, 3, 2), (4, 32, 4, 2), (3, 64, 3, 2),
            (2, 128, 1, 1)),
    last_channels=1280,
    round_nearest=4)

# Chen et al. 2018; with the GDConv head about 0.99M parameters and 221M MACs. Its
# depthwise-separable stem uses plain ReLU (the teacher's weights rely on it).
MOBILEFACENET = Architecture(
    stem=(('conv', 64, 3, 2), ('dw', 64, 3, 1, 'relu'), ('conv', 64, 1, 1, 'relu')),
    blocks=((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)),
    last_channels=512,
    round_nearest=8)


def _separable_rows(first, rows):
    """Expand MobileNet v1's depthwise-separable layers ``(c, s)`` into stem rows."""
    stem, channels = [('conv', first, 3, 2)], first
    for out_channels, stride in rows:
        stem += [('dw', channels, 3, stride), ('conv', out_channels, 1, 1)]
        channels = out_channels
    return tuple(stem)


# Fast-FaceNet's MobileNet v1 (Howard et al. 2017): all plain rows, no bottlenecks.
MOBILENET_V1 = Architecture(
    stem=_separable_rows(32, ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
                         + ((512, 1),) * 5 + ((1024, 2), (1024, 1))),
    blocks=(),
    last_channels=0,
    round_nearest=8)

ARCHITECTURES = {
    'pruned_mobilenetv2': PRUNED_MOBILENETV2,
    'mobilefacenet': MOBILEFACENET,
    'mobilenet_v1': MOBILENET_V1,
}

ECA_KERNEL = 3


@dataclass(frozen=True)
class BackboneConfig:
    """The ``model`` section of a training recipe: which table and which switches."""

    arch: str = setting('pruned_mobilenetv2', 'Architecture table.',
                        choices=tuple(ARCHITECTURES))
    width_mult: float = setting(1.0, 'Channel multiplier (channels rounded per table).',
                                0.1, 4.0)
    expansion_keep: float = setting(
        1.0, "Share of each bottleneck's expanded channels kept (structured pruning; "
        'blocks without an expansion conv keep all).', 0.05, 1.0)
    embedding_size: int = setting(128, 'Length of the embedding.', 2, 4096)
    head: str = setting('gdconv', 'Pooling before the linear embedding: global depthwise '
                        'conv (GDConv) or global average pooling.',
                        choices=('gdconv', 'avgpool'))
    activation: str = setting('prelu', 'Activation after every non-linear conv.',
                              choices=('prelu', 'relu6', 'relu'))
    eca: bool = setting(False, 'ECA channel attention after each bottleneck depthwise conv.')
    eca_hswish: bool = setting(False, 'Use h-swish instead of sigmoid inside ECA.')
    dropout: float = setting(0.0, 'Dropout before the linear embedding.', 0.0, 0.9)
    input_size: int = setting(112, 'Side of the square input crop in pixels.', 32, 1024)
    depth: tuple = setting((), 'Blocks kept per bottleneck row (pruned nets); empty: the '
                           "table's repeats.")
    channels: tuple = setting((), "Output width of each stem 'conv' row, each bottleneck row "
                              'and the last 1x1 conv (pruned nets; overrides width_mult); '
                              'empty: from the table.')
    expanded: tuple = setting((), 'Expanded width of every block (pruned nets; overrides '
                              'expansion_keep); empty: from the table.')

    @classmethod
    def from_dict(cls, mapping, source='model'):
        """Build and validate from a mapping; raise ConfigError naming the bad key."""
        mapping = {key: tuple(value) if isinstance(value, list) else value
                   for key, value in (mapping or {}).items()}
        config = build_stage(cls, mapping, source)
        if config.eca_hswish and not config.eca:
            raise ConfigError(f'{source}: eca_hswish needs eca: true')
        config.check_lists(source)
        return config

    def check_lists(self, source='model'):
        """Raise ConfigError unless depth, channels and expanded fit the table."""
        arch = ARCHITECTURES[self.arch]
        for name in ('depth', 'channels', 'expanded'):
            values = getattr(self, name)
            if not all(isinstance(value, int) and value > 0 for value in values):
                raise ConfigError(f'{source}.{name}: expected positive whole numbers')
        if self.depth and (len(self.depth) != len(arch.blocks) or any(
                kept > row[2] for kept, row in zip(self.depth, arch.blocks))):
            raise ConfigError(f'{source}.depth: one count per bottleneck row, at most its '
                              f'repeats {[row[2] for row in arch.blocks]}')
        expected = len(channel_rows(arch))
        if self.channels and len(self.channels) != expected:
            raise ConfigError(f'{source}.channels: expected {expected} widths (stem conv '
                              f'rows, bottleneck rows, last conv)')
        blocks = sum(self.depth or [row[2] for row in arch.blocks])
        if self.expanded and len(self.expanded) != blocks:
            raise ConfigError(f'{source}.expanded: expected {blocks} widths, one per block')


def channel_rows(arch):
    """Return the rows whose width ``BackboneConfig.channels`` sets, in order."""
    rows = [row for row in arch.stem if row[0] == 'conv'] + list(arch.blocks)
    return rows + ([('last', arch.last_channels)] if arch.last_channels else [])


def make_divisible(value, divisor):
    """Round a channel count to a multiple of ``divisor``, never below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + batch norm + activation; ``activation=None`` leaves it linear."""

    def __init__(self, in_channels, out_channels, kernel=3, stride=1, groups=1,
                 activation='prelu', padding=None):
        """Pad to keep the size at stride 1 unless ``padding`` is given."""
        padding = (kernel - 1) // 2 if padding is None else padding
        layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding,
                            groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if activation == 'prelu':
            layers.append(nn.PReLU(out_channels))
        elif activation == 'relu6':
            layers.append(nn.ReLU6(inplace=True))
        elif activation == 'relu':
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ECA(nn.Module):
    """
    Efficient channel attention (Wang et al. 2020): a k=3 conv across pooled channels.

    The gate is a sigmoid, or h-swish with ``hswish=True`` as in the improved MobileFaceNet
    (LFW 98.95% -> 99.02%); h-swish is cheaper and, unlike a sigmoid, can amplify a channel.
    """

    def __init__(self, hswish=False):
        """Create the 1-D conv (no bias) and the gate."""
        super().__init__()
        self.conv = nn.Conv1d(1, 1, ECA_KERNEL, padding=ECA_KERNEL // 2, bias=False)
        self.gate = nn.Hardswish() if hswish else nn.Sigmoid()

    def forward(self, features):
        """Scale each channel by its gate."""
        pooled = features.mean((2, 3)).unsqueeze(1)
        weights = self.gate(self.conv(pooled)).squeeze(1)
        return features * weights[:, :, None, None]


class InvertedResidual(nn.Module):
    """
    MobileNetV2 bottleneck: 1x1 expand, 3x3 depthwise, [ECA], linear 1x1 project.

    The residual is used exactly when the stride is 1 and the channel count is unchanged.
    """

    def __init__(self, in_channels, out_channels, stride, expand_ratio, activation='prelu',
                 eca=False, eca_hswish=False, keep=1.0, hidden=None):
        """Build the layers; no expand conv when ``expand_ratio`` is 1; ``hidden`` overrides."""
        super().__init__()
        if hidden is None:
            hidden = int(round(in_channels * expand_ratio))
            if expand_ratio != 1:
                hidden = max(1, int(round(hidden * keep)))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=activation))
        layers.append(ConvBNAct(hidden, hidden, 3, stride, groups=hidden,
                                activation=activation))
        if eca:
            layers.append(ECA(eca_hswish))
        layers.append(ConvBNAct(hidden, out_channels, 1, activation=None))
        self.conv = nn.Sequential(*layers)

    def forward(self, features):
        """Apply the bottleneck, plus the input when the residual is used."""
        if self.use_residual:
            return features + self.conv(features)
        return self.conv(features)


class EmbeddingHead(nn.Module):
    """Pool the feature map (GDConv or average), dropout, linear embedding, batch norm."""

    def __init__(self, in_channels, feature_size, embedding_size, kind='gdconv', dropout=0.0):
        """``feature_size`` is the side of the final feature map (GDConv's kernel)."""
        super().__init__()
        if kind == 'gdconv':
            self.pool = ConvBNAct(in_channels, in_channels, feature_size, groups=in_channels,
                                  activation=None, padding=0)
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, embedding_size, bias=False)
        self.norm = nn.BatchNorm1d(embedding_size)

    def forward(self, features):
        """Return the (not normalised) embedding."""
        return self.norm(self.linear(self.dropout(torch.flatten(self.pool(features), 1))))


class Backbone(nn.Module):
    """A face embedder built from ``ARCHITECTURES[config.arch]`` and the config's switches."""

    def __init__(self, config=BackboneConfig()):
        """Build ``features`` (stem, bottlenecks, last 1x1 conv) and ``head``."""
        super().__init__()
        self.config = config
        arch = ARCHITECTURES[config.arch]
        widths = iter(config.channels or _table_widths(config, arch))
        expanded = iter(config.expanded or itertools.repeat(None))

        layers, channels, size = [], 3, config.input_size
        for kind, _, kernel, stride, *activation in arch.stem:
            out_channels = channels if kind == 'dw' else next(widths)
            layers.append(ConvBNAct(channels, out_channels, kernel, stride,
                                    groups=channels if kind == 'dw' else 1,
                                    activation=(activation or [config.activation])[0]))
            channels, size = out_channels, _conv_size(size, kernel, stride)
        depth = config.depth or [row[2] for row in arch.blocks]
        for (expansion, _, _, first_stride), repeats in zip(arch.blocks, depth):
            out_channels = next(widths)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expansion,
                                               config.activation, config.eca,
                                               config.eca_hswish, config.expansion_keep,
                                               next(expanded)))
                channels, size = out_channels, _conv_size(size, 3, stride)
        if arch.last_channels:
            last = next(widths)
            layers.append(ConvBNAct(channels, last, 1, activation=config.activation))
            channels = last
        self.features = nn.Sequential(*layers)
        self.head = EmbeddingHead(channels, size, config.embedding_size, config.head,
                                  config.dropout)
        self.apply(_init_weights)

    def forward(self, images):
        """Embed a batch ``(N, 3, H, W)`` of normalised images; return ``(N, D)``."""
        return self.head(self.features(images))


def _table_widths(config, arch):
    """Return the widths of ``channel_rows(arch)`` from the table and ``width_mult``."""
    widths = [make_divisible(row[1] * config.width_mult, arch.round_nearest)
              for row in channel_rows(arch) if row[0] != 'last']
    if arch.last_channels:
        widths.append(make_divisible(arch.last_channels * max(1.0, config.width_mult),
                                     arch.round_nearest))
    return widths


def _conv_size(size, kernel, stride):
    """Output side of a conv with 'same' padding ``(kernel - 1) // 2``."""
    return (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1


def _init_weights(module):
    """Initialise as torchvision's MobileNetV2 does."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode='fan_out')
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)


def prune_into(source, target):
    """
    Copy ``source``'s weights into ``target``, a Backbone that keeps fewer expanded channels.

    Structured pruning as in network slimming (Liu et al. 2017): each bottleneck keeps the
    expanded channels whose depthwise batch-norm scale is largest in magnitude, with their
    expand filters, depthwise filters and the projection's matching input columns. Every
    other tensor is copied as is, so the two configs may differ in expansion_keep only.
    """
    if replace(source.config, expansion_keep=1.0) != replace(target.config, expansion_keep=1.0):
        raise ConfigError('pruning needs the same backbone config apart from expansion_keep')
    state = dict(source.state_dict())
    blocks = [(name, module) for name, module in source.named_modules()
              if isinstance(module, InvertedResidual)]
    for name, block in blocks:
        layers = list(block.conv)
        depthwise = next(layer for layer in layers
                         if isinstance(layer, ConvBNAct) and layer[0].groups > 1)
        if layers[0] is depthwise:
            continue  # no expansion conv: its hidden channels are the block's input
        kept = target.get_submodule(name).conv[-1][0].in_channels
        order = depthwise[1].weight.detach().abs().argsort(descending=True)
        chosen = order[:kept].sort().values
        for index in (0, layers.index(depthwise)):
            # conv filters, batch norm, and PReLU slopes when the activation has them
            for key in ('0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var',
                        '2.weight'):
                full = f'{name}.conv.{index}.{key}'
                if full in state:
                    state[full] = state[full][chosen]
        projection = f'{name}.conv.{len(layers) - 1}.0.weight'
        state[projection] = state[projection][:, chosen]
    target.load_state_dict(state)
    return target


def recalibrate_batch_norms(backbone, inputs):
    """
    Give each conv's batch norm the statistics of its input on ``inputs``, same function.

    Evaluation mode computes g (z - m) / sqrt(v + eps) + b. With the measured mean m' and
    variance v', the scale becomes g sqrt(v' + eps) / sqrt(v + eps) and the bias
    b + g (m' - m) / sqrt(v + eps): evaluation computes what it did, and training mode
    (batch statistics close to m' and v') does too. ``inputs`` are normalised NCHW faces.
    """
    norms = [block[1] for block in backbone.modules() if isinstance(block, ConvBNAct)]
    moments = {}

    def record(norm):
        def hook(module, args):
            moments[norm] = (args[0].mean((0, 2, 3)), args[0].var((0, 2, 3), unbiased=False))
        return hook

    handles = [norm.register_forward_pre_hook(record(norm)) for norm in norms]
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(inputs)
            for norm in norms:
                mean, variance = moments[norm]
                old_scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                norm.bias.add_(old_scale * (mean - norm.running_mean))
                norm.weight.copy_(old_scale * torch.sqrt(variance + norm.eps))
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(variance)
    finally:
        for handle in handles:
            handle.remove()


def count_macs(model, input_size=(112, 112)):
    """
    Return ``(macs, parameters)`` of one image through ``model``, from forward hooks.

    Counts multiply-accumulates of Conv1d/Conv2d and Linear layers (everything else is
    negligible here); ``input_size`` is (height, width).
    """
    macs = []

    def conv_hook(module, inputs, output):
        kernel = 1
        for side in module.kernel_size:
            kernel *= side
        macs.append(output.numel() * module.in_channels // module.groups * kernel)

    def linear_hook(module, inputs, output):
        macs.append(output.numel() * module.in_features)

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sum(macs), sum(parameter.numel() for parameter in model.parameters())


NAMED_CONFIGS = {
    'pruned_mobilenetv2': BackboneConfig(),
    'pruned_mobilenetv2_avgpool': BackboneConfig(head='avgpool'),
    'pruned_mobilenetv2_eca_hswish': BackboneConfig(eca=True, eca_hswish=True),
    'pruned_mobilenetv2_keep_0.5': BackboneConfig(expansion_keep=0.5),
    'mobilefacenet': BackboneConfig(arch='mobilefacenet'),
    'mobilefacenet_eca': BackboneConfig(arch='mobilefacenet', eca=True),
    'mobilefacenet_eca_hswish': BackboneConfig(arch='mobilefacenet', eca=True,
                                               eca_hswish=True),
}
for _width in (1.0, 0.5, 0.25):
    NAMED_CONFIGS[f'fast_facenet_{_width}'] = BackboneConfig(
        arch='mobilenet_v1', width_mult=_width, head='avgpool', activation='relu6')


def main(argv=None):
    """Print parameters and MACs of named configurations (all by default)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('names', nargs='*',
                        help=f'configurations to measure: {", ".join(NAMED_CONFIGS)}')
    parser.add_argument('--embedding-size', type=int, default=128)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMED_CONFIGS))
    if unknown:
        parser.error(f'unknown configuration(s) {unknown}')
    print(f'{"config":32s} {"params":>10s} {"MMACs":>9s}')
    for name in args.names or NAMED_CONFIGS:
        config = replace(NAMED_CONFIGS[name], embedding_size=args.embedding_size)
        macs, parameters = count_macs(Backbone(config), (config.input_size,) * 2)
        print(f'{name:32s} {parameters:10,d} {macs / 1e6:9.2f}')


if __name__ == '__main__':
    main()
