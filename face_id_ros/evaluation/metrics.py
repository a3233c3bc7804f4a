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
Face verification and identification metrics: the LFW protocol, ROC, TAR@FAR, open-set ID.

Scores are either cosine similarities (higher is better) or Euclidean distances of
L2-normalised embeddings (lower is better). A pair is accepted as the same person when its
score is at least the threshold (at most, for distances), matching how the runtime's matcher
applies its similarity threshold.
"""

import os
from typing import NamedTuple

from face_id_ros.core.errors import FaceIdError
import numpy as np

LFW_IMAGE_NAME = '{name}/{name}_{index:04d}.jpg'


class Pair(NamedTuple):
    """One verification pair of the LFW protocol."""

    path_a: str
    path_b: str
    same: bool
    fold: int


def read_lfw_pairs(pairs_path, images_dir):
    """Parse an LFW View 2 pairs.txt into pairs whose image files all exist."""
    try:
        with open(pairs_path, encoding='utf-8') as stream:
            lines = [(number, line.split()) for number, line in enumerate(stream, start=1)]
    except (OSError, UnicodeDecodeError) as error:
        raise FaceIdError(f'Cannot read the LFW pairs file {pairs_path}: {error}.') from error
    lines = [(number, fields) for number, fields in lines if fields]
    if not lines:
        raise FaceIdError(f'{pairs_path} is empty; expected an LFW View 2 pairs.txt.')
    n_folds, n_per_class = _parse_header(pairs_path, *lines[0])
    expected = 1 + n_folds * 2 * n_per_class
    if len(lines) != expected:
        raise FaceIdError(
            f'{pairs_path} has {len(lines)} non-blank lines but its header '
            f'"{n_folds} {n_per_class}" promises {expected}; the file is truncated or padded.')
    pairs = []
    body = iter(lines[1:])
    for fold in range(n_folds):
        for same in (True, False):
            for _ in range(n_per_class):
                number, fields = next(body)
                pairs.append(_parse_pair(pairs_path, number, fields, same, fold, images_dir))
    _check_images_exist(pairs, images_dir)
    return pairs


def _parse_header(pairs_path, number, fields):
    if len(fields) != 2 or not all(field.isdigit() and int(field) > 0 for field in fields):
        raise FaceIdError(
            f'{pairs_path}:{number}: expected the header "<folds> <pairs per class>" '
            f'(e.g. "10 300"), got {" ".join(fields)!r}.')
    return int(fields[0]), int(fields[1])


def _parse_pair(pairs_path, number, fields, same, fold, images_dir):
    """Turn 'name i j' (same) or 'name1 i name2 j' (different) into a Pair."""
    if same and len(fields) == 3:
        names, indices = (fields[0], fields[0]), (fields[1], fields[2])
    elif not same and len(fields) == 4:
        names, indices = (fields[0], fields[2]), (fields[1], fields[3])
    else:
        kind = "a same-person line 'name i j'" if same else \
            "a different-person line 'name1 i name2 j'"
        raise FaceIdError(
            f'{pairs_path}:{number}: expected {kind} (fold {fold + 1}), '
            f'got {" ".join(fields)!r}.')
    if not all(index.isdigit() and int(index) > 0 for index in indices):
        raise FaceIdError(
            f'{pairs_path}:{number}: image numbers must be positive integers, '
            f'got {" ".join(fields)!r}.')
    path_a, path_b = (
        os.path.join(images_dir, LFW_IMAGE_NAME.format(name=name, index=int(index)))
        for name, index in zip(names, indices))
    return Pair(path_a, path_b, same, fold)


def _check_images_exist(pairs, images_dir):
    paths = sorted({path for pair in pairs for path in (pair.path_a, pair.path_b)})
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        shown = ', '.join(missing[:3])
        raise FaceIdError(
            f'{len(missing)} of the {len(paths)} images that the pairs name are missing under '
            f'{images_dir} (e.g. {shown}); point images_dir at the folder holding '
            f'<Name>/<Name>_NNNN.jpg.')


def pair_scores(emb_a, emb_b):
    """Return the cosine similarity and Euclidean distance of each L2-normalised pair."""
    emb_a = _normalised(emb_a, 'emb_a')
    emb_b = _normalised(emb_b, 'emb_b')
    if emb_a.shape != emb_b.shape:
        raise FaceIdError(
            f'Embedding arrays differ in shape: {emb_a.shape} and {emb_b.shape}.')
    cosine = np.sum(emb_a * emb_b, axis=1)
    euclidean = np.linalg.norm(emb_a - emb_b, axis=1)
    return cosine, euclidean


def _normalised(embeddings, name):
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    if embeddings.ndim != 2:
        raise FaceIdError(f'{name} must be (N, D) embeddings, got shape {embeddings.shape}.')
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise FaceIdError(f'{name} holds a zero or non-finite embedding; it has no direction.')
    return embeddings / norms


def kfold_verification(scores, same, folds, higher_is_better=True):
    """Score each fold with the threshold that maximises accuracy on the other folds."""
    scores, same = _check_scores(scores, same)
    folds = np.asarray(folds)
    if folds.shape != scores.shape:
        raise FaceIdError(f'folds has shape {folds.shape}, scores {scores.shape}.')
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise FaceIdError('k-fold verification needs at least two folds.')
    oriented = scores if higher_is_better else -scores
    accuracies, thresholds = [], []
    for fold in fold_ids:
        held_out = folds == fold
        threshold = _best_threshold(oriented[~held_out], same[~held_out])
        accuracies.append(float(np.mean((oriented[held_out] >= threshold) == same[held_out])))
        thresholds.append(float(threshold if higher_is_better else -threshold))
    return {
        'accuracy_mean': float(np.mean(accuracies)),
        # Population std over folds, as the seed papers (and facenet's lfw.py) report it.
        'accuracy_std': float(np.std(accuracies)),
        'fold_accuracies': accuracies,
        'fold_thresholds': thresholds,
        'threshold_mean': float(np.mean(thresholds)),
        'higher_is_better': bool(higher_is_better),
    }


def _best_threshold(scores, same):
    """Return the midpoint between sorted unique scores with the best accuracy (first on ties)."""
    values, inverse = np.unique(scores, return_inverse=True)
    if len(values) < 2:
        raise FaceIdError('The training folds hold fewer than two distinct scores; '
                          'no threshold can separate them.')
    same_at = np.bincount(inverse, weights=same.astype(np.float64), minlength=len(values))
    different_at = np.bincount(inverse, minlength=len(values)) - same_at
    # A threshold between values[k] and values[k + 1] accepts every score above values[k].
    accepted_same = same_at.sum() - np.cumsum(same_at)[:-1]
    rejected_different = np.cumsum(different_at)[:-1]
    best = int(np.argmax(accepted_same + rejected_different))
    return (values[best] + values[best + 1]) / 2


def roc_curve(scores, same, higher_is_better=True):
    """
    Return FAR, TAR and the threshold of every operating point, strictest first.

    The first point (threshold +inf, or -inf for distances) accepts nothing; each later one
    accepts every pair whose score is at least as good as its threshold, which is an
    observed score. FAR and TAR never decrease along the arrays.
    """
    scores, same = _check_scores(scores, same)
    if same.all() or not same.any():
        raise FaceIdError('A ROC curve needs both same-person and different-person pairs.')
    oriented = scores if higher_is_better else -scores
    order = np.argsort(-oriented, kind='stable')
    sorted_scores, sorted_same = oriented[order], same[order]
    # The last index of each run of equal scores: a threshold accepts a whole run.
    run_ends = np.append(np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1)
    true_accepts = np.cumsum(sorted_same)[run_ends]
    false_accepts = np.cumsum(~sorted_same)[run_ends]
    tar = np.concatenate([[0.0], true_accepts / same.sum()])
    far = np.concatenate([[0.0], false_accepts / (~same).sum()])
    thresholds = np.concatenate([[np.inf], sorted_scores[run_ends]])
    return far, tar, thresholds if higher_is_better else -thresholds


def tar_at_far(scores, same, far=1e-3, higher_is_better=True):
    """Return the highest TAR whose FAR is at most `far`, and the threshold that gives it."""
    if not 0.0 <= far <= 1.0:
        raise FaceIdError(f'far must lie in [0, 1], got {far}.')
    fars, tars, thresholds = roc_curve(scores, same, higher_is_better)
    # TAR never decreases along the curve, so the last admissible point is the best one.
    best = int(np.flatnonzero(fars <= far + 1e-12)[-1])
    return float(tars[best]), float(thresholds[best])


def _check_scores(scores, same):
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same)
    if scores.ndim != 1 or same.shape != scores.shape:
        raise FaceIdError(f'scores and same must be 1-D of one length, got shapes '
                          f'{scores.shape} and {same.shape}.')
    if not np.all(np.isfinite(scores)):
        raise FaceIdError('scores hold NaN or infinite values; check the embeddings.')
    if same.dtype != bool and not np.isin(same, (0, 1)).all():
        raise FaceIdError('same must hold booleans (or 0/1).')
    return scores, same.astype(bool)


def identification_report(truths, decisions, unknown='unknown'):
    """
    Summarise open-set identification of probes against an enrolled gallery.

    truths: per probe, the enrolled patient id, or None for a stranger.
    decisions: per probe, the pipeline's patient id or `unknown`.
    Rates are None when their denominator is zero.
    """
    if len(truths) != len(decisions):
        raise FaceIdError(
            f'{len(truths)} ground truths but {len(decisions)} decisions; give one per probe.')
    enrolled = [(truth, decision) for truth, decision in zip(truths, decisions)
                if truth is not None]
    strangers = [decision for truth, decision in zip(truths, decisions) if truth is None]
    correct = sum(decision == truth for truth, decision in enrolled)
    rejected = sum(decision == unknown for _, decision in enrolled)
    wrong_patient = len(enrolled) - correct - rejected
    stranger_accepted = sum(decision != unknown for decision in strangers)
    return {
        'enrolled_probes': len(enrolled),
        'correct': correct,
        'wrong_patient': wrong_patient,
        'rejected_enrolled': rejected,
        'rank1_rate': _rate(correct, len(enrolled)),
        'wrong_patient_rate': _rate(wrong_patient, len(enrolled)),
        'rejection_rate': _rate(rejected, len(enrolled)),
        'stranger_probes': len(strangers),
        'stranger_accepted': stranger_accepted,
        'stranger_acceptance_rate': _rate(stranger_accepted, len(strangers)),
    }


def _rate(count, total):
    return count / total if total else None
