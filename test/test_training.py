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

"""Tests of the training side: backbones, losses, packing, a smoke run, resume and export."""

import csv
import dataclasses
import math
from pathlib import Path

import cv2
from face_id_ros.core.errors import ConfigError, ModelError
from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112, METADATA_KEY, ModelMetadata
from matplotlib import cbook
import numpy as np
import onnxruntime
import pytest
import yaml

try:
    import torch
except ImportError:  # the training extra is not installed: every test here skips
    torch = None
else:
    from face_id_ros.training import ablation, backbones, data, losses, prepare
    from face_id_ros.training.export import random_init_model
    from face_id_ros.training.recipes import load_recipe
    from face_id_ros.training.train import Trainer

# Not pytest.importorskip: launch_testing's pytest plugin imports every test module while
# collecting and lets a skip escape, which drops the whole test folder (0 tests, exit 0).
pytestmark = pytest.mark.skipif(torch is None, reason='needs torch (the training extra)')

SMOKE_RECIPE = Path(__file__).resolve().parents[1] / 'config' / 'training' / 'smoke.yaml'


def test_default_backbone_costs_about_15m_macs():
    macs, parameters = backbones.count_macs(backbones.Backbone())
    assert 14e6 < macs < 18e6
    assert 3e5 < parameters < 7e5


def test_mobilefacenet_table_matches_published_cost():
    macs, parameters = backbones.count_macs(
        backbones.Backbone(backbones.BackboneConfig(arch='mobilefacenet')))
    # Chen et al. 2018: 221M MACs, 0.99M parameters; the teacher's stem adds a 64x64
    # pointwise conv at 56x56 (12.8M MACs) to the depthwise one.
    assert 230e6 < macs < 237e6
    assert 0.95e6 < parameters < 1.05e6


def test_residual_exactly_when_stride_one_and_same_channels():
    model = backbones.Backbone().eval()
    blocks = [module for module in model.modules()
              if isinstance(module, backbones.InvertedResidual)]
    assert len(blocks) == 14
    assert sum(block.use_residual for block in blocks) == 8
    for block in blocks:
        convs = [module for module in block.modules() if isinstance(module, torch.nn.Conv2d)]
        stride = max(conv.stride[0] for conv in convs)
        expected = stride == 1 and convs[0].in_channels == convs[-1].out_channels
        assert block.use_residual == expected
        features = torch.randn(2, convs[0].in_channels, 16, 16)
        with torch.no_grad():
            added = block(features) - block.conv(features)
        assert torch.allclose(added, features if expected else torch.zeros_like(added),
                              atol=1e-4)


def test_switches_change_the_module_tree():
    def kinds(**switches):
        model = backbones.Backbone(backbones.BackboneConfig(**switches))
        return [type(module).__name__ for module in model.modules()]

    plain = kinds()
    assert 'ECA' not in plain and 'AdaptiveAvgPool2d' not in plain
    with_eca = kinds(eca=True)
    assert with_eca.count('ECA') == 14 and with_eca.count('Sigmoid') == 14
    hswish = kinds(eca=True, eca_hswish=True)
    assert hswish.count('Hardswish') == 14 and 'Sigmoid' not in hswish
    assert 'AdaptiveAvgPool2d' in kinds(head='avgpool')
    assert 'ReLU6' in kinds(activation='relu6') and 'PReLU' not in kinds(activation='relu6')
    model = backbones.Backbone(backbones.BackboneConfig(width_mult=0.5, embedding_size=512))
    assert model.eval()(torch.zeros(2, 3, 112, 112)).shape == (2, 512)


@pytest.mark.parametrize('switches', [{}, {'eca': True, 'activation': 'prelu'}])
def test_pruning_drops_exactly_the_channels_it_does_not_keep(switches):
    torch.manual_seed(0)
    config = backbones.BackboneConfig(**switches)
    source = backbones.Backbone(config).eval()
    pruned = backbones.Backbone(backbones.BackboneConfig(expansion_keep=0.5, **switches))
    # Silence, in the source, every expanded channel the pruned net cannot hold: then both
    # nets compute the same function if pruning keeps the right channels, filters and columns.
    for name, block in source.named_modules():
        if not isinstance(block, backbones.InvertedResidual) or block.conv[0][0].groups > 1:
            continue
        depthwise = block.conv[1][1]
        kept = pruned.get_submodule(name).conv[-1][0].in_channels
        dropped = torch.randperm(len(depthwise.weight))[kept:]
        with torch.no_grad():
            depthwise.weight.uniform_(0.5, 1.5)
            depthwise.weight[dropped] = 0.0
            depthwise.bias[dropped] = 0.0
    backbones.prune_into(source, pruned).eval()
    images = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(pruned(images), source(images), atol=1e-4)
    full_macs, _ = backbones.count_macs(source)
    pruned_macs, _ = backbones.count_macs(pruned)
    assert 0.4 * full_macs < pruned_macs < 0.8 * full_macs
    with pytest.raises(ConfigError, match='expansion_keep'):
        backbones.prune_into(source, backbones.Backbone(backbones.BackboneConfig(
            expansion_keep=0.5, embedding_size=64)))


def test_arcsin_series_coefficients():
    expected = [1, 1 / 6, 3 / 40, 5 / 112, 35 / 1152]
    assert np.allclose(losses.arcsin_coefficients(5), expected)
    x = torch.linspace(-0.95, 0.95, 21, dtype=torch.float64)
    assert torch.allclose(losses.arcsin_series(x, 400), torch.asin(x), atol=1e-9)


