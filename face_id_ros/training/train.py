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
Train a face embedder from a YAML recipe, with checkpoints, resume, logs and export.

``python -m face_id_ros.training.train --recipe config/training/X.yaml [--out runs/X]
[--resume] [--set train.epochs=5 ...]``

A recipe has the sections ``model`` (BackboneConfig), ``loss`` (LossConfig), ``data``
(DataConfig), ``augment`` (AugmentConfig), ``train`` (TrainConfig) and ``export``
(ExportConfig). Each batch mixes labelled faces (``images_per_identity`` per identity, so
the margin and triplet losses have classes and positives) with unlabelled ones; the
distillation loss covers all of them. The output folder gets ``checkpoint.pt`` (every
epoch), ``train_log.csv`` (every step), ``epoch_log.csv``, ``learning_curve.png`` and, at
the end of the command (and every ``train.export_minutes`` on the way), ``face_embedder.onnx``,
of which every copy is kept in ``exports/`` and listed in ``exports.csv`` (steps, hours of
steps, held-out cosine) for the learning curve (``training/curve.py``).
"""

import argparse
import copy
import csv
import ctypes
from dataclasses import asdict
import math
import os
from pathlib import Path
import shutil
import time

from face_id_ros.core.errors import ConfigError, FaceIdError
from face_id_ros.training.backbones import Backbone, BackboneConfig, prune_into
from face_id_ros.training.cut import blocks_by_row, teacher_backbone, TEACHER_CONFIG
from face_id_ros.training.data import (
    Augmenter, CROP_SIZE, held_out_indices, load_pack, network_faces, resize_input)
from face_id_ros.training.export import backbone_from_onnx, build_metadata, export_onnx
from face_id_ros.training.losses import CombinedLoss
from face_id_ros.training.recipes import load_recipe
from matplotlib.figure import Figure
import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

LOG_COLUMNS = ('step', 'epoch', 'lr', 'loss', 'margin', 'triplet', 'distill', 'relation',
               'feature', 'seconds_per_batch')
EPOCH_COLUMNS = ('epoch', 'step', 'mean_loss', 'val_teacher_cosine', 'val_impostor_cosine',
                 'minutes')
EXPORT_COLUMNS = ('steps', 'run_hours', 'val_teacher_cosine', 'model')
PARITY_FACES = 32
# Faces whose feature statistics restore the batch norms of a model read from ONNX.
CALIBRATION_FACES = 512
# Held-out labelled faces whose pairs of different people are scored after each epoch.
IMPOSTOR_FACES = 1000
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt(3) parameters


def keep_freed_memory():
    """
    Keep freed buffers in the heap rather than giving them back to the system (glibc only).

    glibc maps every buffer above its threshold afresh and unmaps it when freed, so each
    step faulted in and zeroed its large activations again: about 80,000 page faults and a
    sixth of the step's CPU time in the kernel on the 46.7M net.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    largest = 2 ** 31 - 1  # mallopt takes a C int
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
                and libc.mallopt(M_TRIM_THRESHOLD, largest))


