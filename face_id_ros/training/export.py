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
Export a trained backbone to ONNX with the ``face_id`` metadata, checked against torch.

``backbone_from_onnx`` goes the other way, so that training can continue from a shipped
model file when its checkpoint is gone.

The exported graph takes ``input`` (N, 3, H, W) float RGB normalised as
``(pixel - 127.5) / 127.5`` and returns ``embedding`` (N, D) already L2-normalised inside
the graph (the runtime normalises again, which changes nothing). The batch dimension is
dynamic. ``python -m face_id_ros.training.export --checkpoint runs/X/checkpoint.pt --out
models/face_embedder.onnx`` exports a training checkpoint.
"""

import argparse
from dataclasses import asdict, dataclass
import io
import os
from pathlib import Path
import warnings

from face_id_ros.core.config import build_stage, setting
from face_id_ros.core.errors import FaceIdError, ModelError
from face_id_ros.core.model_metadata import (
    ARCFACE_TEMPLATE_112, attach_metadata, METADATA_KEY, ModelMetadata)
from face_id_ros.training.backbones import (
    Backbone, BackboneConfig, ConvBNAct, count_macs, recalibrate_batch_norms)
from face_id_ros.training.data import CROP_SIZE, load_pack, network_faces
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime
import torch
from torch import nn
from torch.nn import functional

OPSET = 17
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` section of a training recipe: what the model file says about itself."""

    name: str = setting('face_id_pmnv2', 'Model name (shown in /face_id/gallery_info).')
    version: str = setting('0.1.0', 'Model version.')
    cosine_threshold: float = setting(
        0.5, 'Recommended open-set cosine threshold; set it from a validation run.',
        -1.0, 1.0)
    masked_cosine_threshold: object = setting(
        'none', 'Recommended cosine threshold against masked templates (face-id '
        'calibrate-threshold gives both); none: masked templates name nobody.', -1.0, 1.0,
        words=('none',))
    training_data: str = setting('', 'Training data description for the model card.')
    licence: str = setting('research use only', 'Licence of the weights (follows the data).')

    @classmethod
    def from_dict(cls, mapping, source='export'):
        """Build and validate from a mapping; raise ConfigError naming the bad key."""
        return build_stage(cls, mapping, source)


class ExportedModel(nn.Module):
    """What the model file computes: unit embeddings and, with a mask head, its output."""

    def __init__(self, backbone, mask_head=None):
        """Keep the backbone and the optional mask head (training.mask_head.MaskHead)."""
        super().__init__()
        self.backbone = backbone
        self.mask_head = mask_head

    def forward(self, images):
        """Return ``(embeddings,)`` or ``(embeddings, mask probabilities)``."""
        features = self.backbone.features(images)
        embeddings = functional.normalize(self.backbone.head(features), dim=1)
        if self.mask_head is None:
            return (embeddings,)
        return embeddings, self.mask_head(features)


def build_metadata(backbone, export_config, extra=None):
    """Return the ModelMetadata of ``backbone`` (a Backbone) with ``export_config``'s text."""
    config = backbone.config
    macs, parameters = count_macs(backbone, (config.input_size,) * 2)
    details = {'arch': config.arch, 'head': config.head, 'width_mult': config.width_mult,
               'expansion_keep': config.expansion_keep, 'depth': list(config.depth),
               'channels': list(config.channels), 'expanded': list(config.expanded),
               'eca': config.eca, 'eca_hswish': config.eca_hswish, 'macs': macs,
               'parameters': parameters, 'l2_normalised_output': True}
    details.update(extra or {})
    scale = config.input_size / CROP_SIZE  # a smaller net sees the whole crop, smaller
    return ModelMetadata(
        name=export_config.name, version=export_config.version,
        embedding_size=config.embedding_size, input_size=(config.input_size,) * 2,
        template=tuple((x * scale, y * scale) for x, y in ARCFACE_TEMPLATE_112),
        cosine_threshold=export_config.cosine_threshold,
        masked_cosine_threshold=None if export_config.masked_cosine_threshold == 'none'
        else float(export_config.masked_cosine_threshold),
        training_data=export_config.training_data, licence=export_config.licence,
        extra=details)


