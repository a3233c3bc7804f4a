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

"""Tests of the verification and identification metrics and the evaluation plots."""

import math
from pathlib import Path

import cv2
from face_id_ros.core.errors import FaceIdError
from face_id_ros.evaluation import plots
from face_id_ros.evaluation.metrics import (
    identification_report, kfold_verification, pair_scores, read_lfw_pairs, roc_curve,
    tar_at_far)
import numpy as np
import pytest

LFW_DIR = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'eval' / 'lfw'


def write_lfw_tree(root, images):
    """Write tiny real JPEGs as images_dir/Name/Name_NNNN.jpg; return images_dir."""
    images_dir = root / 'images'
    for name, index in images:
        folder = images_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.full((8, 8, 3), 10 * index, dtype=np.uint8)
        assert cv2.imwrite(str(folder / f'{name}_{index:04d}.jpg'), pixels)
    return images_dir


@pytest.fixture
def small_lfw(tmp_path):
    """Two folds of one same and one different pair each, with their images."""
    images_dir = write_lfw_tree(tmp_path, [('Ann_Lee', 1), ('Ann_Lee', 2), ('Bo_Li', 1),
                                           ('Bo_Li', 3), ('Cy_Ng', 12)])
    pairs_path = tmp_path / 'pairs.txt'
    pairs_path.write_text('2\t1\n'
                          'Ann_Lee\t1\t2\n'
                          'Ann_Lee\t1\tBo_Li\t3\n'
                          'Bo_Li\t1\t3\n'
                          'Bo_Li\t1\tCy_Ng\t12\n')
    return pairs_path, images_dir