def test_arcface_w_tends_to_arcface_and_enlarges_theta_when_truncated():
    generator = torch.Generator().manual_seed(0)
    arcface = losses.MarginHead(16, 5, 'arcface', scale=32.0, margin=0.5)
    weights = arcface.weight.detach()
    embeddings = weights[[0, 1, 2, 3, 4, 0]] + 0.004 * torch.randn(6, 16, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    many = losses.MarginHead(16, 5, 'arcface_w', scale=32.0, margin=0.5, taylor_terms=400)
    few = losses.MarginHead(16, 5, 'arcface_w', scale=32.0, margin=0.5, taylor_terms=4)
    for head in (many, few):
        head.weight.data.copy_(weights)
    assert torch.allclose(many(embeddings, labels), arcface(embeddings, labels), atol=2e-3)
    cosine = torch.linspace(0.05, 1.0, 20, dtype=torch.float64)
    assert (few.angle(cosine) > arcface.angle(cosine)).all()
    assert few.angle(torch.tensor(1.0)) > 0.28  # pi/2 - 1.2863: a floor on theta
    cross_entropy = torch.nn.functional.cross_entropy
    assert (cross_entropy(few(embeddings, labels), labels)
            > cross_entropy(arcface(embeddings, labels), labels))


def test_distillation_and_triplet_losses():
    features = torch.randn(8, 32)
    assert losses.distillation_loss(features, 3 * features) < 1e-6
    assert math.isclose(float(losses.distillation_loss(features, -features)), 2.0, rel_tol=1e-5)
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0.0], [0.99, 0.1], [-1.0, 0.0], [-0.99, 0.1]])
    assert losses.batch_hard_triplet_loss(apart, labels) == 0
    assert losses.batch_hard_triplet_loss(apart, torch.tensor([0, 1, 0, 1])) > 1


def test_combined_loss_uses_labels_only_where_given():
    config = losses.LossConfig(margin_weight=0.5, triplet_weight=0.5, distill_weight=1.0)
    criterion = losses.CombinedLoss(config, 8, 3)
    embeddings, teacher = torch.randn(4, 8), torch.randn(4, 8)
    total, parts = criterion(embeddings, torch.tensor([-1, -1, -1, -1]), teacher)
    assert set(parts) == {'distill'}
    assert math.isclose(total.item(), parts['distill'], rel_tol=1e-6)
    total, parts = criterion(embeddings, torch.tensor([0, 0, 2, -1]), teacher)
    assert set(parts) == {'margin', 'triplet', 'distill'}
    weighted = 0.5 * parts['margin'] + 0.5 * parts['triplet'] + parts['distill']
    assert math.isclose(total.item(), weighted, rel_tol=1e-5)


@pytest.fixture(scope='module')
def face_folders(tmp_path_factory):
    """Write 3 identities x 2 JPEGs and a flat folder with a PNG face and its mirror."""
    root = tmp_path_factory.mktemp('faces')
    with cbook.get_sample_data('grace_hopper.jpg') as stream:
        photo = cv2.imdecode(np.frombuffer(stream.read(), np.uint8), cv2.IMREAD_COLOR)
    for person in range(3):
        for shot in range(2):
            folder = root / 'people' / f'id{person}'
            folder.mkdir(parents=True, exist_ok=True)
            face = cv2.resize(photo[40 * person + 10 * shot:][:400, 60:460], (128, 128))
            cv2.circle(face, (64, 30 + 30 * person), 12, (0, 0, 255 - 80 * shot), -1)
            assert cv2.imwrite(str(folder / f'{shot}.jpg'), face)
    (root / 'loose').mkdir()
    assert cv2.imwrite(str(root / 'loose' / 'big.jpg'), photo)  # 600x512: gets resized
    face = cv2.resize(photo[50:450, 100:500], (128, 128))
    assert cv2.imwrite(str(root / 'loose' / 'face.png'), face)
    assert cv2.imwrite(str(root / 'loose' / 'mirror.png'), face[:, ::-1])
    return root


@pytest.fixture(scope='module')
def face_pack(face_folders):
    """Pack the tiny folders and cache a random 32-d teacher's targets; return the prefix."""
    prefix = face_folders / 'pack'
    assert data.pack_faces([face_folders / 'people', face_folders / 'loose'], prefix) == 9
    teacher = random_init_model(face_folders / 'teacher.onnx', backbones.BackboneConfig(
        width_mult=0.25, embedding_size=32))
    data.teacher_targets(prefix, teacher, f'{prefix}.teacher.npy', (127.5,) * 3, (127.5,) * 3)
    return prefix


def test_pack_faces_labels_resizes_and_stores_rgb(face_folders, face_pack):
    pack = data.load_pack(face_pack)
    assert pack.images.shape == (9, 128, 128, 3) and pack.images.dtype == np.uint8
    assert pack.identities == ('people/id0', 'people/id1', 'people/id2')
    assert list(pack.labels) == [0, 0, 1, 1, 2, 2, -1, -1, -1]
    big = cv2.imread(str(face_folders / 'loose' / 'big.jpg'))
    expected = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    assert np.array_equal(pack.images[pack.files.index(str(face_folders / 'loose' /
                                                           'big.jpg'))], expected)


def test_teacher_targets_are_unit_flip_sums(face_folders, face_pack):
    pack = data.load_pack(face_pack)
    targets = np.load(f'{face_pack}.teacher.npy')
    assert targets.shape == (9, 32)
    assert np.allclose(np.linalg.norm(targets, axis=1), 1, atol=1e-5)
    face = pack.files.index(str(face_folders / 'loose' / 'face.png'))
    mirror = pack.files.index(str(face_folders / 'loose' / 'mirror.png'))
    assert np.allclose(targets[face], targets[mirror], atol=1e-5)
    assert not np.allclose(targets[0], targets[2], atol=1e-2)