def export_onnx(backbone, metadata, out_path, real_inputs=None, mask_head=None):
    """
    Export ``backbone`` with ``metadata`` to ``out_path`` and check parity; return the diff.

    With ``mask_head`` (training.mask_head.MaskHead) the file has a second output,
    ``metadata.mask_output``. ``real_inputs`` (normalised NCHW tensor) are checked besides
    random ones. Raise ModelError when onnxruntime and torch differ by more than
    ``PARITY_TOLERANCE``.
    """
    model = ExportedModel(backbone, mask_head).eval().cpu()
    output_names = ['embedding'] + ([metadata.mask_output] if mask_head is not None else [])
    side = backbone.config.input_size
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter is deprecated but needs
        # no onnxscript, and gives the plain Conv/PRelu graph the runtime is tuned for
        torch.onnx.export(model, (torch.zeros(1, 3, side, side),), buffer, dynamo=False,
                          opset_version=OPSET, input_names=['input'],
                          output_names=output_names,
                          dynamic_axes={name: {0: 'batch'} for name in ['input'] + output_names})
    graph = onnx.load_from_string(buffer.getvalue())
    attach_metadata(graph, metadata)
    onnx.checker.check_model(graph)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, f'{out_path}.tmp')
    inputs = torch.rand(4, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    if real_inputs is not None:
        inputs = torch.cat([inputs, real_inputs.cpu().float()])
    difference = parity(model, f'{out_path}.tmp', inputs)
    if not difference <= PARITY_TOLERANCE:  # NaN fails too
        os.remove(f'{out_path}.tmp')
        raise ModelError(f'ONNX export of {metadata.name} differs from torch by {difference:.2e}'
                         f' (> {PARITY_TOLERANCE}); not written to {out_path}')
    os.replace(f'{out_path}.tmp', out_path)
    return difference


def parity(model, onnx_path, inputs):
    """Return the max abs difference of torch and onnxruntime outputs (embeddings unit)."""
    with torch.no_grad():
        expected = [output.numpy() for output in model(inputs)]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    actual = session.run(None, {'input': inputs.numpy()})
    actual[0] = actual[0] / np.linalg.norm(actual[0], axis=1, keepdims=True)
    return max(float(np.abs(got - wanted).max()) for got, wanted in zip(actual, expected))


def random_init_model(path, config=BackboneConfig(), seed=0):
    """
    Export an untrained backbone (for tests and benchmarks) to ``path``; return the path.

    Batch-norm statistics are measured on random images first: with the initial running
    statistics a deep random net's output vanishes, and a zero embedding is no use to a test.
    """
    torch.manual_seed(seed)
    backbone = Backbone(config)
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a plain average over the calibration batches
    with torch.no_grad():
        for _ in range(2):
            backbone(torch.rand(16, 3, config.input_size, config.input_size) * 2 - 1)
    backbone.eval()
    export_config = ExportConfig(name=f'random-{config.arch}', version='0.0.0',
                                 training_data='none: random weights, for tests and '
                                               'benchmarks only',
                                 licence='Apache-2.0')
    export_onnx(backbone, build_metadata(backbone, export_config), path)
    return path


def backbone_from_onnx(path, calibration_inputs):
    """
    Rebuild the Backbone that ``export_onnx`` wrote to ``path``; return ``(backbone, steps)``.

    The exporter folds each batch norm into the conv before it, so the file holds the folded
    conv weights and biases only. Each conv gets the folded weights, and its batch norm is
    set to compute the folded bias (scale 1), then re-estimated on ``calibration_inputs``
    (normalised NCHW faces) without changing what it computes, so that training mode keeps
    the feature scale. Raise ModelError when the file is not
    one of our table-driven backbones.
    """
    graph = onnx.load(str(path))
    properties = {prop.key: prop.value for prop in graph.metadata_props}
    if METADATA_KEY not in properties:
        raise ModelError(f'{path}: no {METADATA_KEY} metadata, not a face_id export')
    metadata = ModelMetadata.from_json(properties[METADATA_KEY], str(path))
    extra = metadata.extra
    if 'arch' not in extra:
        raise ModelError(f'{path}: its metadata names no backbone table (extra.arch)')
    operators = {node.op_type for node in graph.graph.node}
    config = BackboneConfig(
        arch=extra['arch'], width_mult=extra['width_mult'], head=extra['head'],
        eca=extra['eca'], eca_hswish=extra['eca_hswish'],
        embedding_size=metadata.embedding_size, input_size=metadata.input_size[0],
        activation='prelu' if 'PRelu' in operators else 'relu6',
        # Files exported before pruning was recorded keep every channel.
        expansion_keep=extra.get('expansion_keep', 1.0),
        depth=tuple(extra.get('depth', ())), channels=tuple(extra.get('channels', ())),
        expanded=tuple(extra.get('expanded', ())))
    backbone = Backbone(config)
    _load_folded_weights(backbone, graph, path)
    recalibrate_batch_norms(backbone, calibration_inputs)
    return backbone.eval(), int(extra.get('steps', 0))


def _load_folded_weights(backbone, graph, path):
    """Copy the file's convs (in graph order), PReLU slopes, linear and last batch norm."""
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.graph.initializer}
    for node in graph.graph.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == 'Identity' and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    nodes = {kind: [node for node in graph.graph.node if node.op_type == kind]
             for kind in ('Conv', 'PRelu', 'MatMul', 'BatchNormalization')}
    convs = [module for module in backbone.modules() if isinstance(module, (nn.Conv1d,
                                                                            nn.Conv2d))]
    norms = {block[0]: block[1] for block in backbone.modules() if isinstance(block, ConvBNAct)}
    prelus = [module for module in backbone.modules() if isinstance(module, nn.PReLU)]
    if (len(convs), len(prelus)) != (len(nodes['Conv']), len(nodes['PRelu'])):
        raise ModelError(f'{path}: {len(nodes["Conv"])} convs and {len(nodes["PRelu"])} PReLUs,'
                         f' but {backbone.config.arch} has {len(convs)} and {len(prelus)}')
    with torch.no_grad():
        for conv, node in zip(convs, nodes['Conv']):
            _copy(conv.weight, weights[node.input[1]], path)
            if conv in norms:  # eval: (y - 0) / sqrt(1 - eps + eps) * 1 + bias = y + bias
                norm = norms[conv]
                norm.running_mean.zero_()
                norm.running_var.fill_(1 - norm.eps)
                norm.weight.fill_(1)
                _copy(norm.bias, weights[node.input[2]], path)
        for prelu, node in zip(prelus, nodes['PRelu']):
            _copy(prelu.weight, weights[node.input[1]].reshape(-1), path)
        head = backbone.head
        _copy(head.linear.weight, weights[nodes['MatMul'][0].input[1]].T, path)
        norm_inputs = nodes['BatchNormalization'][0].input
        for name, value in zip(('weight', 'bias', 'running_mean', 'running_var'),
                               norm_inputs[1:]):
            _copy(getattr(head.norm, name), weights[value], path)


