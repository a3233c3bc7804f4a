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
Losses for training face embedders: margin heads, batch-hard triplet, distillation.

Margin heads compare L2-normalised embeddings with L2-normalised class weights and put a
margin on the target class only: ArcFace ``cos(theta + m)``, ArcFace-w (ArcFace with the
arccos replaced by a truncated arcsin series, see ``arcsin_series``) and CosFace
``cos(theta) - m``. ``CombinedLoss`` weighs them with distillation and triplet terms.
"""

from dataclasses import dataclass
import math

from face_id_ros.core.config import build_stage, setting
import torch
from torch import nn
from torch.nn import functional


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section of a training recipe."""

    margin_head: str = setting('arcface_w', 'Margin head on the labelled faces.',
                               choices=('arcface', 'arcface_w', 'cosface'))
    margin_init: str = setting(
        'random', "The margin head's class weights at the start: random, or imprinted (each "
        "identity's mean unit embedding of its training faces by the starting model), so "
        'that a margin phase on a trained embedder starts from where its faces already lie.',
        choices=('random', 'imprint'))
    scale: float = setting(32.0, 'Logit scale s of the margin head.', 1.0, 128.0)
    margin: float = setting(0.5, 'Margin m: an angle (ArcFace, ArcFace-w) or a cosine '
                            '(CosFace).', 0.0, 1.5)
    easy_margin: bool = setting(False, 'ArcFace: add the margin only where cos(theta) > 0.')
    taylor_terms: int = setting(4, 'ArcFace-w: terms of the arcsin series kept.', 1, 10000)
    margin_weight: float = setting(0.3, 'Weight of the margin-head loss.', 0.0, 100.0)
    distill_weight: float = setting(1.0, 'Weight of 1 - cos(student, teacher).', 0.0, 100.0)
    targets: str = setting(
        'centre_crop', "The teacher's embedding the student is pulled to: of the face's "
        'centre crop (cached by prepare), of the exact view the student sees, or of the clean '
        'view: the same crop, turn, mix and flip without mask, smeared top, colour, low light '
        'and blur, so that the student learns to see through what the teacher cannot (the '
        "last two run the teacher's PyTorch weights, data.teacher_weights, on every batch).",
        choices=('centre_crop', 'exact_view', 'clean_view'))
    relation_weight: float = setting(
        0.0, "Weight of the relational term: mean squared difference of the batch's cosine "
        'matrices, student vs teacher (how faces relate, not only where each lies).',
        0.0, 100.0)
    feature_weight: float = setting(
        0.0, "Weight of feature-map matching: each bottleneck row's output against the "
        "teacher's on the channels the cut kept (squared error over the teacher's mean "
        'square). Needs exact-view targets and a start that records those channels.',
        0.0, 100.0)
    triplet_weight: float = setting(0.0, 'Weight of the batch-hard triplet loss.', 0.0, 100.0)
    triplet_margin: float = setting(0.2, 'Triplet margin (Euclidean, unit embeddings).',
                                    0.0, 4.0)

    @classmethod
    def from_dict(cls, mapping, source='loss'):
        """Build and validate from a mapping; raise ConfigError naming the bad key."""
        return build_stage(cls, mapping, source)


def arcsin_coefficients(terms):
    """
    Return the first ``terms`` coefficients of the arcsin series (odd powers).

    ``arcsin(x) = sum_n (2n)! / (4^n (n!)^2 (2n + 1)) x^(2n+1)``, i.e.
    ``x + x^3/6 + 3x^5/40 + 5x^7/112 + 35x^9/1152 + ...``.
    """
    return [math.comb(2 * n, n) / (4 ** n * (2 * n + 1)) for n in range(terms)]


def arcsin_series(x, terms):
    """
    Return the arcsin series of ``x`` truncated to ``terms`` terms.

    Every coefficient is positive, so for ``x > 0`` the truncation UNDER-estimates arcsin
    (and over-estimates it for ``x < 0``); the gap is largest at ``x = 1``, where 4 terms
    give 1.286 instead of pi/2. Its derivative stays finite at ``x = +-1``, unlike arccos.
    """
    square, power, total = x * x, x, torch.zeros_like(x)
    for coefficient in arcsin_coefficients(terms):
        total = total + coefficient * power
        power = power * square
    return total