def test_augmenter_output_shape_range_and_reproducibility(face_pack):
    images = torch.from_numpy(np.array(data.load_pack(face_pack).images))
    config = data.AugmentConfig(mask=1.0, low_light=0.5, blur=0.5, color=1.0)
    first = data.Augmenter(config, seed=3)(images)
    assert first.shape == (9, 3, 112, 112)
    assert first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, data.Augmenter(config, seed=3)(images))
    plain = data.Augmenter(data.AugmentConfig(
        max_shift=0, flip=0, color=0, low_light=0, blur=0, mask=0))(images)
    assert torch.equal(plain, data.to_network_input(data.centre_crop(images)))


def test_smeared_top_copies_one_row_upwards_and_leaves_the_rest(face_pack):
    images = torch.from_numpy(np.array(data.load_pack(face_pack).images))
    still = {'max_shift': 0, 'flip': 0, 'color': 0, 'low_light': 0, 'blur': 0, 'mask': 0}
    plain = data.Augmenter(data.AugmentConfig(**still))(images)
    smeared = data.Augmenter(data.AugmentConfig(smear_top=1.0, **still), seed=1)(images)
    depths = []
    for before, after in zip(plain, smeared):
        changed = (before != after).any(dim=(0, 2)).nonzero().ravel()
        depth = int(changed.max()) + 1
        assert torch.equal(after[:, :depth], after[:, depth:depth + 1].expand_as(after[:, :depth]))
        assert torch.equal(after[:, depth:], before[:, depth:])
        depths.append(depth)
    # Canvas rows 24-40 are crop rows 16-32 when the crop is centred.
    assert all(16 <= depth <= 32 for depth in depths) and len(set(depths)) > 1


def test_a_turn_without_roll_yaw_or_zoom_changes_nothing_and_a_turn_does(face_pack):
    images = torch.from_numpy(np.array(data.load_pack(face_pack).images))
    still = {'max_shift': 0, 'flip': 0, 'color': 0, 'low_light': 0, 'blur': 0, 'mask': 0}
    plain = data.Augmenter(data.AugmentConfig(**still))(images)
    level = data.Augmenter(data.AugmentConfig(turn=1.0, max_roll=0, max_yaw=0, max_zoom=0,
                                              **still))(images)
    assert torch.allclose(level, plain, atol=1e-4)
    turned = data.Augmenter(data.AugmentConfig(turn=1.0, **still), seed=2)(images)
    assert (turned - plain).abs().mean(dim=(1, 2, 3)).min() > 0.01
    yawed = data.Augmenter(data.AugmentConfig(turn=1.0, max_roll=0, max_zoom=0,
                                              **still), seed=2)(images)
    # A yaw keeps the vertical centre line (its pixels move by a fifth of a pixel at most)
    # and squeezes the sides: their columns move.
    assert (yawed[..., 55:57] - plain[..., 55:57]).abs().mean() < 0.01
    assert (yawed[..., :20] - plain[..., :20]).abs().mean(dim=(1, 2, 3)).min() > 0.01


def test_mixed_views_hold_both_faces_and_say_which_were_mixed(face_pack):
    images = torch.from_numpy(np.array(data.load_pack(face_pack).images))
    still = {'max_shift': 0, 'flip': 0, 'color': 0, 'low_light': 0, 'blur': 0, 'mask': 0}
    plain = data.Augmenter(data.AugmentConfig(**still))(images)
    inputs, mixed = data.Augmenter(data.AugmentConfig(mix=1.0, cutmix=1.0, **still),
                                   seed=5).views(images)
    assert mixed.all()
    for face, own in zip(inputs, plain):
        same = (face - own).abs().amax(0) < 1e-5
        pasted = ~same
        # A cutmix pastes one rectangle of another face of the batch and keeps the rest.
        rows, columns = pasted.any(1).nonzero().ravel(), pasted.any(0).nonzero().ravel()
        assert 0 < pasted.sum() < same.numel()
        assert pasted[rows.min():rows.max() + 1, columns.min():columns.max() + 1].float(
            ).mean() > 0.9
        assert any(torch.allclose(face[:, pasted], other[:, pasted], atol=1e-5)
                   for other in plain if other is not own)
    blended, mixed = data.Augmenter(data.AugmentConfig(mix=1.0, cutmix=0.0, **still),
                                    seed=5).views(images)
    assert mixed.all() and not any(torch.allclose(face, own, atol=1e-3)
                                   for face, own in zip(blended, plain))
    _, mixed = data.Augmenter(data.AugmentConfig(**still)).views(images)
    assert not mixed.any()


def test_clean_views_move_like_the_views_without_their_mask_and_light(face_pack):
    images = torch.from_numpy(np.array(data.load_pack(face_pack).images))
    busy = data.AugmentConfig(mask=1.0, low_light=1.0, blur=1.0, color=1.0, flip=0.5,
                              turn=1.0, mix=0.5)
    inputs, mixed, clean = data.Augmenter(busy, seed=3).views(images, clean=True)
    alone, alone_mixed = data.Augmenter(busy, seed=3).views(images)
    assert torch.equal(inputs, alone) and torch.equal(mixed, alone_mixed)
    # Masked only, nothing else drawn after the crop: clean is the view without its mask.
    still = {'flip': 0, 'color': 0, 'low_light': 0, 'blur': 0}
    masked, _, bare = data.Augmenter(data.AugmentConfig(mask=1.0, **still), seed=4).views(
        images, clean=True)
    unmasked, _ = data.Augmenter(data.AugmentConfig(mask=0.0, **still), seed=4).views(images)
    assert torch.equal(bare, unmasked)
    assert torch.allclose(masked[..., :40, :], bare[..., :40, :])  # above the nose
    assert (masked[..., 80:, :] - bare[..., 80:, :]).abs().mean(dim=(1, 2, 3)).min() > 0.1
    # Flipped and turned, both move alike: the clean view's upper half stays the view's.
    turned, _, bare = data.Augmenter(data.AugmentConfig(
        mask=1.0, turn=1.0, max_roll=0, **{**still, 'flip': 1.0}), seed=4).views(
        images, clean=True)
    assert (turned[..., 10:30, :] - bare[..., 10:30, :]).abs().mean() < 0.02
    assert not torch.allclose(turned[..., 10:30, :], unmasked[..., 10:30, :], atol=0.05)