def test_read_lfw_pairs_parses_folds_classes_and_paths(small_lfw):
    pairs_path, images_dir = small_lfw
    pairs = read_lfw_pairs(pairs_path, images_dir)
    assert [(pair.same, pair.fold) for pair in pairs] == [
        (True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[0].path_a == str(images_dir / 'Ann_Lee' / 'Ann_Lee_0001.jpg')
    assert pairs[0].path_b == str(images_dir / 'Ann_Lee' / 'Ann_Lee_0002.jpg')
    assert pairs[3].path_b == str(images_dir / 'Cy_Ng' / 'Cy_Ng_0012.jpg')
    assert cv2.imread(pairs[1].path_b) is not None


@pytest.mark.parametrize('line_three, message', [
    ('Bo_Li\t1\tCy_Ng\t12', ':4: expected a same-person line'),
    ('Bo_Li\t1\tx', ':4: image numbers must be positive integers'),
])
def test_read_lfw_pairs_names_the_malformed_line(small_lfw, line_three, message):
    pairs_path, images_dir = small_lfw
    lines = pairs_path.read_text().splitlines()
    lines[3] = line_three
    pairs_path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(FaceIdError, match=message):
        read_lfw_pairs(pairs_path, images_dir)


def test_read_lfw_pairs_rejects_bad_header_and_wrong_length(small_lfw):
    pairs_path, images_dir = small_lfw
    text = pairs_path.read_text()
    pairs_path.write_text('ten 300\n' + text.split('\n', 1)[1])
    with pytest.raises(FaceIdError, match=':1: expected the header'):
        read_lfw_pairs(pairs_path, images_dir)
    pairs_path.write_text(text + 'Ann_Lee\t1\t2\n')
    with pytest.raises(FaceIdError, match='promises 5'):
        read_lfw_pairs(pairs_path, images_dir)
    with pytest.raises(FaceIdError, match='Cannot read'):
        read_lfw_pairs(pairs_path.with_name('absent.txt'), images_dir)


def test_read_lfw_pairs_reports_missing_images(small_lfw):
    pairs_path, images_dir = small_lfw
    (images_dir / 'Cy_Ng' / 'Cy_Ng_0012.jpg').unlink()
    with pytest.raises(FaceIdError, match='1 of the 5 images .*Cy_Ng_0012.jpg'):
        read_lfw_pairs(pairs_path, images_dir)


@pytest.mark.skipif(not (LFW_DIR / 'pairs.txt').is_file(), reason='shared LFW data absent')
def test_read_lfw_pairs_parses_the_real_view2_protocol():
    pairs = read_lfw_pairs(LFW_DIR / 'pairs.txt', LFW_DIR / 'images')
    assert len(pairs) == 6000
    folds = np.array([pair.fold for pair in pairs])
    same = np.array([pair.same for pair in pairs])
    assert np.bincount(folds).tolist() == [600] * 10
    assert np.bincount(folds[same]).tolist() == [300] * 10
    assert all(Path(path).is_file() for pair in pairs for path in (pair.path_a, pair.path_b))


def test_pair_scores_cosine_and_euclidean_of_normalised_embeddings():
    emb_a = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    emb_b = np.array([[0.5, 0.0], [0.0, 5.0], [0.0, -1.0]])
    cosine, euclidean = pair_scores(emb_a, emb_b)
    np.testing.assert_allclose(cosine, [1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(euclidean, [0.0, math.sqrt(2), 2.0], atol=1e-12)
    rng = np.random.default_rng(0)
    cosine, euclidean = pair_scores(rng.normal(size=(50, 128)), rng.normal(size=(50, 128)))
    np.testing.assert_allclose(euclidean ** 2, 2 - 2 * cosine, atol=1e-12)
    with pytest.raises(FaceIdError, match='zero'):
        pair_scores(np.zeros((1, 4)), np.ones((1, 4)))


def ten_folds(same_per_fold, different_per_fold):
    """Return scores, same and fold labels from per-fold lists of scores."""
    scores, same, folds = [], [], []
    for fold, (positives, negatives) in enumerate(zip(same_per_fold, different_per_fold)):
        scores += list(positives) + list(negatives)
        same += [True] * len(positives) + [False] * len(negatives)
        folds += [fold] * (len(positives) + len(negatives))
    return np.array(scores), np.array(same), np.array(folds)


def test_kfold_separable_scores_give_full_accuracy_and_the_gap_midpoint():
    rng = np.random.default_rng(1)
    # Every fold holds the extremes 0.3 (different) and 0.6 (same): the gap midpoint is 0.45.
    scores, same, folds = ten_folds(
        [np.append(rng.uniform(0.6, 1.0, 29), 0.6) for _ in range(10)],
        [np.append(rng.uniform(-0.2, 0.3, 29), 0.3) for _ in range(10)])
    result = kfold_verification(scores, same, folds)
    assert result['accuracy_mean'] == 1.0
    assert result['accuracy_std'] == 0.0
    np.testing.assert_allclose(result['fold_thresholds'], [0.45] * 10)
    distance = kfold_verification(1.0 - scores, same, folds, higher_is_better=False)
    assert distance['accuracy_mean'] == 1.0
    np.testing.assert_allclose(distance['threshold_mean'], 0.55)


def test_kfold_overlapping_gaussians_reach_the_analytic_optimum():
    rng = np.random.default_rng(2)
    # Same ~ N(1, 1), different ~ N(-1, 1), equal priors: best threshold 0, accuracy Phi(1).
    scores, same, folds = ten_folds([rng.normal(1, 1, 300) for _ in range(10)],
                                    [rng.normal(-1, 1, 300) for _ in range(10)])
    result = kfold_verification(scores, same, folds)
    optimum = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert abs(result['accuracy_mean'] - optimum) < 0.015
    assert abs(result['threshold_mean']) < 0.25  # accuracy is flat near the optimum
    assert 0 < result['accuracy_std'] < 0.05
    assert len(result['fold_accuracies']) == 10


def test_kfold_threshold_never_sees_the_held_out_fold():
    # Fold 0 alone would pull the threshold down to 0.25; the other folds alone give 0.5.
    scores, same, folds = ten_folds([[0.3] * 10] + [[0.8] * 10] * 9,
                                    [[0.1] * 10] + [[0.2] * 10] * 9)
    result = kfold_verification(scores, same, folds)
    assert result['fold_thresholds'][0] == pytest.approx(0.5)
    assert result['fold_accuracies'][0] == 0.5
    np.testing.assert_allclose(result['fold_thresholds'][1:], [0.25] * 9)
    assert result['fold_accuracies'][1:] == [1.0] * 9


def test_tar_at_far_on_a_hand_made_example():
    same_scores = [0.9, 0.8, 0.7, 0.4]
    different_scores = [0.75, 0.5, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4]
    scores = np.array(same_scores + different_scores)
    same = np.array([True] * 4 + [False] * 10)
    # One false accept in ten is allowed: accepting down to 0.7 lets in only 0.75.
    assert tar_at_far(scores, same, far=0.1) == (0.75, 0.7)
    assert tar_at_far(scores, same, far=0.05) == (0.5, 0.8)
    assert tar_at_far(scores, same, far=0.2) == (1.0, 0.4)
    tar, threshold = tar_at_far(1.0 - scores, same, far=0.1, higher_is_better=False)
    assert tar == 0.75
    assert threshold == pytest.approx(0.3)


def test_roc_curve_is_monotonic_and_exact_at_every_threshold():
    rng = np.random.default_rng(3)
    same = rng.random(400) < 0.4
    scores = np.round(rng.normal(same.astype(float), 1.0), 1)  # rounding makes ties
    far, tar, thresholds = roc_curve(scores, same)
    assert (far[0], tar[0], far[-1], tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    for index in (1, len(far) // 2, len(far) - 1):
        accepted = scores >= thresholds[index]
        assert tar[index] == np.mean(accepted[same])
        assert far[index] == np.mean(accepted[~same])
    far_d, tar_d, thresholds_d = roc_curve(-scores, same, higher_is_better=False)
    np.testing.assert_array_equal(far_d, far)
    np.testing.assert_array_equal(tar_d, tar)
    np.testing.assert_array_equal(thresholds_d, -thresholds)


def test_identification_report_counts_each_outcome():
    truths = ['p1', 'p1', 'p2', 'p3', None, None, None]
    decisions = ['p1', 'p2', 'unknown', 'p3', 'unknown', 'p1', 'unknown']
    report = identification_report(truths, decisions)
    assert report['enrolled_probes'] == 4
    assert (report['correct'], report['wrong_patient'], report['rejected_enrolled']) == (2, 1, 1)
    assert report['rank1_rate'] == 0.5
    assert report['wrong_patient_rate'] == 0.25
    assert (report['stranger_probes'], report['stranger_accepted']) == (3, 1)
    assert report['stranger_acceptance_rate'] == pytest.approx(1 / 3)
    assert identification_report(['p1'], ['p1'])['stranger_acceptance_rate'] is None
    with pytest.raises(FaceIdError, match='one per probe'):
        identification_report(['p1'], [])


def test_plots_write_readable_pngs_of_the_fixed_size(tmp_path):
    rng = np.random.default_rng(4)
    same = rng.random(500) < 0.5
    scores = rng.normal(same.astype(float), 0.7)
    far, tar, _ = roc_curve(scores, same)
    expected_shape = (plots.FIGURE_SIZE_INCHES[1] * plots.DPI,
                      plots.FIGURE_SIZE_INCHES[0] * plots.DPI, 3)
    written = [
        plots.plot_roc({'model': (far, tar), 'chance': (far, far)},
                       tmp_path / 'roc' / 'roc.png', 'ROC'),
        plots.plot_score_histogram(scores, same, 0.5, tmp_path / 'hist.png', 'Scores',
                                   'cosine similarity'),
    ]
    for path in written:
        assert Path(path).stat().st_size > 0
        image = cv2.imread(str(path))
        assert image is not None
        assert image.shape == expected_shape
