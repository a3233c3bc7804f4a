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
The mask head: a second output of the embedder that says whether the face wears a mask.

The head reads the backbone's last feature map (frozen, so the embeddings stay exactly those
of the model it is added to): the mean of the rows above the nose and of the rows from the
nose down, one linear layer, a sigmoid. It costs a few thousand MACs. It is fitted as a
class-balanced logistic regression on real masked faces (RMFD), unmasked faces of the
training sets and the same unmasked sets with synthetic masks, then measured on real photos
that it never saw, re-aligned by the runtime's own detector:

    python -m face_id_ros.training.mask_head --recipe config/training/mask_head.yaml
"""

import argparse
from dataclasses import asdict, dataclass, replace
import hashlib
import json
from pathlib import Path

import cv2
from face_id_ros.core.config import build_stage, PipelineConfig, read_yaml, setting
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.errors import ConfigError, FaceIdError, ModelError
from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.evaluation import benchmarks, metrics, plots
from face_id_ros.evaluation.synthetic_masks import paint_masks_on_crops
from face_id_ros.training.backbones import Backbone, BackboneConfig
from face_id_ros.training.data import (CANVAS_SIZE, CROP_SIZE, list_faces, network_faces,
                                       read_face)
from face_id_ros.training.export import build_metadata, export_onnx, ExportConfig
import numpy as np
import torch
from torch import nn

MASK_OUTPUT = 'mask_probability'


@dataclass(frozen=True)
class MaskHeadConfig:
    """The ``mask_head`` recipe: where the faces are, how the head is fitted, what is written."""

    checkpoint: str = setting('runs/cut_mobilefacenet/checkpoint.pt',
                              'Embedder training checkpoint whose frozen features the head reads.')
    masked: tuple = setting(('../shared/data/train/rmfd_masked',),
                            'Folders of real masked, aligned faces (128 px canvases).')
    unmasked: tuple = setting(('../shared/data/train/celeba299',),
                              'Folders of unmasked, aligned faces (128 px canvases).')
    unmasked_per_folder: int = setting(2000, 'Unmasked faces drawn from each folder.',
                                       1, 10 ** 7)
    synthetic_share: float = setting(
        0.5, 'Share of the drawn unmasked training faces that get a synthetic mask and count '
        'as masked: masks of every source, so the head learns masks and not the source.',
        0.0, 0.9)
    held_out: float = setting(0.3, 'Share of each folder held out for the test, by a hash of '
                              'the file name (stable across runs).', 0.05, 0.9)
    lower_face_from: float = setting(
        64.0, 'Row of the 112 px crop where the lower face begins, just above the nose tip '
        '(71.7): the head pools the feature map above and below it (row 4 of 7).', 8.0, 104.0)
    weight_decay: float = setting(1e-3, 'L2 penalty of the logistic regression.', 0.0, 10.0)
    threshold: float = setting(0.5, 'Mask probability above which a face counts as masked '
                               '(the balanced fit puts the boundary between the classes at 0.5).',
                               0.0, 1.0)
    seed: int = setting(0, 'Seed of the draws, the synthetic masks and the crop shifts.',
                        0, 2 ** 31 - 1)
    version: str = setting('1.1.0', 'Version of the model file written.')
    out: str = setting('models/face_embedder.onnx', 'Model file the head is added to, in '
                       'place: it must come from ``checkpoint``, and keeps its threshold.')
    report: str = setting('models/mask_head', 'Folder of the test report and ROC plot.')

    @classmethod
    def from_dict(cls, mapping, source='mask_head'):
        """Build and validate from a mapping; lists become tuples."""
        mapping = {key: tuple(value) if isinstance(value, list) else value
                   for key, value in (mapping or {}).items()}
        return build_stage(cls, mapping, source)


class MaskHead(nn.Module):
    """Upper- and lower-face mean of the feature map, a linear layer, a sigmoid."""

    def __init__(self, channels, split_row):
        """``split_row``: first feature-map row of the lower face."""
        super().__init__()
        self.split_row = split_row
        self.linear = nn.Linear(2 * channels, 1)

    def pooled(self, features):
        """Return ``(N, 2C)``: the means of the rows above and from ``split_row``."""
        upper = features[:, :, :self.split_row].mean((2, 3))
        lower = features[:, :, self.split_row:].mean((2, 3))
        return torch.cat([upper, lower], 1)

    def chance(self, pooled):
        """Return the mask probability ``(N, 1)`` from ``pooled`` features."""
        return torch.sigmoid(self.linear(pooled))

    def forward(self, features):
        """Return the mask probability ``(N, 1)``."""
        return self.chance(self.pooled(features))


def is_held_out(path, fraction):
    """Tell whether ``path`` is in the test share, by a hash of its folder and file name."""
    path = Path(path)
    digest = hashlib.sha1(f'{path.parent.name}/{path.name}'.encode('utf-8')).digest()
    return int.from_bytes(digest[:4], 'big') / 2 ** 32 < fraction


def split_folder(folder, config, limit=None):
    """Return (training paths, test paths) of one face folder, ``limit`` drawn from each."""
    paths = [path for path, _ in list_faces(folder)]
    rng = np.random.default_rng(config.seed)
    train = [path for path in paths if not is_held_out(path, config.held_out)]
    test = [path for path in paths if is_held_out(path, config.held_out)]
    if limit is not None:
        train = [train[i] for i in sorted(rng.permutation(len(train))[:limit])]
        test = [test[i] for i in sorted(rng.permutation(len(test))[:limit])]
    return train, test


def canvas_crops(paths, rng, max_shift=4):
    """Read packed 128 px faces; return BGR 112 px crops at random shifts and the shifts."""
    margin = (CANVAS_SIZE - CROP_SIZE) // 2
    offsets = rng.integers(-max_shift, max_shift + 1, (len(paths), 2))
    crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for index, path in enumerate(paths):
        canvas = cv2.cvtColor(read_face(path), cv2.COLOR_RGB2BGR)
        top, left = margin + offsets[index]
        crops[index] = canvas[top:top + CROP_SIZE, left:left + CROP_SIZE]
    return crops, offsets


def training_faces(config, rng):
    """Return (BGR crops, is_masked, is_real) of the head's training set."""
    crops, masked, real = [], [], []
    for folder in config.masked:
        train, _ = split_folder(folder, config)
        faces, _ = canvas_crops(train, rng)
        crops.append(faces)
        masked.append(np.ones(len(faces), bool))
        real.append(np.ones(len(faces), bool))
    template = np.asarray(ARCFACE_TEMPLATE_112)
    for folder in config.unmasked:
        train, _ = split_folder(folder, config, config.unmasked_per_folder)
        faces, offsets = canvas_crops(train, rng)
        painted = rng.random(len(faces)) < config.synthetic_share
        faces[painted] = paint_masks_on_crops(faces[painted], rng, template, offsets[painted])
        crops.append(faces)
        masked.append(painted)
        real.append(~painted)
    return np.concatenate(crops), np.concatenate(masked), np.concatenate(real)