def test_mixing_faces_needs_exact_view_targets():
    with pytest.raises(ConfigError, match='exact_view'):
        load_recipe(SMOKE_RECIPE, ['augment.mix=0.2'])
    assert load_recipe(SMOKE_RECIPE, ['augment.mix=0.2', 'loss.targets=exact_view'])


TEACHER_WEIGHTS = (Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'models'
                   / 'teacher_mobilefacenet' / 'mobilefacenet.pt')


@pytest.mark.skipif(not TEACHER_WEIGHTS.exists(), reason='needs ../shared/data teacher weights')
def test_exact_view_targets_are_the_teachers_embedding_of_each_view(face_pack, tmp_path):
    recipe = load_recipe(SMOKE_RECIPE, [
        f'data.pack={face_pack}', f'data.teacher_weights={TEACHER_WEIGHTS}',
        'loss.targets=exact_view', 'loss.margin_weight=0', 'loss.triplet_weight=0',
        'model.embedding_size=128', 'augment.mix=0.5', 'augment.turn=0.5', 'train.epochs=1'])
    trainer = Trainer(recipe, tmp_path / 'run')
    teacher = trainer.teacher
    views, _ = data.Augmenter(recipe.augment, seed=1).views(
        torch.from_numpy(np.array(data.load_pack(face_pack).images)))
    exact, rounded = teacher(views, bfloat16=False), teacher(views, bfloat16=True)
    assert torch.allclose(exact.norm(dim=1), torch.ones(len(exact)), atol=1e-5)
    # bfloat16 autocast moves a target by far less than the student's distance to it.
    assert torch.nn.functional.cosine_similarity(exact, rounded).min() > 0.99
    centre = data.network_faces(np.array(data.load_pack(face_pack).images))
    assert torch.nn.functional.cosine_similarity(exact, teacher(centre, bfloat16=False)).min(
        ) < 0.99  # the views' targets are not the centre crop's
    val = trainer.plan.val
    assert torch.allclose(trainer.val_targets, teacher(
        centre[val], flip_sum=True, bfloat16=False), atol=1e-5)
    trainer.run()
    with open(tmp_path / 'run' / 'train_log.csv', encoding='utf-8') as stream:
        assert all(float(row['distill']) > 0 for row in csv.DictReader(stream))


def _smoke_recipe(face_pack, **train):
    overrides = [f'data.pack={face_pack}', 'train.warmup_steps=5']
    overrides += [f'train.{key}={value}' for key, value in train.items()]
    return load_recipe(SMOKE_RECIPE, overrides)


def test_smoke_training_resumes_exactly_and_exports(face_pack, tmp_path):
    resumed, straight = tmp_path / 'resumed', tmp_path / 'straight'
    Trainer(_smoke_recipe(face_pack, epochs=1), resumed).run()
    assert torch.load(resumed / 'checkpoint.pt', weights_only=True)['epoch'] == 1
    trainer = Trainer(_smoke_recipe(face_pack, epochs=2), resumed)
    trainer.run(resume=True)
    onnx_path = trainer.export()
    Trainer(_smoke_recipe(face_pack, epochs=2), straight).run()
    with pytest.raises(Exception, match='--resume'):
        Trainer(_smoke_recipe(face_pack, epochs=2), straight).run()

    final = torch.load(resumed / 'checkpoint.pt', weights_only=True)
    reference = torch.load(straight / 'checkpoint.pt', weights_only=True)
    assert final['step'] == reference['step'] == 2
    for name, value in reference['model'].items():
        assert torch.allclose(final['model'][name].float(), value.float(), atol=1e-6), name
    with open(resumed / 'train_log.csv', encoding='utf-8') as stream:
        assert [row['step'] for row in csv.DictReader(stream)] == ['1', '2']
    assert (resumed / 'learning_curve.png').stat().st_size > 0

    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    metadata = ModelMetadata.from_json(
        session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert (metadata.name, metadata.embedding_size, metadata.input_size) == (
        'smoke', 32, (112, 112))
    model = backbones.Backbone(backbones.BackboneConfig.from_dict(final['backbone']))
    model.load_state_dict(final['model'])
    faces = data.centre_crop(np.array(data.load_pack(face_pack).images))
    inputs = data.to_network_input(torch.from_numpy(faces))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.eval()(inputs)).numpy()
    actual = session.run(None, {'input': inputs.numpy()})[0]
    assert np.abs(actual - expected).max() < 1e-4