class BatchPlan:
    """Which faces go in which batch: one fixed order per (seed, epoch), so resume is exact."""

    def __init__(self, labels, config, seed, val_fraction):
        """Hold out ``val_fraction`` of the faces; index the rest by identity."""
        self.val = held_out_indices(len(labels), seed, val_fraction)
        self.train = train = np.setdiff1d(np.arange(len(labels)), self.val)
        self.unlabelled = train[labels[train] < 0]
        labelled = train[labels[train] >= 0]
        self.identities = [labelled[labels[labelled] == label]
                           for label in np.unique(labels[labelled])]
        self.config, self.seed = config, seed
        self.steps_per_epoch = max(1, len(train) // config.batch_size)
        labelled_share = round(config.batch_size * config.labelled_fraction)
        if not self.identities:
            labelled_share = 0
        elif not len(self.unlabelled):
            labelled_share = config.batch_size
        self.labelled_share = labelled_share

    def epoch(self, epoch):
        """Return the epoch's list of face-index arrays, one per batch."""
        rng = np.random.default_rng([self.seed, epoch])
        config = self.config
        unlabelled_share = config.batch_size - self.labelled_share
        stream = np.concatenate(
            [rng.permutation(self.unlabelled) for _ in range(math.ceil(
                self.steps_per_epoch * unlabelled_share / max(1, len(self.unlabelled))))]
            or [np.zeros(0, np.int64)])
        batches = []
        for step in range(self.steps_per_epoch):
            picked = [stream[step * unlabelled_share:(step + 1) * unlabelled_share]]
            remaining = self.labelled_share
            while remaining > 0:
                for identity in rng.permutation(len(self.identities)):
                    faces = self.identities[identity]
                    count = min(remaining, config.images_per_identity)
                    picked.append(rng.choice(faces, count, replace=len(faces) < count))
                    remaining -= count
                    if remaining == 0:
                        break
            batches.append(np.concatenate(picked))
        return batches


def learning_rate(config, step, total_steps):
    """Return the learning rate at ``step``: linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(config, parameters):
    """Return AdamW or Nesterov SGD; no weight decay on biases, norms and PReLU slopes."""
    parameters = [parameter for parameter in parameters if parameter.requires_grad]
    groups = [{'params': [p for p in parameters if p.ndim > 1],
               'weight_decay': config.weight_decay},
              {'params': [p for p in parameters if p.ndim <= 1], 'weight_decay': 0.0}]
    if config.optimizer == 'sgd':
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


class ExactViewTeacher:
    """
    The MobileFaceNet teacher run on the very views the student sees: exact-view targets.

    On the fly rather than cached: a run of a few thousand steps sees each face's views once
    (random crop, turn, mask, mix, colour), so a cache of views would be computed once and
    read once, and it would fix the views a run can draw.
    """

    def __init__(self, data_config, bfloat16, device):
        """Load the teacher's weights for our input normalisation, frozen, channels-last."""
        self.model = teacher_backbone(data_config.teacher_weights, data_config.teacher_mean,
                                      data_config.teacher_std).to(
            device, memory_format=torch.channels_last)
        self.model.requires_grad_(False)
        self.bfloat16, self.device = bfloat16, device
        self.embedding_size = TEACHER_CONFIG.embedding_size

    def __call__(self, inputs, flip_sum=False, bfloat16=None):
        """Return the unit teacher embeddings of 112 px network inputs (flip-summed if asked)."""
        enabled = self.bfloat16 if bfloat16 is None else bfloat16
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=enabled):
            embeddings = self.model(inputs).float()
            if flip_sum:
                embeddings = embeddings + self.model(inputs.flip(3)).float()
        return functional.normalize(embeddings, dim=1)


class RowOutputs:
    """Forward hooks that keep the output of each bottleneck row of a Backbone."""

    def __init__(self, model):
        """Register a hook on the last block of every row; ``maps`` keeps their outputs."""
        rows = blocks_by_row(model)[1]
        self.maps = [None] * len(rows)
        for index, row in enumerate(rows):
            row[-1].register_forward_hook(self._keeper(index))

    def _keeper(self, index):
        def keep(module, args, output):
            self.maps[index] = output
        return keep