def _copy(parameter, array, path):
    """Copy ``array`` into ``parameter``; raise ModelError when the shapes differ."""
    if tuple(parameter.shape) != array.shape:
        raise ModelError(f'{path}: a tensor of shape {array.shape} where the backbone has '
                         f'{tuple(parameter.shape)}')
    parameter.copy_(torch.tensor(array))


def export_checkpoint(checkpoint_path, out_path, cosine_threshold=None,
                      masked_cosine_threshold=None, pack=None, parity_faces=32):
    """
    Export a training checkpoint; check parity on ``parity_faces`` faces of ``pack`` too.

    Thresholds given replace the recipe's; ``pack`` defaults to the training run's pack when
    it is still there. Return ``(metadata, difference)``.
    """
    checkpoint = torch.load(checkpoint_path, map_location='cpu', weights_only=True)
    if pack is None and os.path.exists(f'{checkpoint["pack"]}.json'):
        pack = checkpoint['pack']
    config = BackboneConfig.from_dict(checkpoint['backbone'], f'{checkpoint_path}: backbone')
    export_config = ExportConfig.from_dict(checkpoint['export'], f'{checkpoint_path}: export')
    given = {'cosine_threshold': cosine_threshold,
             'masked_cosine_threshold': masked_cosine_threshold}
    export_config = ExportConfig(**{**asdict(export_config),
                                    **{key: value for key, value in given.items()
                                       if value is not None}})
    backbone = Backbone(config)
    backbone.load_state_dict(checkpoint['model'])
    backbone.eval()
    real_inputs = None
    if pack:
        real_inputs = network_faces(load_pack(pack).images[:parity_faces], config.input_size)
    steps = checkpoint['step'] + checkpoint.get('steps_before', 0)
    metadata = build_metadata(backbone, export_config, {'steps': steps})
    return metadata, export_onnx(backbone, metadata, out_path, real_inputs)


def main(argv=None):
    """Export a training checkpoint to an ONNX embedder with its face_id metadata."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--out', default='models/face_embedder.onnx')
    parser.add_argument('--threshold', type=float, help='recommended cosine threshold '
                        '(face-id calibrate-threshold; default: export.cosine_threshold of '
                        'the recipe)')
    parser.add_argument('--masked-threshold', type=float,
                        help='recommended cosine threshold against masked templates (default: '
                        'export.masked_cosine_threshold of the recipe; none: they name nobody)')
    parser.add_argument('--pack', help='face pack whose faces join the parity check '
                        '(default: the training pack, when present)')
    args = parser.parse_args(argv)
    try:
        metadata, difference = export_checkpoint(
            args.checkpoint, args.out, args.threshold, args.masked_threshold, args.pack)
    except FaceIdError as error:
        raise SystemExit(f'error: {error}')
    print(f'wrote {args.out}: {metadata.name} {metadata.version}, '
          f'{metadata.embedding_size}-d, thresholds {metadata.cosine_threshold} (bare), '
          f'{metadata.masked_cosine_threshold} (masked templates), '
          f'parity {difference:.1e}')


if __name__ == '__main__':
    main()