def load_backbone(checkpoint_path):
    """Return (backbone in eval mode, its export config) from a training checkpoint."""
    checkpoint = torch.load(checkpoint_path, map_location='cpu', weights_only=True)
    config = BackboneConfig.from_dict(checkpoint['backbone'], f'{checkpoint_path}: backbone')
    backbone = Backbone(config)
    backbone.load_state_dict(checkpoint['model'])
    steps = checkpoint['step'] + checkpoint.get('steps_before', 0)
    export = ExportConfig.from_dict(checkpoint['export'], f'{checkpoint_path}: export')
    return backbone.eval(), export, steps


def split_row(backbone, config):
    """Return the feature-map row of ``config.lower_face_from``, leaving rows on both sides."""
    side = backbone.config.input_size
    with torch.no_grad():
        rows = backbone.features(torch.zeros(1, 3, side, side)).shape[2]
    return int(np.clip(round(config.lower_face_from / CROP_SIZE * rows), 1, rows - 1))


def pooled_features(backbone, head, crops, chunk=256):
    """Return the head's pooled input ``(N, 2C)`` for BGR crops."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(crops), chunk):
            rows.append(head.pooled(_features(backbone, crops[start:start + chunk])))
    return torch.cat(rows)


def fit_head(head, features, masked, weight_decay, iterations=25):
    """
    Fit the head's linear layer: balanced, L2-penalised logistic regression by Newton steps.

    Features are standardised first (the scale is folded back into the layer), so one
    penalty suits every channel; Newton's method on the convex loss needs no learning rate.
    """
    features = features.double()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-3)  # dead channels stay 0
    inputs = torch.cat([(features - mean) / std, torch.ones(len(features), 1,
                                                            dtype=torch.float64)], 1)
    labels = torch.from_numpy(masked.astype(np.float64))
    weights = torch.where(labels > 0, 0.5 / labels.mean(), 0.5 / (1 - labels.mean()))
    weights = weights / weights.sum()
    penalty = torch.full((inputs.shape[1],), float(weight_decay), dtype=torch.float64)
    penalty[-1] = 0.0  # the bias is not penalised
    coefficients = torch.zeros(inputs.shape[1], dtype=torch.float64)
    for _ in range(iterations):
        chance = torch.sigmoid(inputs @ coefficients)
        gradient = inputs.T @ (weights * (chance - labels)) + 2 * penalty * coefficients
        curvature = weights * chance * (1 - chance)
        hessian = (inputs.T * curvature) @ inputs + torch.diag(2 * penalty + 1e-9)
        coefficients = coefficients - torch.linalg.solve(hessian, gradient)
    weight, bias = coefficients[:-1], coefficients[-1]
    with torch.no_grad():  # fold the standardisation into the layer
        head.linear.weight.copy_((weight / std)[None].float())
        head.linear.bias.copy_((bias - (weight / std * mean).sum())[None].float())
    return head


def test_sets(config, lfw):
    """Return {name: (paths, is_masked)}: held-out real photos, and LFW when given."""
    sets = {}
    for folder in config.masked:
        _, test = split_folder(folder, config)
        sets[f'masked: {Path(folder).name} held out'] = (test, True)
    for folder in config.unmasked:
        _, test = split_folder(folder, config, config.unmasked_per_folder // 2)
        sets[f'unmasked: {Path(folder).name} held out'] = (test, False)
    if lfw:
        _, paths = benchmarks.lfw_photos(lfw)
        sets['unmasked: LFW (evaluation set)'] = (paths, False)
    return sets


def measure(backbone, head, config, lfw):
    """Score the test photos as the runtime sees them; return the report."""
    pipeline = Pipeline(PipelineConfig())  # the runtime's detector and alignment
    probabilities, truths, report = [], [], {'sets': {}}
    for name, (paths, masked) in test_sets(config, lfw).items():
        crops, fallbacks = benchmarks.align_photos(pipeline, paths, name)
        with torch.no_grad():
            chance = head.chance(pooled_features(backbone, head, crops))[:, 0].numpy()
        called = chance >= config.threshold
        correct = int((called == masked).sum())
        report['sets'][name] = {'photos': len(paths), 'centre_crop_fallbacks': fallbacks,
                                'correct': correct, 'accuracy': correct / max(len(paths), 1)}
        probabilities.append(chance)
        truths.append(np.full(len(paths), masked))
    chance, truth = np.concatenate(probabilities), np.concatenate(truths)
    report.update(_summary(chance, truth, config.threshold))
    return report


def _features(backbone, crops):
    """Return the backbone's last feature map of BGR 112 px crops."""
    return backbone.features(network_faces(crops[:, :, :, ::-1], backbone.config.input_size))


