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

"""Tests of cutting a pruned net out of a trained one (training/cut.py) and its table."""

from pathlib import Path

import cv2
from face_id_ros.core.errors import ConfigError
import numpy as np
import pytest

try:
    import torch
except ImportError:  # the training extra is not installed: every test here skips
    torch = None
else:
    from face_id_ros.training import backbones, cut, losses

pytestmark = pytest.mark.skipif(torch is None, reason='needs torch (the training extra)')

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'
TEACHER = SHARED / 'models' / 'teacher_mobilefacenet'
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# MobileFaceNet's table at a 64 px input (a 4x4 final map): cheap enough for unit tests.
SIDE = 64
FULL = {'arch': 'mobilefacenet', 'activation': 'relu6', 'embedding_size': 128,
        'input_size': SIDE}


def random_source(seed=0):
    """Return a MobileFaceNet with random weights whose batch norms fit random faces."""
    torch.manual_seed(seed)
    model = backbones.Backbone(backbones.BackboneConfig(**FULL))
    backbones.recalibrate_batch_norms(model, torch.rand(64, 3, SIDE, SIDE) * 2 - 1)
    return model.eval()


def inputs(count, seed):
    """Return normalised random images."""
    return torch.rand(count, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_explicit_widths_build_the_table_they_describe():
    config = backbones.BackboneConfig.from_dict({
        **FULL, 'depth': [3, 1, 4, 1, 2], 'channels': [16, 16, 16, 48, 48, 64, 64, 256],
        'expanded': [48, 32, 32, 96, 64, 64, 64, 64, 128, 128, 128]})
    model = backbones.Backbone(config)
    blocks = [module for module in model.modules()
              if isinstance(module, backbones.InvertedResidual)]
    assert len(blocks) == 11
    assert [block.conv[-1][0].in_channels for block in blocks] == list(config.expanded)
    assert [block.use_residual for block in blocks] == [
        False, True, True, False, True, True, True, True, False, True, True]
    assert model.features[-1][0].out_channels == 256
    macs, _ = backbones.count_macs(backbones.Backbone(
        backbones.BackboneConfig(**{**FULL, **vars(config), 'input_size': 112})), (112, 112))
    assert 19e6 < macs < 20e6


@pytest.mark.parametrize('lists, message', [
    ({'depth': [3, 1, 4, 1]}, 'depth'), ({'depth': [6, 1, 6, 1, 2]}, 'depth'),
    ({'channels': [16, 16]}, 'channels'), ({'expanded': [32] * 3}, 'expanded'),
    ({'depth': [0, 1, 1, 1, 1]}, 'depth')])
def test_widths_that_do_not_fit_the_table_are_refused(lists, message):
    with pytest.raises(ConfigError, match=message):
        backbones.BackboneConfig.from_dict({**FULL, **lists})


def test_recalibrated_batch_norms_compute_the_same_and_fit_their_inputs():
    model = random_source()
    faces = inputs(32, 1) * 0.5 + 0.2  # other statistics than those it was fitted to
    before = model(faces).detach()
    backbones.recalibrate_batch_norms(model, faces)
    with torch.no_grad():
        assert torch.allclose(model.eval()(faces), before, atol=1e-4)
        in_training_mode = model.train()(faces)
    assert torch.allclose(in_training_mode, before, atol=1e-3)


def test_a_cut_that_keeps_everything_computes_what_its_source_computes():
    source = random_source()
    student = cut.Cutter(source, backbones.BackboneConfig(**FULL), inputs(48, 2)).run()
    assert cut.cosine_to(student, source, inputs(16, 3)) > 0.9999


def test_a_cut_drops_the_blocks_and_channels_that_carry_nothing():
    source = random_source()
    # Silence two residual blocks and half the expanded channels of every block: a cut that
    # drops exactly those must compute what the source computes.
    blocks = [module for module in source.features
              if isinstance(module, backbones.InvertedResidual)]
    silent = {blocks[2], blocks[9]}
    expanded = []
    with torch.no_grad():
        for block in blocks:
            projection = block.conv[-1][1]
            if block in silent:
                projection.weight.zero_()
                projection.bias.zero_()
                continue
            depthwise = block.conv[1][1]
            dropped = torch.randperm(len(depthwise.weight))[len(depthwise.weight) // 2:]
            depthwise.weight[dropped] = 0.0
            depthwise.bias[dropped] = -1.0  # ReLU6 of a negative: nothing reaches the output
            expanded.append(len(depthwise.weight) // 2)
    config = backbones.BackboneConfig.from_dict(
        {**FULL, 'depth': [4, 1, 5, 1, 2], 'expanded': expanded})
    student = cut.Cutter(source, config, inputs(48, 4)).run()
    kept = [module for module in student.features
            if isinstance(module, backbones.InvertedResidual)]
    assert len(kept) == 13
    assert cut.cosine_to(student, source, inputs(16, 5)) > 0.9999


def test_a_cut_refuses_another_table():
    with pytest.raises(ConfigError, match='table'):
        cut.Cutter(random_source(), backbones.BackboneConfig(input_size=SIDE), inputs(4, 0))


@pytest.mark.skipif(not (TEACHER / 'mobilefacenet.pt').exists(),
                    reason='needs the teacher beside the checkout (../shared/data)')
def test_the_teachers_state_dict_computes_what_its_onnx_file_computes():
    import onnxruntime
    files = sorted((SHARED / 'train' / 'celeba299').glob('*/*.jpg'))[:6]
    faces = np.stack([cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[8:120, 8:120]
                      for path in files]).astype(np.float32)
    session = onnxruntime.InferenceSession(str(TEACHER / 'mobilefacenet.onnx'),
                                           providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    expected = np.concatenate([session.run(None, {name: np.ascontiguousarray(
        ((face[None] - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)).astype(
            np.float32)})[0] for face in faces])
    teacher = cut.teacher_backbone(TEACHER / 'mobilefacenet.pt', IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        actual = teacher(torch.from_numpy((faces - 127.5) / 127.5).permute(0, 3, 1, 2)
                         .float()).numpy()
    cosine = (expected * actual).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(
        actual, axis=1)
    assert cosine.min() > 0.999  # only the zero padding around the image differs


def test_relation_loss_compares_how_faces_relate():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(8, 16, generator=generator)
    assert losses.relation_loss(3.0 * teacher, teacher) < 1e-10
    rotated = teacher @ torch.linalg.qr(torch.randn(16, 16, generator=generator))[0]
    assert losses.relation_loss(rotated, teacher) < 1e-10  # same relations, other place
    assert losses.distillation_loss(rotated, teacher) > 0.5
    assert losses.relation_loss(torch.randn(8, 16, generator=generator), teacher) > 0.01


def test_a_smaller_input_sees_the_whole_crop_scaled_and_the_runtime_aligns_to_it(
        tmp_path, portrait):
    from face_id_ros.core.config import PipelineConfig
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.training import data
    from face_id_ros.training.export import random_init_model

    path = random_init_model(tmp_path / 'small.onnx', backbones.BackboneConfig(
        input_size=96, activation='relu6', width_mult=0.5, embedding_size=32))
    small = Pipeline(PipelineConfig().replace(embedder={'model': str(path)}))
    assert small.embedder.input_size == (96, 96)
    assert np.allclose(small.embedder.metadata.template[2], (56.0252 * 96 / 112,
                                                             71.7366 * 96 / 112))
    full = Pipeline(PipelineConfig())
    landmarks = [face.landmarks for face in full.detector.detect(portrait)]
    assert len(landmarks) == 1
    crop_112, crop_96 = full.align(portrait, landmarks)[0], small.align(portrait, landmarks)[0]
    assert crop_96.shape == (96, 96, 3)
    # Training scales the 112 px crop to 96 px: the runtime's crop must look the same, up to
    # resampling (the unscaled template, the centre 96 px of the crop, differs by 0.34).
    scaled = data.resize_input(data.to_network_input(torch.from_numpy(crop_112[None])), 96)
    difference = (scaled - data.to_network_input(torch.from_numpy(crop_96[None]))).abs()
    assert float(difference.mean()) < 0.08
    assert small.describe(portrait).embeddings.shape == (1, 32)
    # Calibration crops the training canvases as training does: 112 px, then scaled.
    import cv2 as opencv
    from face_id_ros.evaluation.benchmarks import calibrate_threshold
    for person, face in (('a', crop_112), ('b', crop_112[:, ::-1])):
        (tmp_path / 'people' / person).mkdir(parents=True)
        canvas = opencv.copyMakeBorder(np.ascontiguousarray(face), 8, 8, 8, 8,
                                       opencv.BORDER_REPLICATE)
        assert opencv.imwrite(str(tmp_path / 'people' / person / 'face.png'), canvas)
    mirrored = np.ascontiguousarray(crop_112[:, ::-1])
    expected = small.embedder.embed(np.stack([
        opencv.resize(face, (96, 96), interpolation=opencv.INTER_AREA)
        for face in (crop_112, mirrored)]))
    threshold, masked_threshold = calibrate_threshold(str(path), tmp_path / 'people', far=0.5)
    assert threshold == pytest.approx(float(expected[0] @ expected[1]), abs=1e-4)
    assert masked_threshold >= threshold


def test_a_cut_net_goes_to_onnx_and_back(tmp_path):
    from face_id_ros.training.export import (
        backbone_from_onnx, build_metadata, export_onnx, ExportConfig)
    config = backbones.BackboneConfig.from_dict({
        **FULL, 'depth': [2, 1, 3, 1, 1], 'channels': [16, 16, 16, 32, 32, 48, 48, 128],
        'expanded': [32, 24, 48, 48, 48, 48, 96, 96]})
    student = cut.Cutter(random_source(), config, inputs(48, 6)).run()
    path = tmp_path / 'cut.onnx'
    export_onnx(student, build_metadata(student, ExportConfig()), path)
    rebuilt, _ = backbone_from_onnx(path, inputs(32, 7))
    assert rebuilt.config == config
    assert cut.cosine_to(rebuilt, student, inputs(8, 8)) > 0.9999


def test_a_cut_records_which_source_channels_each_row_carries():
    source = random_source()
    config = backbones.BackboneConfig.from_dict(
        {**FULL, 'depth': [3, 1, 4, 1, 2], 'channels': [32, 32, 32, 64, 64, 96, 96, 256]})
    cutter = cut.Cutter(source, config, inputs(64, 6))
    student = cutter.run()
    maps = {}
    for name, model in (('student', student), ('source', source)):
        rows = cut.blocks_by_row(model)[1]
        hooks = [row[-1].register_forward_hook(
            lambda module, args, output, key=(name, index): maps.__setitem__(key, output))
            for index, row in enumerate(rows)]
        with torch.no_grad():
            model(inputs(16, 7))
        for hook in hooks:
            hook.remove()
    assert [len(kept) for kept in cutter.row_channels] == [32, 64, 64, 96, 96]
    for index, kept in enumerate(cutter.row_channels):
        ours, theirs = maps['student', index], maps['source', index]
        recorded = losses.feature_map_loss([(ours, theirs[:, kept])])
        others = losses.feature_map_loss([(ours, theirs[:, torch.randperm(
            theirs.shape[1], generator=torch.Generator().manual_seed(index))[:len(kept)]])])
        # The cut fits each row to the source's output on the recorded channels.
        assert recorded < 0.2 * others, (index, float(recorded), float(others))