class MarginHead(nn.Module):
    """
    Class logits ``s * cos`` with a margin on the target class.

    ``kind``:
    - ``'arcface'``: target ``cos(theta + m)``, ``theta = arccos(cos)``.
    - ``'arcface_w'``: the same with ``theta = pi/2 - arcsin_series(cos, taylor_terms)``
      (the corrected form of the nursing-robot paper's ArcFace-w: ``arccos x = pi/2 -
      arcsin x`` and ``arcsin x = x + x^3/6 + 3x^5/40 + 5x^7/112 + ...``). Truncation
      under-estimates arcsin for ``cos > 0``, so theta is enlarged and the margin tightened;
      with many terms it tends to ArcFace. Non-target logits stay ``s * cos``.
    - ``'cosface'``: target ``cos - m``.

    Where ``theta + m`` would pass pi (where ``cos(theta + m)`` stops decreasing) the
    target falls back to ``cos(theta) - m sin(m)`` (insightface); with ``easy_margin`` the
    margin is added only where ``theta < pi/2`` and the target is ``cos(theta)`` elsewhere.
    """

    def __init__(self, embedding_size, num_classes, kind='arcface_w', scale=32.0, margin=0.5,
                 easy_margin=False, taylor_terms=4):
        """Create the class weights (one row per identity)."""
        super().__init__()
        self.kind, self.scale, self.margin = kind, scale, margin
        self.easy_margin, self.taylor_terms = easy_margin, taylor_terms
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings):
        """Return the ``(N, classes)`` cosine of embeddings and class weights."""
        return functional.linear(functional.normalize(embeddings),
                                 functional.normalize(self.weight))

    def angle(self, cosine):
        """Return theta for the target cosine: arccos, or its series form for ArcFace-w."""
        if self.kind == 'arcface_w':
            return math.pi / 2 - arcsin_series(cosine.clamp(-1.0, 1.0), self.taylor_terms)
        return torch.acos(cosine.clamp(-1.0 + 1e-6, 1.0 - 1e-6))

    def target_logit(self, cosine):
        """Return the target class's cosine with the margin applied (before scaling)."""
        if self.kind == 'cosface':
            return cosine - self.margin
        theta = self.angle(cosine)
        if self.easy_margin:
            return torch.where(theta < math.pi / 2, torch.cos(theta + self.margin),
                               torch.cos(theta))
        return torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                           torch.cos(theta) - self.margin * math.sin(self.margin))

    def forward(self, embeddings, labels):
        """Return scaled logits ``(N, classes)`` for cross-entropy with ``labels``."""
        cosine = self.cosine(embeddings)
        index = labels[:, None]
        target = self.target_logit(cosine.gather(1, index))
        return self.scale * cosine.scatter(1, index, target)


def batch_hard_triplet_loss(embeddings, labels, margin=0.2):
    """
    Return the batch-hard triplet loss (Hermans et al. 2017) of unit embeddings.

    For each anchor: its farthest positive and nearest negative in the batch (Euclidean
    distance of L2-normalised embeddings); anchors lacking either are left out, and a batch
    with none left gives zero.
    """
    unit = functional.normalize(embeddings)
    distance = (2.0 - 2.0 * unit @ unit.T).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_positive = distance.masked_fill(~positive, 0.0).amax(1)
    hardest_negative = distance.masked_fill(same, math.inf).amin(1)
    valid = positive.any(1) & (~same).any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    return functional.relu(hardest_positive - hardest_negative + margin)[valid].mean()


def distillation_loss(student, teacher):
    """Return the mean ``1 - cos(student, teacher)`` (zero when the directions agree)."""
    return (1.0 - functional.cosine_similarity(student, teacher, dim=1)).mean()


def relation_loss(student, teacher):
    """Return the mean squared difference of the batch's student and teacher cosine matrices."""
    student, teacher = functional.normalize(student), functional.normalize(teacher)
    return (student @ student.T - teacher @ teacher.T).pow(2).mean()


def feature_map_loss(pairs):
    """Return the mean over ``(student, teacher)`` map pairs of ``|s - t|^2 / |t|^2``."""
    return torch.stack([(student - teacher).pow(2).mean() / teacher.pow(2).mean().clamp_min(
        1e-6) for student, teacher in pairs]).mean()


class CombinedLoss(nn.Module):
    """
    Weighted sum of margin-head, triplet, distillation and feature-map losses (``LossConfig``).

    The margin head and the triplet loss see only labelled faces (label >= 0);
    distillation and feature matching see every face. A student whose embedding is longer
    than the teacher's is distilled through a linear projection that only training uses.
    """

    def __init__(self, config, embedding_size, num_classes, teacher_size=None):
        """Create the margin head when its weight is positive and classes exist."""
        super().__init__()
        self.config = config
        self.projection = None
        if config.distill_weight > 0 and teacher_size and teacher_size != embedding_size:
            self.projection = nn.Linear(embedding_size, teacher_size, bias=False)
        self.margin_head = None
        if config.margin_weight > 0 and num_classes > 0:
            self.margin_head = MarginHead(embedding_size, num_classes, config.margin_head,
                                          config.scale, config.margin, config.easy_margin,
                                          config.taylor_terms)

    def forward(self, embeddings, labels, teacher=None, feature_pairs=None):
        """
        Return ``(total, parts)``: the loss tensor and each weighted term's float value.

        ``feature_pairs``: the student's feature maps and the teacher's on the same channels.
        """
        config, terms = self.config, {}
        labelled = labels >= 0
        if self.margin_head is not None and labelled.any():
            logits = self.margin_head(embeddings[labelled], labels[labelled])
            terms['margin'] = (config.margin_weight,
                               functional.cross_entropy(logits, labels[labelled]))
        if config.triplet_weight > 0 and labelled.any():
            terms['triplet'] = (config.triplet_weight, batch_hard_triplet_loss(
                embeddings[labelled], labels[labelled], config.triplet_margin))
        if config.distill_weight > 0:
            if teacher is None:
                raise ValueError('distill_weight > 0 needs teacher embeddings')
            student = embeddings if self.projection is None else self.projection(embeddings)
            terms['distill'] = (config.distill_weight, distillation_loss(student, teacher))
            if config.relation_weight > 0:
                terms['relation'] = (config.relation_weight, relation_loss(student, teacher))
        if config.feature_weight > 0:
            if not feature_pairs:
                raise ValueError('feature_weight > 0 needs feature maps of both nets')
            terms['feature'] = (config.feature_weight, feature_map_loss(feature_pairs))
        total = embeddings.sum() * 0.0
        for weight, value in terms.values():
            total = total + weight * value
        return total, {name: value.item() for name, (_, value) in terms.items()}
