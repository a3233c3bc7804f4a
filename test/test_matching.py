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

"""Open-set matching: strangers and ambiguous faces are unknown, never the nearest patient."""

import logging

from face_id_ros.core.config import MatcherConfig, PipelineConfig
from face_id_ros.core.errors import ConfigError, GalleryError, ModelError
from face_id_ros.core.gallery import Gallery, GallerySnapshot
from face_id_ros.core.matching import best_first, match, resolve_threshold, UNKNOWN
from face_id_ros.core.pipeline import Pipeline
import numpy as np
import pytest

SIZE = 64
MODEL = 'test-model/1'
THRESHOLD = 0.5


def unit(vectors):
    """Return L2-normalised rows."""
    vectors = np.atleast_2d(vectors)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def around(centre, count, noise, rng):
    """Return ``count`` unit vectors near ``centre`` (cosine to it falls as noise grows)."""
    return unit(centre + noise * rng.normal(size=(count, SIZE)) / np.sqrt(SIZE))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def centres(rng):
    """Five well-separated patients and two near-twins (P-0005 and P-0006)."""
    base = unit(rng.normal(size=(5, SIZE)))
    twin = unit(base[4] + 0.05 * rng.normal(size=SIZE) / np.sqrt(SIZE))
    return np.vstack([base, twin])


@pytest.fixture
def snapshot(tmp_path, centres, rng):
    with Gallery.open(tmp_path / 'gallery.db', MODEL, SIZE) as gallery:
        for index, centre in enumerate(centres):
            gallery.add_templates(f'P-{index:04d}', around(centre, 4, 0.3, rng),
                                  ['enrol.jpg'] * 4, [0.9] * 4)
        return gallery.snapshot()


def test_enrolled_faces_are_named_with_sorted_candidates(snapshot, centres, rng):
    probes = np.vstack([around(centre, 1, 0.3, rng) for centre in centres[:4]])
    matches = match(probes, snapshot, MatcherConfig(top_k=3), THRESHOLD)
    assert [face.decision for face in matches] == ['P-0000', 'P-0001', 'P-0002', 'P-0003']
    for face in matches:
        assert len(face.candidates) == 3
        cosines = [candidate.cosine for candidate in face.candidates]
        assert cosines == sorted(cosines, reverse=True)
        assert face.candidates[0].patient_id == face.decision
        for candidate in face.candidates:
            assert 0.0 <= candidate.score <= 1.0
            # One scale: the score is the cosine the threshold is in, clipped at 0.
            assert candidate.score == pytest.approx(max(candidate.cosine, 0.0))
        assert face.best_score == face.candidates[0].score


def test_patient_similarity_is_the_best_of_their_templates(snapshot):
    probe = snapshot.templates[5]
    [face] = match(probe[None], snapshot, MatcherConfig(top_k=1), THRESHOLD)
    owner = snapshot.patient_ids[snapshot.owners[5]]
    assert face.candidates[0].patient_id == owner
    assert face.candidates[0].cosine == pytest.approx(1.0, abs=1e-5)


def test_stranger_below_threshold_is_unknown(snapshot, rng):
    stranger = unit(rng.normal(size=SIZE))
    [face] = match(stranger, snapshot, MatcherConfig(), THRESHOLD)
    assert face.decision == UNKNOWN
    assert face.candidates[0].cosine < THRESHOLD
    assert len(face.candidates) == 3


def test_near_twins_within_the_margin_are_unknown(snapshot, centres, rng):
    probe = unit(centres[4] + centres[5])
    [face] = match(probe, snapshot, MatcherConfig(margin=0.1), THRESHOLD)
    best, runner_up = face.candidates[:2]
    assert {best.patient_id, runner_up.patient_id} == {'P-0004', 'P-0005'}
    assert best.cosine >= THRESHOLD and best.cosine - runner_up.cosine < 0.1
    assert face.decision == UNKNOWN


def test_margin_zero_still_needs_a_strict_lead(snapshot):
    template = snapshot.templates[0]
    identical_twins = GallerySnapshot(0, np.array(['P-0001', 'P-0002']),
                                      np.vstack([template, template]), np.array([0, 1]))
    [face] = match(template[None], identical_twins, MatcherConfig(margin=0.0), THRESHOLD)
    assert face.candidates[0].cosine == face.candidates[1].cosine
    assert face.decision == UNKNOWN


def test_single_patient_gallery_needs_only_the_threshold(tmp_path, centres, rng):
    with Gallery.open(tmp_path / 'one.db', MODEL, SIZE) as gallery:
        gallery.add_templates('P-0042', around(centres[0], 2, 0.3, rng), ['a', 'b'], [1, 1])
        snapshot = gallery.snapshot()
    probes = np.vstack([around(centres[0], 1, 0.3, rng), unit(rng.normal(size=SIZE))])
    near, far = match(probes, snapshot, MatcherConfig(margin=0.5), THRESHOLD)
    assert near.decision == 'P-0042' and far.decision == UNKNOWN


