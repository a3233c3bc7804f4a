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

"""Masks: painted from landmarks, told by the shipped model, used by matching and tracking."""

import dataclasses
import math

from conftest import LFW_DIR
from face_id_ros.core.config import MatcherConfig, PipelineConfig, TrackerConfig
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.gallery import GallerySnapshot
from face_id_ros.core.image_files import read_image
from face_id_ros.core.matching import FaceMatch, match
from face_id_ros.core.patient_id import MASK, mask_detections, NO_MASK, UNKNOWN
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.tracking import CONFIRMED, FaceTracker, PENDING
from face_id_ros.evaluation.synthetic_masks import paint_mask_on_face
import numpy as np
import pytest


@pytest.fixture(scope='module')
def pipeline():
    """Return the shipped pipeline: default detector, the model file in models/."""
    return Pipeline(PipelineConfig())


@pytest.fixture(scope='module')
def hopper(pipeline, portrait):
    """Return the sample portrait, its detected face, and the same photo masked."""
    face = pipeline.detector.detect(portrait)[0]
    return portrait, face, paint_mask_on_face(portrait, face, np.random.default_rng(3))


def test_a_mask_covers_nose_mouth_and_chin_and_leaves_the_eyes(hopper):
    image, face, masked = hopper
    landmarks = face.landmarks
    changed = np.abs(masked.astype(int) - image.astype(int)).sum(axis=2) > 30
    right_eye, left_eye, nose, mouth = np.round(landmarks).astype(int)  # BlazeFace's four
    for x, y in (mouth, (nose + mouth) // 2, mouth + (mouth - nose) // 2):
        assert changed[y, x]
    for x, y in (right_eye, left_eye):
        assert not changed[y - 3:y + 4, x - 3:x + 4].any()
    eye_gap = np.linalg.norm(left_eye - right_eye)
    rows, columns = np.nonzero(changed)
    assert columns.max() - columns.min() > 1.5 * eye_gap  # cheek to cheek, not a patch
    assert rows.min() > min(right_eye[1], left_eye[1])


def test_a_mask_follows_the_face_it_is_painted_on(hopper):
    image, face, _ = hopper
    shift = np.array([40.0, -25.0])
    moved = np.roll(image, (-25, 40), axis=(0, 1))
    moved_face = dataclasses.replace(face, landmarks=face.landmarks + shift)
    first = paint_mask_on_face(image, face, np.random.default_rng(5))
    second = paint_mask_on_face(moved, moved_face, np.random.default_rng(5))
    inner = (slice(60, -60), slice(60, -60))
    assert np.abs(np.roll(first, (-25, 40), axis=(0, 1))[inner].astype(int)
                  - second[inner].astype(int)).max() <= 2


def test_the_shipped_model_tells_a_masked_face_from_a_bare_one(pipeline, hopper):
    image, _, masked = hopper
    assert pipeline.embedder.has_mask_output
    threshold = pipeline.embedder.metadata.mask_threshold
    bare = pipeline.describe(image)
    covered = pipeline.describe(masked)
    assert bare.mask_probabilities[0] < threshold < covered.mask_probabilities[0]
    assert bare.masks(threshold)[0][1] is False and covered.masks(threshold)[0][1] is True


def test_a_model_without_a_mask_output_says_unknown(tiny_model, portrait):
    embedder = OnnxEmbedder(tiny_model)
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    embeddings, masks = embedder.embed_and_mask(crops)
    assert not embedder.has_mask_output and embeddings.shape == (2, 16)
    assert np.isnan(masks).all()


def test_frames_report_the_mask_on_its_own_and_patient_id_stays_as_it_was(pipeline, hopper):
    image, _, masked = hopper
    pipeline.tracker.reset()
    bare_result = pipeline.process(image, 0.0)
    masked_result = pipeline.process(masked, 0.1)
    assert [item.hypotheses[0].class_id for item in mask_detections(bare_result)] == [NO_MASK]
    detection = mask_detections(masked_result)[0]
    assert detection.hypotheses[0].class_id == MASK
    assert detection.hypotheses[0].score == pytest.approx(
        masked_result.faces[0].mask_probability)
    assert detection.track_id == masked_result.faces[0].track_id


def unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def snapshot_of(templates, owners, masked, patients=('P-0001', 'P-0002')):
    return GallerySnapshot(1, np.array(patients), unit(templates), np.array(owners),
                           np.array(masked, bool))


def test_a_masked_face_is_compared_with_the_patients_masked_templates():
    # P-0001: a bare template close to the probe and a masked one further off.
    snapshot = snapshot_of([[1, 0.1, 0], [0.8, 0.6, 0], [0, 1, 0.2]], [0, 0, 1],
                           [False, True, False])
    probe = unit([[1, 0.12, 0]])
    config = MatcherConfig(top_k=2)
    unknown_kind = match(probe, snapshot, config, 0.5, masked_threshold=0.5)[0]
    as_masked = match(probe, snapshot, config, 0.5, masked=[True], masked_threshold=0.5)[0]
    as_bare = match(probe, snapshot, config, 0.5, masked=[False], masked_threshold=0.5)[0]
    bare_cosine = float(probe[0] @ snapshot.templates[0])
    masked_cosine = float(probe[0] @ snapshot.templates[1])
    assert unknown_kind.candidates[0].cosine == pytest.approx(bare_cosine)
    assert as_bare.candidates[0].cosine == pytest.approx(bare_cosine)
    assert as_masked.candidates[0].cosine == pytest.approx(masked_cosine)
    assert as_masked.like_templates and as_bare.like_templates


def test_a_masked_face_of_a_patient_without_masked_templates_uses_the_bare_ones():
    snapshot = snapshot_of([[1, 0, 0], [0, 1, 0]], [0, 1], [False, False])
    result = match(unit([[1, 0.05, 0]]), snapshot, MatcherConfig(), 0.5, masked=[True])[0]
    assert result.decision == 'P-0001' and not result.like_templates


def test_a_masked_template_names_only_above_the_masked_threshold():
    # P-0001's only template is masked; the probe's cosine to it (0.6) lies between the
    # bare threshold and the masked one.
    snapshot = snapshot_of([[1, 0, 0], [0, 1, 0]], [0, 1], [True, False])
    probe = unit([[0.6, 0, 0.8]])
    config = MatcherConfig()
    for masked in (None, [True], [False]):
        assert match(probe, snapshot, config, 0.5, masked, 0.7)[0].decision == 'unknown'
    named = match(probe, snapshot, config, 0.5, [True], 0.55)[0]
    assert named.decision == 'P-0001'
    # Reported on the scale it was judged on: lowered by the gap between the thresholds.
    assert named.candidates[0].cosine == pytest.approx(0.6 - 0.05)


def test_without_a_masked_threshold_masked_templates_name_nobody():
    # P-0001: a masked template the probe equals and a bare one; P-0002: a bare one.
    snapshot = snapshot_of([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 1],
                           [True, False, False])
    for masked in (None, [True], [False]):
        assert match(unit([[1, 0, 0]]), snapshot, MatcherConfig(), 0.5,
                     masked)[0].decision == 'unknown'
    # The bare template still names the patient, a masked face on weaker evidence.
    by_bare = match(unit([[0, 1, 0.1]]), snapshot, MatcherConfig(), 0.5, [True])[0]
    assert by_bare.decision == 'P-0001' and not by_bare.like_templates


def test_the_masked_threshold_keeps_its_gap_to_a_raised_threshold():
    from face_id_ros.core.matching import resolve_masked_threshold
    from face_id_ros.core.model_metadata import ModelMetadata
    model = ModelMetadata('m', '1', 8, cosine_threshold=0.53, masked_cosine_threshold=0.65)
    assert resolve_masked_threshold(0.53, model) == pytest.approx(0.65)
    assert resolve_masked_threshold(0.6, model) == pytest.approx(0.72)
    assert resolve_masked_threshold(0.95, model) == 1.0
    assert resolve_masked_threshold(0.53, dataclasses.replace(
        model, masked_cosine_threshold=None)) is None


@pytest.mark.skipif(not LFW_DIR.is_dir(), reason='../shared LFW is absent')
def test_masked_strangers_are_not_named_from_masked_patients_like_them(pipeline):
    # The attack: 150 LFW people, each photographed masked twice (two masks). Every pair of
    # different people whose masked faces are as alike as the bare threshold asks: one is
    # enrolled bare and masked, as the ward enrols, the other comes masked to the robot.
    # About 21,000 masked pairs, and none may get through.
    people = sorted(path for path in (LFW_DIR / 'images').iterdir() if path.is_dir())[:150]
    rng = np.random.default_rng(0)
    bare, enrolled, probes, visiting = [], [], [], []
    for person in people:
        image = read_image(sorted(person.iterdir())[0])
        detected = pipeline.detector.detect(image)
        if not detected:
            continue
        views = [image] + [paint_mask_on_face(image, detected[0], rng) for _ in range(2)]
        embedded = [pipeline.describe(view).embeddings for view in views]
        if all(len(rows) for rows in embedded):
            for rows, found in zip(embedded, (bare, enrolled, probes)):
                found.append(rows[0])
            visiting.append(views[2])
    cosines = np.array(probes) @ np.array(enrolled).T
    np.fill_diagonal(cosines, -1.0)
    attacks = np.argwhere(cosines >= pipeline.threshold)
    assert len(attacks) >= 5  # against the bare threshold they would be named
    outcomes = []
    try:
        for stranger, patient in attacks:
            pipeline.set_gallery(GallerySnapshot(
                1, np.array(['P-0001']), np.array([bare[patient], enrolled[patient]]),
                np.array([0, 0]), np.array([False, True])))
            face = pipeline.identify_still(visiting[stranger]).faces[0]  # as embedded above
            outcomes.append((face.masked, face.status))
        patient_face = pipeline.identify_still(visiting[patient]).faces[0]
    finally:
        pipeline.set_gallery(GallerySnapshot.empty(pipeline.embedder.embedding_size))
    assert outcomes == [(True, 'unknown')] * len(attacks)
    # The patient, masked again, is found (named from a masked template above its threshold,
    # or pending on a bare one, as a photo of a masked face is): the gallery is not blind.
    assert patient_face.masked and patient_face.status != 'unknown'
    assert patient_face.candidates[0].patient_id == 'P-0001'


def masked_match(patient, like_templates):
    return FaceMatch(patient, (), like_templates)


@pytest.mark.parametrize('like_templates, frames_to_confirm', [(True, 3), (False, 5)])
def test_a_masked_face_needs_more_frames_without_masked_templates(like_templates,
                                                                  frames_to_confirm):
    tracker = FaceTracker(TrackerConfig(window=5, confirm_frames=3, masked_confirm_frames=5))
    box = [[10, 10, 60, 60]]
    statuses = []
    for frame in range(5):
        face = tracker.update(frame * 0.05, box, [masked_match('P-0001', like_templates)],
                              [(0.9, True)])[0]
        statuses.append(face.status)
    assert statuses.index(CONFIRMED) == frames_to_confirm - 1
    assert set(statuses[:frames_to_confirm - 1]) == {PENDING}
    assert face.masked is True and face.mask_probability == pytest.approx(0.9)


def test_a_bare_face_is_confirmed_as_before():
    tracker = FaceTracker(TrackerConfig(window=5, confirm_frames=3, masked_confirm_frames=5))
    faces = [tracker.update(frame * 0.05, [[10, 10, 60, 60]],
                            [masked_match('P-0001', False)], [(0.1, False)])[0]
             for frame in range(3)]
    assert faces[-1].status == CONFIRMED and faces[-1].masked is False


def test_a_tracked_face_of_a_model_without_masks_reports_unknown():
    tracker = FaceTracker(TrackerConfig())
    face = tracker.update(0.0, [[10, 10, 60, 60]], [FaceMatch(UNKNOWN)])[0]
    assert face.masked is None and math.isnan(face.mask_probability)


def test_enrolment_marks_a_masked_photo_masked(pipeline, hopper):
    from face_id_ros.core.quality import assess_photo
    image, _, masked = hopper
    quality = pipeline.config.quality
    assert assess_photo(image, pipeline, quality).masked is False
    assert assess_photo(masked, pipeline, quality).masked is True


def test_photos_can_be_aligned_masked_for_the_masked_pairs_protocol(pipeline, tmp_path,
                                                                    portrait):
    import cv2
    from face_id_ros.evaluation.benchmarks import align_photos
    path = tmp_path / 'hopper.png'
    assert cv2.imwrite(str(path), portrait)
    (bare,), bare_fallbacks = align_photos(pipeline, [path], 'bare')
    (masked,), masked_fallbacks = align_photos(pipeline, [path], 'masked', mask_seed=0)
    assert bare_fallbacks == masked_fallbacks == 0
    change = np.abs(masked.astype(int) - bare.astype(int)).mean(axis=(1, 2))
    # Re-detection on the masked photo moves the alignment a little: the eyes change too.
    assert change[85:105].mean() > 2 * change[20:45].mean()
    _, chances = pipeline.embedder.embed_and_mask(np.stack([bare, masked]))
    assert chances[0] < pipeline.embedder.metadata.mask_threshold < chances[1]