def test_a_long_run_exports_a_model_file_on_the_way(face_pack, tmp_path):
    Trainer(_smoke_recipe(face_pack, epochs=2, export_minutes=0), tmp_path).run()
    session = onnxruntime.InferenceSession(str(tmp_path / 'face_embedder.onnx'),
                                           providers=['CPUExecutionProvider'])
    metadata = ModelMetadata.from_json(
        session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert metadata.extra['steps'] == 2  # written after the last checkpoint, by run() itself


def test_a_run_can_start_from_a_checkpoint_pruned_into_a_smaller_net(face_pack, tmp_path):
    Trainer(_smoke_recipe(face_pack, epochs=1), tmp_path / 'full').run()
    recipe = load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}', 'train.epochs=1',
                                        f'train.init_from={tmp_path / "full" / "checkpoint.pt"}',
                                        'model.expansion_keep=0.5'])
    trainer = Trainer(recipe, tmp_path / 'pruned')
    full = torch.load(tmp_path / 'full' / 'checkpoint.pt', weights_only=True)['model']
    head = 'head.linear.weight'
    assert torch.equal(trainer.model.state_dict()[head], full[head])  # started from it
    trainer.run()
    session = onnxruntime.InferenceSession(str(trainer.export()),
                                           providers=['CPUExecutionProvider'])
    assert session.run(None, {'input': np.zeros((1, 3, 112, 112), np.float32)})[0].shape == (
        1, 32)
    # The exported model counts the steps of both runs.
    first_steps = torch.load(tmp_path / 'full' / 'checkpoint.pt', weights_only=True)['step']
    stored = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    assert ModelMetadata.from_json(stored).extra['steps'] == first_steps + trainer.step
    missing = load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}',
                                         f'train.init_from={tmp_path / "none.pt"}'])
    with pytest.raises(ConfigError, match='does not exist'):
        Trainer(missing, tmp_path / 'missing')


@pytest.mark.parametrize('switches', [[], ['model.activation=relu6', 'model.eca=true'],
                                      ['model.expansion_keep=0.5']])
def test_a_run_can_start_from_an_exported_onnx_file(face_pack, tmp_path, switches):
    first = Trainer(load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}', 'train.epochs=1']
                                + switches), tmp_path / 'first')
    first.run()
    onnx_path = first.export()
    recipe = load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}', 'train.epochs=1',
                                        f'train.init_from={onnx_path}'] + switches)
    trainer = Trainer(recipe, tmp_path / 'second')
    # The rebuilt net computes what the file computes, so the run continues that model.
    faces = data.centre_crop(np.array(data.load_pack(face_pack).images))
    inputs = data.to_network_input(torch.from_numpy(faces))
    with torch.no_grad():
        rebuilt = torch.nn.functional.normalize(trainer.model.eval()(inputs)).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    assert np.abs(session.run(None, {'input': inputs.numpy()})[0] - rebuilt).max() < 1e-4
    assert trainer.steps_before == first.step
    trainer.run()
    assert np.isfinite(trainer.validate())
    # Resumed, the checkpoint says which steps came before, whatever init_from names now.
    resumed = Trainer(load_recipe(SMOKE_RECIPE, [
        f'data.pack={face_pack}', 'train.epochs=2', f'train.init_from={trainer.export()}']
        + switches), tmp_path / 'second')
    resumed.run(resume=True)
    assert resumed.steps_before == first.step


def test_epoch_log_watches_how_alike_different_held_out_people_look(face_pack, tmp_path):
    recipe = load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}', 'train.epochs=1',
                                        'data.val_fraction=0.5'])
    trainer = Trainer(recipe, tmp_path / 'run')
    trainer.run()
    with open(tmp_path / 'run' / 'epoch_log.csv', encoding='utf-8') as stream:
        logged = float(next(csv.DictReader(stream))['val_impostor_cosine'])
    # The same number from the exported file, through onnxruntime.
    held_out = trainer.plan.val[trainer.pack.labels[trainer.plan.val] >= 0]
    labels = trainer.pack.labels[held_out]
    faces = data.centre_crop(np.array(trainer.pack.images[held_out]))
    session = onnxruntime.InferenceSession(str(trainer.export()),
                                           providers=['CPUExecutionProvider'])
    embeddings = session.run(None, {'input': data.to_network_input(
        torch.from_numpy(faces)).numpy()})[0]
    different = labels[:, None] != labels[None]
    assert different.any()
    assert logged == pytest.approx((embeddings @ embeddings.T)[different].mean(), abs=1e-4)


def test_only_our_own_exports_can_start_a_run(face_pack, tmp_path, tiny_model):
    recipe = load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}',
                                        f'train.init_from={tiny_model}'])
    with pytest.raises(ModelError, match='backbone table'):
        Trainer(recipe, tmp_path / 'run')


def tiny_lfw(folder, portrait):
    """Write an LFW-style folder: two people, two photos each, two folds of two pairs."""
    people = {'Ada_Lovelace': portrait, 'Grace_Hopper': cv2.flip(portrait, 1)[:, :, ::-1]}
    for name, photo in people.items():
        (folder / 'images' / name).mkdir(parents=True)
        for index, shift in ((1, 0), (2, 12)):
            image = cv2.resize(photo[shift:shift + 500, 50:550], (250, 250))
            assert cv2.imwrite(str(folder / 'images' / name / f'{name}_{index:04d}.jpg'), image)
    pairs = ['2\t1', 'Ada_Lovelace\t1\t2', 'Ada_Lovelace\t1\tGrace_Hopper\t1',
             'Grace_Hopper\t1\t2', 'Ada_Lovelace\t2\tGrace_Hopper\t2']
    (folder / 'pairs.txt').write_text('\n'.join(pairs) + '\n')
    return folder