def test_empty_gallery_and_no_faces(tmp_path, rng):
    with Gallery.open(tmp_path / 'empty.db', MODEL, SIZE) as gallery:
        empty = gallery.snapshot()
    faces = match(unit(rng.normal(size=(2, SIZE))), empty, MatcherConfig(), THRESHOLD)
    assert [(face.decision, face.candidates) for face in faces] == [(UNKNOWN, ())] * 2
    assert faces[0].best_score is None
    assert match(np.zeros((0, SIZE)), empty, MatcherConfig(), THRESHOLD) == []


def test_unusable_embeddings_match_nobody(snapshot, centres):
    probes = np.vstack([np.full(SIZE, np.nan), np.zeros(SIZE), centres[0]])
    broken, blank, good = match(probes, snapshot, MatcherConfig(), THRESHOLD)
    assert broken.decision == UNKNOWN and broken.candidates == ()
    assert blank.decision == UNKNOWN and blank.candidates == ()
    assert good.decision == 'P-0000'


def test_unnormalised_probes_give_cosines(snapshot, centres):
    [scaled] = match(7.5 * centres[1][None], snapshot, MatcherConfig(), THRESHOLD)
    [plain] = match(centres[1][None], snapshot, MatcherConfig(), THRESHOLD)
    assert scaled.candidates[0].cosine == pytest.approx(plain.candidates[0].cosine, abs=1e-6)


def test_wrong_embedding_size_and_unresolved_threshold_are_refused(snapshot, rng):
    with pytest.raises(GalleryError, match='size 64'):
        match(rng.normal(size=(1, 128)), snapshot, MatcherConfig(), THRESHOLD)
    for unresolved in (MatcherConfig().threshold, -0.5, 1.5):
        with pytest.raises(ConfigError, match='not a cosine in'):
            match(unit(rng.normal(size=SIZE)), snapshot, MatcherConfig(), unresolved)


def test_a_threshold_is_auto_or_a_cosine_not_below_the_models_unless_allowed():
    assert resolve_threshold(MatcherConfig(), 0.533) == (0.533, None)
    assert resolve_threshold(MatcherConfig(threshold=0.6), 0.533) == (0.6, None)
    with pytest.raises(ConfigError, match="below the model's recommended 0.533"):
        resolve_threshold(MatcherConfig(threshold=0.3), 0.533)
    threshold, warning = resolve_threshold(
        MatcherConfig(threshold=0.3, allow_below_model_threshold=True), 0.533)
    assert threshold == 0.3 and '0.3' in warning and '0.533' in warning
    with pytest.raises(ModelError, match='outside'):
        resolve_threshold(MatcherConfig(), -0.2)


@pytest.mark.parametrize('value, fragment', [
    (-2.0, 'below the minimum 0.0'),  # the old "model's recommendation" sentinel
    (-0.5, 'below the minimum 0.0'), (-1.0, 'below the minimum 0.0'),
    (1.5, 'above the maximum 1.0'), ('automatic', 'neither a number nor one of'),
    (True, 'expected a number'), (None, 'expected a number'), ([0.5], 'expected a number'),
])
def test_a_fat_fingered_threshold_is_refused(value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        PipelineConfig.from_dict({'matcher': {'threshold': value}})


def test_the_pipeline_refuses_a_low_threshold_and_warns_every_start_when_allowed(
        tiny_model, caplog):
    config = PipelineConfig().replace(embedder={'model': str(tiny_model)})
    assert Pipeline(config).threshold == 0.9  # auto: the tiny model's metadata
    with pytest.raises(ConfigError, match="below the model's recommended 0.9"):
        Pipeline(config.replace(matcher={'threshold': 0.5}))
    allowed = config.replace(matcher={'threshold': 0.5, 'allow_below_model_threshold': True})
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger='face_id_ros'):
            assert Pipeline(allowed).threshold == 0.5
        assert "matcher.threshold 0.5 is below the model's recommended 0.9" in caplog.text


def test_best_first_picks_and_orders_as_a_stable_sort_ties_included():
    """The top candidates of 10,000 patients without sorting them all: same ids, same order."""
    random = np.random.default_rng(3)
    for _ in range(500):
        patients, count = int(random.integers(1, 30)), int(random.integers(1, 6))
        # Few distinct values: ties at the best, the runner-up and the cut.
        scores = random.integers(0, 4, size=(3, patients)).astype(np.float32) / 4
        expected = np.argsort(-scores, axis=1, kind='stable')[:, :count]
        assert np.array_equal(best_first(scores, count), expected)
    scores = random.normal(size=(2, 10000)).astype(np.float32)
    assert np.array_equal(best_first(scores, 3),
                          np.argsort(-scores, axis=1, kind='stable')[:, :3])