class Trainer:
    """One training run: data, model, loss, optimiser, checkpoints and logs in ``out_dir``."""

    def __init__(self, recipe, out_dir):
        """Open the pack and teacher targets, build everything from ``recipe``."""
        self.recipe, self.out_dir = recipe, Path(out_dir)
        config = recipe.train
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        keep_freed_memory()
        self.device = torch.device('cuda' if config.device == 'cuda' or (
            config.device == 'auto' and torch.cuda.is_available()) else 'cpu')
        self.pack = load_pack(recipe.data.pack)
        self.plan = BatchPlan(self.pack.labels, config, config.seed, recipe.data.val_fraction)
        self.targets = self.teacher = self.val_targets = None
        if recipe.loss.distill_weight > 0 and recipe.loss.targets != 'centre_crop':
            self.teacher = ExactViewTeacher(recipe.data, config.teacher_bfloat16, self.device)
            # The held-out measure stays the cached one: flip-sum of the centre crop, float32.
            self.val_targets = torch.cat([self.teacher(
                network_faces(self.pack.images[self.plan.val[start:start + 256]]).to(
                    self.device), flip_sum=True, bfloat16=False)
                for start in range(0, len(self.plan.val), 256)])
        elif recipe.loss.distill_weight > 0:
            self.targets = _load_targets(recipe.data.teacher_targets, len(self.pack.labels))
            self.val_targets = torch.from_numpy(self.targets[self.plan.val]).to(self.device)
        # channels_last: 0.70 s instead of 0.96 s per step of 128 on the 2-core CPU (batch
        # norm and its backward, memory-bound, are 43% of a step).
        self.model = Backbone(recipe.model).to(self.device, memory_format=torch.channels_last)
        # Steps that made the starting weights, so the exported model reports all of them.
        self.steps_before, self.teacher_channels = 0, None
        if config.init_from:
            start, self.steps_before, self.teacher_channels = self._starting_backbone(
                config.init_from)
            prune_into(start, self.model)
        self.feature_rows = self._feature_rows() if recipe.loss.feature_weight > 0 else None
        self.forward = torch.compile(self.model) if config.torch_compile else self.model
        self.criterion = CombinedLoss(
            recipe.loss, recipe.model.embedding_size, len(self.pack.identities),
            None if self.val_targets is None else self.val_targets.shape[1]).to(self.device)
        if recipe.loss.margin_init == 'imprint' and self.criterion.margin_head is not None:
            self._imprint_classes()
        self.optimizer = make_optimizer(config, list(self.model.parameters())
                                        + list(self.criterion.parameters()))
        # Views at the teacher's 112 px; the student's input is scaled from them.
        self.augmenter = Augmenter(recipe.augment, CROP_SIZE, config.seed)
        steps = config.epochs * self.plan.steps_per_epoch
        self.total_steps = min(steps, config.max_steps) if config.max_steps else steps
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.exported_step = None

    @property
    def checkpoint_path(self):
        """Path of the latest checkpoint."""
        return self.out_dir / 'checkpoint.pt'

    def run(self, resume=False):
        """Train (or continue, with ``resume``) until the epochs or the step budget are done."""
        if resume:
            self.load_checkpoint()
        elif self.checkpoint_path.exists():
            raise ConfigError(f'{self.checkpoint_path} exists: pass --resume to continue it '
                              f'or choose another --out')
        self.out_dir.mkdir(parents=True, exist_ok=True)
        exported = time.monotonic()
        while self.epoch < self.recipe.train.epochs and self.step < self.total_steps:
            started = time.monotonic()
            losses = self.train_epoch()
            if self.step_in_epoch == 0 or self.step >= self.total_steps:
                self.end_epoch(losses, time.monotonic() - started)  # the last model measured
            self.save_checkpoint()
            if time.monotonic() - exported > 60 * self.recipe.train.export_minutes:
                self.export()  # a session that ends mid-run still leaves a model file
                exported = time.monotonic()

    def train_epoch(self):
        """Run the remaining batches of the current epoch; return their losses."""
        self.model.train()
        batches = self.plan.epoch(self.epoch)
        started, losses = time.monotonic(), []
        progress = tqdm(batches[self.step_in_epoch:], desc=f'epoch {self.epoch + 1}',
                        initial=self.step_in_epoch, total=len(batches), leave=False)
        for indices in progress:
            loss, parts = self.train_step(indices)
            now = time.monotonic()
            losses.append(loss)
            self.log_step(loss, parts, now - started)
            started = now
            progress.set_postfix(loss=f'{loss:.3f}')
            self.step += 1
            self.step_in_epoch += 1
            if self.step >= self.total_steps:
                break
        if self.step_in_epoch == len(batches):
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        return losses

    def train_step(self, indices):
        """Do one optimiser step on the faces ``indices``; return (loss, parts)."""
        order = np.argsort(indices)  # memory-mapped reads are faster in file order
        indices = indices[order]
        images = torch.from_numpy(self.pack.images[indices]).to(self.device)
        labels = torch.from_numpy(self.pack.labels[indices]).to(self.device)
        lr = learning_rate(self.recipe.train, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group['lr'] = lr
        if self.recipe.loss.targets == 'clean_view':
            views, mixed, clean = self.augmenter.views(images, clean=True)
        else:
            (views, mixed), clean = self.augmenter.views(images), None
        labels = torch.where(mixed, -1, labels)  # a mix of two people has no identity
        teacher = None
        if self.teacher is not None:
            teacher = self.teacher(views if clean is None else clean)
        elif self.targets is not None:
            teacher = torch.from_numpy(self.targets[indices]).to(self.device)
        inputs = resize_input(views, self.recipe.model.input_size).contiguous(
            memory_format=torch.channels_last)
        embeddings = self.forward(inputs)
        loss, parts = self.criterion(embeddings, labels, teacher, self._feature_pairs())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item(), {'lr': lr, **parts}

    def validate(self):
        """Return the mean cosine of student and teacher on the held-out faces (or None)."""
        if self.val_targets is None or not len(self.plan.val):
            return None
        embeddings = self._embed(self.plan.val)
        with torch.no_grad():
            if self.criterion.projection is not None:
                embeddings = self.criterion.projection(embeddings)
        return float(functional.cosine_similarity(embeddings, self.val_targets).mean())

    def impostor_cosine(self):
        """
        Return the mean cosine between held-out labelled faces of different people (or None).

        A student can score well against its teacher and still crowd natural photos into one
        cone (it did, by telling data sets apart): this watches that directly.
        """
        faces = self.plan.val[self.pack.labels[self.plan.val] >= 0][:IMPOSTOR_FACES]
        labels = self.pack.labels[faces]
        if len(np.unique(labels)) < 2:
            return None
        embeddings = functional.normalize(self._embed(faces), dim=1)
        cosines = (embeddings @ embeddings.T).cpu().numpy()
        return float(cosines[labels[:, None] != labels[None]].mean())

    def _embed(self, indices):
        """Return the evaluation-mode embeddings of the faces' centre crops, in batches."""
        self.model.eval()
        size = self.recipe.train.batch_size
        with torch.no_grad():
            return torch.cat([self.model(self._centre_inputs(indices[start:start + size]))
                              for start in range(0, len(indices), size)])

    def _imprint_classes(self):
        """Set each identity's class weight to the mean unit embedding of its training faces."""
        faces = np.sort(np.concatenate(self.plan.identities))
        embeddings = functional.normalize(self._embed(faces), dim=1)
        labels = torch.from_numpy(self.pack.labels[faces]).to(self.device)
        weight = self.criterion.margin_head.weight
        with torch.no_grad():
            sums = torch.zeros_like(weight).index_add_(0, labels, embeddings)
            seen = sums.norm(dim=1) > 0
            weight[seen] = functional.normalize(sums[seen], dim=1)

    def _centre_inputs(self, indices):
        """Return network input of the faces' centre crops."""
        return network_faces(self.pack.images[indices], self.recipe.model.input_size).to(
            self.device)

    def _starting_backbone(self, path):
        """
        Return the Backbone in ``path`` (checkpoint or ONNX) and how it was made.

        That is the model, the steps that made it and the teacher's channels its rows keep
        (None where the file does not record them, as in an ONNX export).
        """
        if not os.path.exists(path):
            raise ConfigError(f'train.init_from: {path} does not exist')
        if str(path).endswith('.onnx'):
            faces = np.linspace(0, len(self.plan.train) - 1, CALIBRATION_FACES).astype(int)
            return (*backbone_from_onnx(path, self._centre_inputs(self.plan.train[faces])),
                    None)
        state = torch.load(path, map_location='cpu', weights_only=True)
        model = Backbone(BackboneConfig.from_dict(state['backbone'], f'{path}: backbone'))
        model.load_state_dict(state['model'])
        return (model, state['step'] + state.get('steps_before', 0),
                state.get('teacher_channels'))

    def _feature_rows(self):
        """Return hooks on both nets' rows, after checking that their channels correspond."""
        if self.teacher is None:
            raise ConfigError('loss.feature_weight needs loss.targets: exact_view or '
                              'clean_view')
        if self.teacher_channels is None:
            raise ConfigError('loss.feature_weight needs train.init_from to be a cut or a '
                              "checkpoint that records the teacher's channels "
                              '(python -m face_id_ros.training.cut writes them)')
        widths = [row[-1].conv[-1][0].out_channels for row in blocks_by_row(self.model)[1]]
        if [len(kept) for kept in self.teacher_channels] != widths or (
                self.recipe.model.input_size != CROP_SIZE):
            raise ConfigError(f'loss.feature_weight: the rows of the model ({widths} channels, '
                              f'{self.recipe.model.input_size} px) do not match the recorded '
                              f'teacher channels ({[len(kept) for kept in self.teacher_channels]}'
                              f', {CROP_SIZE} px)')
        self.channel_index = [torch.tensor(kept, device=self.device)
                              for kept in self.teacher_channels]
        return RowOutputs(self.model), RowOutputs(self.teacher.model)

    def _feature_pairs(self):
        """Return the student's row outputs of the last step and the teacher's on its channels."""
        if self.feature_rows is None:
            return None
        student, teacher = self.feature_rows
        return [(ours, theirs[:, kept].float()) for ours, theirs, kept in zip(
            student.maps, teacher.maps, self.channel_index)]

    def log_step(self, loss, parts, seconds):
        """Append one row to train_log.csv."""
        row = {'step': self.step + 1, 'epoch': self.epoch + 1, 'loss': f'{loss:.5f}',
               'seconds_per_batch': f'{seconds:.3f}', **{
                   name: f'{value:.6g}' for name, value in parts.items()}}
        _append_csv(self.out_dir / 'train_log.csv', LOG_COLUMNS, row)

    def end_epoch(self, losses, seconds):
        """Validate, append to epoch_log.csv and redraw the learning curve."""
        cosine, impostor = self.validate(), self.impostor_cosine()
        epochs = self.epoch + self.step_in_epoch / self.plan.steps_per_epoch
        row = {'epoch': f'{epochs:.4g}', 'step': self.step,
               'mean_loss': f'{np.mean(losses):.5f}' if losses else '',
               'val_teacher_cosine': '' if cosine is None else f'{cosine:.5f}',
               'val_impostor_cosine': '' if impostor is None else f'{impostor:.5f}',
               'minutes': f'{seconds / 60:.2f}'}
        _append_csv(self.out_dir / 'epoch_log.csv', EPOCH_COLUMNS, row)
        plot_learning_curve(self.out_dir)

    def save_checkpoint(self):
        """Write checkpoint.pt atomically: everything needed to resume and to export."""
        state = {
            'epoch': self.epoch, 'step_in_epoch': self.step_in_epoch, 'step': self.step,
            'model': self.model.state_dict(), 'loss': self.criterion.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'augment_rng': self.augmenter.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'backbone': asdict(self.recipe.model), 'export': asdict(self.recipe.export),
            'identities': list(self.pack.identities), 'pack': self.recipe.data.pack,
            'steps_before': self.steps_before, 'teacher_channels': self.teacher_channels,
        }
        torch.save(state, f'{self.checkpoint_path}.tmp')
        os.replace(f'{self.checkpoint_path}.tmp', self.checkpoint_path)

    def load_checkpoint(self):
        """Restore the state saved by ``save_checkpoint``; raise ConfigError if absent."""
        if not self.checkpoint_path.exists():
            raise ConfigError(f'cannot resume: {self.checkpoint_path} does not exist')
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state['model'])
        self.criterion.load_state_dict(state['loss'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.augmenter.generator.set_state(state['augment_rng'].cpu())
        torch.set_rng_state(state['torch_rng'].cpu())
        self.epoch, self.step_in_epoch = state['epoch'], state['step_in_epoch']
        self.step = state['step']
        # What made the starting weights is the checkpoint's to say, whatever init_from
        # names now (a resume that named the run's own export counted its steps twice).
        self.steps_before = state.get('steps_before', 0)
        self.teacher_channels = state.get('teacher_channels')
        _drop_rows_after(self.out_dir / 'train_log.csv', LOG_COLUMNS, self.step)

    def export(self):
        """Export face_embedder.onnx with its metadata; parity-checked on held-out faces."""
        path = self.out_dir / 'face_embedder.onnx'
        if self.exported_step == self.step and path.exists():
            return path  # this step's model is exported already
        model = copy.deepcopy(self.model).cpu().eval()
        faces = self.plan.val[:PARITY_FACES] if len(self.plan.val) else np.arange(
            min(PARITY_FACES, len(self.pack.labels)))
        metadata = build_metadata(model, self.recipe.export, {
            'steps': self.steps_before + self.step,
            'teacher': os.path.basename(self.recipe.data.teacher)})
        export_onnx(model, metadata, path, self._centre_inputs(faces).cpu())
        self._keep_export(path, metadata.extra['steps'])
        self.exported_step = self.step
        return path

    def _keep_export(self, path, steps):
        """Keep a copy of every export and log it in exports.csv, for the learning curve."""
        kept = self.out_dir / 'exports' / f'step_{steps:06d}.onnx'
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, kept)
        row = {'steps': steps, 'run_hours': f'{_logged_seconds(self.out_dir) / 3600:.6f}',
               'val_teacher_cosine': _last_value(self.out_dir / 'epoch_log.csv',
                                                 'val_teacher_cosine'),
               'model': kept.relative_to(self.out_dir)}
        _append_csv(self.out_dir / 'exports.csv', EXPORT_COLUMNS, row)


def _load_targets(path, count):
    """Open cached teacher embeddings and check they match the pack."""
    if not os.path.exists(path):
        raise ConfigError(f'teacher targets {path} are missing: run python -m '
                          f'face_id_ros.training.prepare, or set loss.distill_weight: 0')
    targets = np.load(path, mmap_mode='r')
    if len(targets) != count:
        raise ConfigError(f'{path} has {len(targets)} rows but the pack has {count} faces: '
                          f'recompute with python -m face_id_ros.training.prepare --force')
    return np.asarray(targets, np.float32)


def _logged_seconds(out_dir):
    """Return the seconds of the steps logged in a run's train_log.csv."""
    with open(Path(out_dir) / 'train_log.csv', encoding='utf-8') as stream:
        return sum(float(row['seconds_per_batch']) for row in csv.DictReader(stream))


def _last_value(path, column):
    """Return the newest non-empty ``column`` of a CSV log, or '' when there is none."""
    if not path.exists():
        return ''
    with open(path, encoding='utf-8') as stream:
        values = [row[column] for row in csv.DictReader(stream) if row.get(column)]
    return values[-1] if values else ''


def _drop_rows_after(path, columns, step):
    """Forget logged steps after ``step`` (a run stopped between checkpoints redoes them)."""
    if not path.exists():
        return
    with open(path, encoding='utf-8') as stream:
        rows = [row for row in csv.DictReader(stream) if int(row['step']) <= step]
    with open(path, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)


def _append_csv(path, columns, row):
    """Append ``row`` to a CSV file, writing the header first when the file is new."""
    new = not path.exists()
    with open(path, 'a', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, columns, restval='')
        if new:
            writer.writeheader()
        writer.writerow(row)


def plot_learning_curve(out_dir):
    """Draw learning_curve.png from train_log.csv and epoch_log.csv in ``out_dir``."""
    out_dir = Path(out_dir)
    with open(out_dir / 'train_log.csv', encoding='utf-8') as stream:
        steps = list(csv.DictReader(stream))
    with open(out_dir / 'epoch_log.csv', encoding='utf-8') as stream:
        epochs = list(csv.DictReader(stream))
    figure = Figure(figsize=(11, 4))
    losses, validation = figure.subplots(1, 2)
    window = max(1, len(steps) // 50)
    for name in ('loss', 'margin', 'triplet', 'distill', 'relation'):
        values = [float(row[name]) for row in steps if row.get(name)]
        if values:
            smooth = np.convolve(values, np.ones(window) / window, mode='valid')
            losses.plot(np.arange(len(smooth)) + window, smooth, label=name)
    losses.set(xlabel='step', ylabel='weighted total, unweighted terms', yscale='log',
               title=f'training loss (mean of {window} steps)')
    losses.legend()
    for name, label in (('val_teacher_cosine', 'student-teacher, same face'),
                        ('val_impostor_cosine', 'different people (labelled)')):
        rows = [row for row in epochs if row.get(name)]
        validation.plot([float(row['epoch']) for row in rows],
                        [float(row[name]) for row in rows], marker='o', label=label)
    validation.set(xlabel='epoch', ylabel='mean cosine', title='held-out faces')
    validation.legend()
    figure.tight_layout()
    figure.savefig(out_dir / 'learning_curve.png', dpi=100)


def main(argv=None):
    """Train from a recipe, resume if asked, and export the ONNX embedder."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--recipe', required=True, help='config/training/X.yaml')
    parser.add_argument('--out', help='output folder (default runs/<recipe name>)')
    parser.add_argument('--resume', action='store_true', help='continue checkpoint.pt')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override a recipe value (repeatable)')
    args = parser.parse_args(argv)
    out_dir = args.out or os.path.join('runs', Path(args.recipe).stem)
    try:
        trainer = Trainer(load_recipe(args.recipe, args.set), out_dir)
        trainer.run(args.resume)
        print(f'wrote {trainer.export()}')
    except FaceIdError as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