def test_a_budget_that_ends_mid_epoch_still_measures_and_exports_its_last_model_once(
        face_pack, tmp_path):
    trainer = Trainer(_smoke_recipe(face_pack, batch_size=2, labelled_fraction=0.0,
                                    max_steps=2), tmp_path / 'run')
    assert trainer.plan.steps_per_epoch == 3
    trainer.run()
    with open(tmp_path / 'run' / 'epoch_log.csv', encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    assert [(row['epoch'], row['step']) for row in rows] == [('0.6667', '2')]
    assert rows[0]['val_teacher_cosine']
    trainer.export()
    trainer.export()
    with open(tmp_path / 'run' / 'exports.csv', encoding='utf-8') as stream:
        assert [row['steps'] for row in csv.DictReader(stream)] == ['2']


def test_every_export_is_kept_and_scored_once_on_the_learning_curve(
        face_pack, tmp_path, portrait):
    from face_id_ros.training import curve
    run = tmp_path / 'run'
    trainer = Trainer(_smoke_recipe(face_pack, epochs=1), run)
    trainer.run()
    trainer.export()
    with open(run / 'exports.csv', encoding='utf-8') as stream:
        exports = list(csv.DictReader(stream))
    assert [row['steps'] for row in exports] == ['1']
    assert float(exports[0]['run_hours']) > 0 and exports[0]['val_teacher_cosine']
    assert (run / exports[0]['model']).read_bytes() == (run / 'face_embedder.onnx').read_bytes()
    lfw, points = tiny_lfw(tmp_path / 'lfw', portrait), tmp_path / 'curve' / 'curve.csv'
    arguments = ['--run', str(run), '--curve', str(points), '--lfw', str(lfw),
                 '--crops', str(tmp_path / 'crops.npy'), '--hours-before', '2']
    curve.main(arguments)
    curve.main(arguments)  # nothing new to score: no second row
    with open(points, encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 and rows[0]['label'] == 'run' and rows[0]['steps'] == '1'
    assert float(rows[0]['hours']) == pytest.approx(2 + float(exports[0]['run_hours']),
                                                    abs=1e-3)
    assert 0 <= float(rows[0]['lfw_accuracy']) <= 1
    assert cv2.imread(str(points.with_suffix('.png'))) is not None


def test_ablation_trains_each_row_once_and_scores_all_on_lfw(face_pack, tmp_path, portrait):
    reference = random_init_model(tmp_path / 'reference.onnx', backbones.BackboneConfig(
        width_mult=0.25, embedding_size=32))
    plan_path = tmp_path / 'plan.yaml'
    plan_path.write_text(yaml.safe_dump({
        'base': str(SMOKE_RECIPE), 'lfw': str(tiny_lfw(tmp_path / 'lfw', portrait)),
        'out': str(tmp_path / 'runs'), 'results': str(tmp_path / 'results'),
        'common': [f'data.pack={face_pack}', 'train.max_steps=2', 'train.warmup_steps=1'],
        'rows': [{'name': 'base', 'label': 'smoke recipe'},
                 {'name': 'wide', 'label': '64-d', 'set': ['model.embedding_size=64']},
                 {'name': 'ref', 'label': 'random model', 'onnx': str(reference),
                  'mmacs': 1.5}]}))
    plan = ablation.AblationPlan.from_yaml(plan_path)
    table = ablation.run_plan(plan, plan_path)
    assert [row['row'] for row in table] == ['base', 'wide', 'ref']
    assert [row.get('steps') for row in table] == [2, 2, None]
    assert table[1]['val_teacher_cosine'] is not None  # distilled through the projection
    assert table[0]['mmacs'] < table[1]['mmacs'] and table[2]['mmacs'] == 1.5
    assert all(0.0 <= row['lfw_accuracy'] <= 1.0 for row in table)
    for name in ('ablation.csv', 'ABLATION.md', 'ablation.png'):
        assert (tmp_path / 'results' / name).stat().st_size > 0
    with open(tmp_path / 'results' / 'ablation.csv', encoding='utf-8') as stream:
        assert [row['row'] for row in csv.DictReader(stream)] == ['base', 'wide', 'ref']
    trained = (tmp_path / 'runs' / 'base' / 'face_embedder.onnx').stat().st_mtime
    ablation.run_plan(plan, plan_path)  # a second run reuses the trained models
    assert (tmp_path / 'runs' / 'base' / 'face_embedder.onnx').stat().st_mtime == trained


@pytest.mark.parametrize('rows, message', [
    ([], 'uniquely named'),
    ([{'name': 'a', 'label': 'x'}, {'name': 'a', 'label': 'y'}], 'uniquely named'),
    ([{'name': 'a'}], 'needs name and label'),
    ([{'name': 'a', 'label': 'x', 'sets': []}], 'unknown key'),
    ([{'name': 'a', 'label': 'x', 'set': [], 'onnx': 'm.onnx'}], 'set .* or onnx'),
])
def test_ablation_plan_errors_name_the_problem(tmp_path, rows, message):
    plan_path = tmp_path / 'plan.yaml'
    plan_path.write_text(yaml.safe_dump({'rows': rows}))
    with pytest.raises(ConfigError, match=message):
        ablation.AblationPlan.from_yaml(plan_path)


def test_held_out_faces_are_the_ones_training_never_sees(face_pack, tmp_path):
    recipe = _smoke_recipe(face_pack)
    labels = data.load_pack(face_pack).labels
    held_out = data.held_out_indices(len(labels), recipe.train.seed, recipe.data.val_fraction)
    trainer = Trainer(recipe, tmp_path / 'run')
    assert list(held_out) == list(trainer.plan.val) and len(held_out) == 2
    seen = {int(index) for batch in trainer.plan.epoch(0) for index in batch}
    assert not seen & set(held_out.tolist())
    counts = data.export_held_out(face_pack, held_out, tmp_path / 'held_out')
    assert counts['labelled'] == int((labels[held_out] >= 0).sum())
    assert counts['labelled'] + counts['unlabelled'] == 2
    written = sorted((tmp_path / 'held_out').rglob('*.png'))
    assert len(written) == 2 and cv2.imread(str(written[0])).shape == (128, 128, 3)
    identities = {path.parent.name for path in written if 'unlabelled' not in path.parts}
    assert identities == {pack_identity.replace('/', '_') for pack_identity in
                          (data.load_pack(face_pack).identities[label]
                           for label in labels[held_out] if label >= 0)}


def test_a_recipe_inherits_its_base_and_replaces_only_the_keys_it_lists(tmp_path):
    child = tmp_path / 'child.yaml'
    child.write_text(f'base: {SMOKE_RECIPE}\ntrain:\n  lr: 0.0123\nexport:\n  version: 9.9.9\n')
    base, recipe = load_recipe(SMOKE_RECIPE), load_recipe(child, ['train.seed=7'])
    assert (recipe.train.lr, recipe.train.seed, recipe.export.version) == (0.0123, 7, '9.9.9')
    assert recipe.train.batch_size == base.train.batch_size
    assert recipe.model == base.model and recipe.loss == base.loss
    assert recipe.export.name == base.export.name


def test_base_recipes_that_form_a_loop_are_refused(tmp_path):
    first, second = tmp_path / 'first.yaml', tmp_path / 'second.yaml'
    first.write_text(f'base: {second}\n')
    second.write_text(f'base: {first}\n')
    with pytest.raises(ConfigError, match='loop'):
        load_recipe(first)


def test_held_out_export_follows_the_recipe_and_its_base(face_pack, tmp_path):
    child = tmp_path / 'child.yaml'
    child.write_text(f'base: {SMOKE_RECIPE}\ndata:\n  pack: {face_pack}\n  val_fraction: 0.5\n'
                     'train:\n  seed: 3\n')
    prepare.main(['--recipe', str(child), '--export-held-out', str(tmp_path / 'held_out')])
    expected = data.held_out_indices(9, seed=3, fraction=0.5)
    written = sorted(int(path.stem) for path in (tmp_path / 'held_out').rglob('*.png'))
    assert written == list(expected) and len(written) == 4


def test_a_cut_from_a_recipe_starts_a_run_and_exports(face_pack, tmp_path):
    from face_id_ros.training import cut
    from face_id_ros.training.export import export_checkpoint
    full = {'model.arch': 'mobilefacenet', 'model.activation': 'relu6', 'model.input_size': 64,
            'model.width_mult': 1.0, 'model.embedding_size': 32}
    source = backbones.Backbone(load_recipe(SMOKE_RECIPE, [
        f'{key}={value}' for key, value in full.items()]).model)
    backbones.recalibrate_batch_norms(source, torch.rand(16, 3, 64, 64) * 2 - 1)
    torch.save({'backbone': dataclasses.asdict(source.config), 'model': source.state_dict()},
               tmp_path / 'source.pt')
    pruned = [f'{key}={value}' for key, value in full.items()] + [
        f'data.pack={face_pack}', 'model.depth=[2, 1, 2, 1, 1]',
        'model.channels=[16, 16, 16, 32, 32, 48, 48, 128]',
        'model.expanded=[32, 24, 48, 48, 48, 96, 96]']
    report = cut.cut_from_recipe(load_recipe(SMOKE_RECIPE, pruned), tmp_path / 'source.pt',
                                 tmp_path / 'cut.pt', faces=4)
    assert report['macs'] < 0.3 * report['source_macs']
    assert report['recalibrated_cosine'] == pytest.approx(report['cut_cosine'], abs=1e-4)
    metadata, difference = export_checkpoint(tmp_path / 'cut.pt', tmp_path / 'cut.onnx')
    assert metadata.extra['depth'] == [2, 1, 2, 1, 1] and difference < 1e-4
    trainer = Trainer(load_recipe(SMOKE_RECIPE, pruned + [
        'train.epochs=1', f'train.init_from={tmp_path / "cut.pt"}']), tmp_path / 'run')
    assert torch.equal(trainer.model.head.linear.weight, torch.load(
        tmp_path / 'cut.pt', weights_only=True)['model']['head.linear.weight'])
    trainer.run()


def test_a_mask_head_is_added_without_changing_the_embeddings(face_folders, face_pack,
                                                              tmp_path):
    from face_id_ros.core.embedding import OnnxEmbedder
    from face_id_ros.evaluation.synthetic_masks import paint_masks_on_crops
    from face_id_ros.training import mask_head
    trainer = Trainer(_smoke_recipe(face_pack, epochs=1), tmp_path / 'run')
    trainer.run()
    base = trainer.export()
    before = OnnxEmbedder(base)
    masked = tmp_path / 'masked'
    masked.mkdir()
    people = sorted((face_folders / 'people').glob('*/*.jpg'))
    canvases = np.stack([cv2.imread(str(path)) for path in people])
    template = np.asarray(ARCFACE_TEMPLATE_112) + 8  # the 128 px canvas's margin
    for index, face in enumerate(paint_masks_on_crops(canvases, np.random.default_rng(0),
                                                      template)):
        assert cv2.imwrite(str(masked / f'{index}.jpg'), face)
    config = mask_head.MaskHeadConfig(
        checkpoint=str(tmp_path / 'run' / 'checkpoint.pt'), masked=(str(masked),),
        unmasked=(str(face_folders / 'people'),), held_out=0.5, out=str(base),
        report=str(tmp_path / 'report'), version='9.9.9')
    report = mask_head.build(config)

    after = OnnxEmbedder(base)
    assert after.has_mask_output and after.metadata.mask_output == 'mask_probability'
    assert after.metadata.version == '9.9.9'
    assert after.metadata.cosine_threshold == before.metadata.cosine_threshold
    crops = data.centre_crop(canvases)
    embeddings, chances = after.embed_and_mask(crops)
    assert np.abs(embeddings - before.embed(crops)).max() < 1e-5
    assert ((chances >= 0) & (chances <= 1)).all()
    assert sum(item['photos'] for item in report['sets'].values()) == report['photos'] > 0
    assert (tmp_path / 'report' / 'report.json').is_file()
    assert (tmp_path / 'report' / 'roc.png').stat().st_size > 0

    checkpoint = torch.load(config.checkpoint, weights_only=True)
    weight = checkpoint['model']['head.linear.weight']  # another model: other embeddings
    checkpoint['model']['head.linear.weight'] = weight + torch.randn_like(weight) * weight.std()
    torch.save(checkpoint, tmp_path / 'other.pt')
    with pytest.raises(ModelError, match='does not embed as'):
        mask_head.build(dataclasses.replace(config, checkpoint=str(tmp_path / 'other.pt')))


@pytest.mark.skipif(not TEACHER_WEIGHTS.exists(), reason='needs ../shared/data teacher weights')
def test_feature_matching_pulls_each_row_towards_the_teachers_kept_channels(face_pack, tmp_path):
    from face_id_ros.training import cut
    recipe = [f'data.pack={face_pack}', f'data.teacher_weights={TEACHER_WEIGHTS}',
              'model.arch=mobilefacenet', 'model.activation=relu6', 'model.embedding_size=128',
              'model.width_mult=1.0', 'model.depth=[1, 1, 1, 1, 1]',
              'model.channels=[16, 16, 16, 32, 32, 48, 48, 128]',
              'model.expanded=[32, 64, 64, 96, 96]', 'loss.targets=exact_view',
              'loss.margin_weight=0', 'loss.triplet_weight=0', 'loss.feature_weight=1.0',
              'train.epochs=1', 'train.warmup_steps=1']
    cut.cut_from_recipe(load_recipe(SMOKE_RECIPE, recipe), TEACHER_WEIGHTS, tmp_path / 'cut.pt',
                        faces=4)
    trainer = Trainer(load_recipe(SMOKE_RECIPE, recipe + [
        f'train.init_from={tmp_path / "cut.pt"}']), tmp_path / 'run')
    faces = data.network_faces(np.array(data.load_pack(face_pack).images))

    with torch.no_grad():
        trainer.teacher(faces)
        trainer.model.eval()(faces)
    recorded = float(losses.feature_map_loss(trainer._feature_pairs()))
    kept = trainer.channel_index
    generator = torch.Generator().manual_seed(0)
    trainer.channel_index = [torch.randperm(theirs.shape[1], generator=generator)[:len(index)]
                             for theirs, index in zip(trainer.feature_rows[1].maps, kept)]
    others = float(losses.feature_map_loss(trainer._feature_pairs()))
    assert recorded < 0.5 * others  # each row carries what the teacher's recorded channels do
    trainer.channel_index = kept
    trainer.run()
    with open(tmp_path / 'run' / 'train_log.csv', encoding='utf-8') as stream:
        assert all(float(row['feature']) > 0 for row in csv.DictReader(stream))
    assert torch.load(tmp_path / 'run' / 'checkpoint.pt', weights_only=True)[
        'teacher_channels'] == torch.load(tmp_path / 'cut.pt', weights_only=True)[
        'teacher_channels']
    from face_id_ros.training.export import export_checkpoint
    export_checkpoint(tmp_path / 'cut.pt', tmp_path / 'cut.onnx')
    with pytest.raises(ConfigError, match="teacher's channels"):
        Trainer(load_recipe(SMOKE_RECIPE, recipe + [
            f'train.init_from={tmp_path / "cut.onnx"}']), tmp_path / 'from_onnx')


def test_imprinted_class_weights_start_where_each_persons_faces_lie(face_pack, tmp_path):
    trainer = Trainer(load_recipe(SMOKE_RECIPE, [
        f'data.pack={face_pack}', 'loss.margin_init=imprint']), tmp_path / 'run')
    faces = np.sort(np.concatenate(trainer.plan.identities))
    labels = torch.from_numpy(trainer.pack.labels[faces])
    head = trainer.criterion.margin_head
    assert len(labels.unique()) > 1
    with torch.no_grad():
        assert torch.allclose(head.weight[labels].norm(dim=1), torch.ones(len(labels)))
        assert torch.equal(head.cosine(trainer._embed(faces)).argmax(1), labels)
        random = Trainer(load_recipe(SMOKE_RECIPE, [f'data.pack={face_pack}']),
                         tmp_path / 'random').criterion.margin_head.weight
        assert random[labels].norm(dim=1).max() < 0.5  # random rows are short, not unit


def test_freed_activations_stay_in_the_heap_instead_of_faulting_in_again():
    import subprocess
    import sys
    script = '\n'.join([
        'import resource, sys, torch',
        'from face_id_ros.training.train import keep_freed_memory',
        'if sys.argv[1] == "keep":',
        '    assert keep_freed_memory()',
        'torch.ones(1 << 24).sum()',
        'for _ in range(10):',
        '    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt',
        '    torch.ones(1 << 24).sum()  # 64 MB, as a batch of activations',
        '    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)'])
    faults = {mode: [int(line) for line in subprocess.run(
        [sys.executable, '-c', script, mode], check=True, capture_output=True,
        text=True).stdout.split()] for mode in ('keep', 'default')}
    # Without it, every 64 MB buffer is mapped and zeroed afresh: 16,384 pages each time.
    assert min(faults['default']) > 15000
    # With it, a freed buffer is taken again untouched. (Under load a few steps have been
    # seen to fault all the same, so not every one is asked to.)
    assert sum(count < 100 for count in faults['keep']) >= 3