def _summary(chance, truth, threshold):
    called = chance >= threshold
    masked_right = float((called & truth).sum() / max(truth.sum(), 1))
    unmasked_right = float((~called & ~truth).sum() / max((~truth).sum(), 1))
    far, tar, _ = metrics.roc_curve(chance, truth)
    return {'threshold': threshold, 'photos': int(len(truth)), 'masked_photos': int(truth.sum()),
            'accuracy': float((called == truth).mean()),
            'balanced_accuracy': (masked_right + unmasked_right) / 2,
            'masked_recall': masked_right, 'unmasked_recall': unmasked_right,
            'auc': float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2)), 'roc': (far, tar)}


def build(config, lfw=None):
    """Fit the head, measure it, write the two-output model and the report; return it."""
    rng = np.random.default_rng(config.seed)
    backbone, export, steps = load_backbone(config.checkpoint)
    base = check_same_model(backbone, config)
    head = MaskHead(backbone.head.linear.in_features, split_row(backbone, config))
    crops, masked, real = training_faces(config, rng)
    print(f'fitting on {len(crops)} faces: {int((masked & real).sum())} real masked, '
          f'{int((masked & ~real).sum())} synthetic masked, {int((~masked).sum())} unmasked')
    head = fit_head(head, pooled_features(backbone, head, crops), masked,
                    config.weight_decay).eval()
    report = measure(backbone, head, config, lfw)
    far, tar = report.pop('roc')
    out = Path(config.report)
    out.mkdir(parents=True, exist_ok=True)
    plots.plot_roc({'mask head, held-out real photos': (far, tar)}, out / 'roc.png',
                   'Mask classification ROC (masked = positive)')
    export_model(backbone, head, export, steps, config, base)
    report['recipe'] = asdict(config)
    (out / 'report.json').write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    return report


def check_same_model(backbone, config):
    """Raise ModelError unless ``config.out`` embeds as the checkpoint's backbone does."""
    base = OnnxEmbedder(config.out)
    crops = np.random.default_rng(0).integers(0, 256, (8,) + base.input_size[::-1] + (3,),
                                              dtype=np.uint8)
    with torch.no_grad():
        inputs = network_faces(crops[:, :, :, ::-1], backbone.config.input_size)
        expected = nn.functional.normalize(backbone(inputs), dim=1).numpy()
    change = float(np.abs(base.embed(crops) - expected).max())
    if not change <= 1e-4:  # NaN too
        raise ModelError(f'{config.checkpoint} does not embed as {config.out} does (max '
                         f'difference {change:.1e}): fit the head on the checkpoint of that '
                         'model')
    return base


def export_model(backbone, head, export, steps, config, base):
    """
    Write the embedder with its mask output over ``config.out``; return the parity.

    The embedding is the checkpoint's, as in the file replaced (``base``), whose
    recommended thresholds it keeps: the head adds an output and changes nothing else.
    """
    metadata = build_metadata(backbone, export, {'steps': steps,
                                                 'mask_head_linear_macs': head.linear.in_features})
    metadata = replace(metadata, version=config.version,
                       cosine_threshold=base.metadata.cosine_threshold,
                       masked_cosine_threshold=base.metadata.masked_cosine_threshold,
                       mask_output=MASK_OUTPUT, mask_threshold=config.threshold)
    return export_onnx(backbone, metadata, config.out, mask_head=head)


def print_report(report):
    """Print the test figures, per set and in all."""
    for name, figures in report['sets'].items():
        print(f'  {name:42s} {figures["correct"]:5d}/{figures["photos"]:<5d} '
              f'{100 * figures["accuracy"]:6.2f}%  (centre-crop fallbacks '
              f'{figures["centre_crop_fallbacks"]})')
    print(f'  all {report["photos"]} photos at {report["threshold"]}: accuracy '
          f'{100 * report["accuracy"]:.2f}%, balanced {100 * report["balanced_accuracy"]:.2f}%,'
          f' masked recall {100 * report["masked_recall"]:.2f}%, unmasked '
          f'{100 * report["unmasked_recall"]:.2f}%, AUC {report["auc"]:.4f}')


def main(argv=None):
    """Fit the mask head on a checkpoint's frozen features; write the model and the report."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--recipe', required=True, help='YAML with a mask_head section')
    parser.add_argument('--lfw', help='LFW folder: its photos join the unmasked test set')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        recipe = read_yaml(args.recipe, 'recipe') or {}
        if not isinstance(recipe, dict) or set(recipe) != {'mask_head'}:
            raise ConfigError(f'{args.recipe}: expected one section, mask_head')
        report = build(MaskHeadConfig.from_dict(recipe['mask_head']), args.lfw)
    except FaceIdError as error:
        raise SystemExit(f'error: {error}')
    print_report(report)


if __name__ == '__main__':
    main()
