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
Re-embedding confirmed faces only when needed, without losing safety (fail closed).

The policy tests drive the tracker as the pipeline does (plan, embed what it asks for,
update); the swap tests run the real pipeline and the shipped model on real faces.
"""

from conftest import LFW_DIR
from face_id_ros.cli.parser import main
from face_id_ros.core.appearance import same_look, signatures
from face_id_ros.core.config import PipelineConfig, TrackerConfig
from face_id_ros.core.errors import ConfigError
from face_id_ros.core.gallery import GallerySnapshot
from face_id_ros.core.image_files import read_image
from face_id_ros.core.matching import Candidate, FaceMatch, UNKNOWN
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.tracking import CONFIRMED, FaceTracker, judge_still
from face_id_ros.evaluation.soak import face_tiles
import numpy as np
import pytest

FPS = 30.0
CONFIG = TrackerConfig(iou_threshold=0.3, window=5, confirm_frames=3, max_gap_s=0.5,
                       recheck_period_s=0.5, recheck_min_iou=0.6,
                       recheck_landmark_shift=0.06)
# Five landmarks in box widths: eyes, nose, mouth corners.
SHAPE = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
# An appearance signature (core.appearance): a 16x16 grey thumbnail; ANOTHER_LOOK is another
# face's (uncorrelated with it).
LOOK_PIXELS = np.random.default_rng(1).integers(0, 256, (16, 16), np.uint8)
LOOK, ANOTHER_LOOK = signatures([
    LOOK_PIXELS, np.random.default_rng(2).integers(0, 256, (16, 16), np.uint8)])


def decided(decision, cosine=0.7):
    """Return a FaceMatch deciding ``decision`` with a plausible candidate list."""
    best = 'P-0001' if decision == UNKNOWN else decision
    return FaceMatch(decision, (Candidate(best, cosine, cosine),))


class Camera:
    """Feed one face through a tracker as the pipeline does; count the embeddings."""

    def __init__(self, config=CONFIG):
        self.tracker = FaceTracker(config)
        self.frame, self.embedded, self.revision = 0, 0, 1

    def show(self, decision, x=100.0, size=80.0, shape=SHAPE, look=LOOK):
        """One frame: the face at ``x``; ``decision`` is what an embedding would say."""
        stamp = self.frame / FPS
        box = np.array([[x, 100.0, x + size, 100.0 + size]])
        landmarks = [box[0, :2] + shape * size]
        plan = self.tracker.plan(stamp, box, landmarks, self.revision,
                                 None if look is None else [look])
        matches = [decided(decision) if plan.fresh[0] else None]
        self.embedded += int(plan.fresh[0])
        [face] = self.tracker.update(stamp, box, matches, plan=plan)
        self.frame += 1
        return face


def test_a_confirmed_unchanged_face_is_embedded_once_per_recheck_period():
    camera = Camera()
    faces = [camera.show('P-0001') for _ in range(3 + 60)]  # confirmed, then two seconds
    assert [face.status for face in faces[2:]] == [CONFIRMED] * 61
    assert [face.fresh for face in faces[:3]] == [True] * 3
    # Frame 2 confirmed; frames 17, 32, 47, 62 are its re-checks (15 frames = 0.5 s).
    assert [index for index, face in enumerate(faces) if face.fresh] == [0, 1, 2, 17, 32, 47,
                                                                         62]
    assert camera.embedded == 7


def test_a_carried_frame_says_which_embedding_its_evidence_came_from():
    camera = Camera()
    faces = [camera.show('P-0001') for _ in range(5)]
    carried = faces[4]
    assert not carried.fresh and carried.patient_id == 'P-0001'
    latest = carried.evidence[-1]
    assert (latest.stamp, latest.embedded_at, latest.fresh) == (4 / FPS, 2 / FPS, False)
    assert latest.score == pytest.approx(0.7)  # the embedding's score, not a new one
    assert carried.candidates == faces[2].candidates
    assert [item.fresh for item in carried.evidence] == [True, True, True, False, False]


def test_faces_not_confirmed_are_embedded_every_frame():
    camera = Camera()
    faces = [camera.show(UNKNOWN) for _ in range(20)]
    assert all(face.fresh for face in faces) and camera.embedded == 20
    assert faces[-1].status == UNKNOWN


@pytest.mark.parametrize('change', ['box jump', 'box resize', 'landmarks', 'gallery', 'look',
                                    'no look'])
def test_a_face_that_may_have_changed_is_embedded_at_once(change):
    camera = Camera()
    for _ in range(5):
        camera.show('P-0001')
    assert not camera.show('P-0001').fresh
    if change == 'box jump':
        face = camera.show('P-0001', x=140.0)
    elif change == 'box resize':
        face = camera.show('P-0001', size=120.0)
    elif change == 'landmarks':
        moved = SHAPE.copy()
        moved[4, 0] += 0.08  # one mouth corner
        face = camera.show('P-0001', shape=moved)
    elif change == 'look':  # same box, same landmarks, another face
        face = camera.show('P-0001', look=ANOTHER_LOOK)
    elif change == 'no look':  # nothing to compare with: fail closed
        face = camera.show('P-0001', look=None)
    else:
        camera.revision += 1
        face = camera.show('P-0001')
    assert face.fresh and face.status == CONFIRMED


def test_a_small_movement_is_not_a_change():
    camera = Camera()
    noise = np.random.default_rng(3)
    faces = [camera.show('P-0001', x=100.0 + 2.0 * index, shape=SHAPE + 0.01 * (index % 2),
                         look=signatures([np.clip(LOOK_PIXELS + noise.normal(0, 8, (16, 16)),
                                                  0, 255).astype(np.uint8)])[0])
             for index in range(10)]
    assert [face.fresh for face in faces[3:]] == [False] * 7


def test_a_disagreeing_recheck_drops_the_confirmation_and_the_carried_evidence():
    camera = Camera()
    for _ in range(10):
        camera.show('P-0001')
    # Someone else's face in the same box: only the re-check can notice.
    faces = [camera.show('P-0002') for _ in range(20)]
    first_fresh = next(index for index, face in enumerate(faces) if face.fresh)
    assert first_fresh < 0.5 * FPS  # noticed within the re-check period
    assert all(face.patient_id == 'P-0001' for face in faces[:first_fresh])
    noticed = faces[first_fresh]
    assert noticed.status != CONFIRMED and noticed.patient_id is None
    assert all(item.fresh for item in noticed.evidence)
    after = faces[first_fresh:]
    assert all(face.fresh for face in after[:3])  # not confirmed: embedded every frame
    assert [face.patient_id for face in after[:2]] == [None, None]
    confirmed_b = next(index for index, face in enumerate(after) if face.status == CONFIRMED)
    assert after[confirmed_b].patient_id == 'P-0002'
    fresh_b = [item for item in after[confirmed_b].evidence
               if item.fresh and item.decision == 'P-0002']
    assert len(fresh_b) >= CONFIG.confirm_frames
    assert all(item.decision == 'P-0002' for item in after[confirmed_b].evidence)


def test_a_recheck_that_sees_nobody_it_knows_drops_the_confirmation():
    camera = Camera()
    for _ in range(17):
        camera.show('P-0001')
    face = camera.show(UNKNOWN)  # frame 17: the re-check
    assert face.fresh and face.status != CONFIRMED
    # The carried frames filled the window; they leave it with the confirmation.
    assert [item.decision for item in face.evidence] == [UNKNOWN]
    # One fresh agreeing frame is not enough to confirm again.
    assert camera.show('P-0001').status != CONFIRMED


def test_a_zero_recheck_period_embeds_every_face_every_frame():
    camera = Camera(TrackerConfig(recheck_period_s=0.0))
    faces = [camera.show('P-0001') for _ in range(20)]
    assert all(face.fresh for face in faces) and faces[-1].status == CONFIRMED


def test_the_plan_is_enforced():
    with pytest.raises(ConfigError, match='recheck_period_s'):
        FaceTracker(TrackerConfig(recheck_period_s=0.6, max_gap_s=0.5))
    tracker = FaceTracker(CONFIG)
    plan = tracker.plan(0.0, [[0, 0, 80, 80]], [SHAPE * 80], 1)
    with pytest.raises(ValueError, match='needs a fresh embedding'):
        tracker.update(0.0, [[0, 0, 80, 80]], [None], plan=plan)
    with pytest.raises(ValueError, match='another frame'):
        tracker.update(1.0, [[0, 0, 80, 80]], [decided(UNKNOWN)], plan=plan)


# The real pipeline, the shipped model and real faces.

def portrait_frame(tile, size=(640, 480), x0=220, y0=140):
    """Return a frame with ``tile`` pasted at (x0, y0), always in the same place."""
    frame = np.full((size[1], size[0], 3), 96, np.uint8)
    frame[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] = tile
    return frame


@pytest.fixture(scope='module')
def two_people(portrait):
    """Return tiles of the portrait and an LFW person, and a snapshot enrolling both."""
    if not LFW_DIR.is_dir():
        pytest.skip('../shared/data LFW is absent')
    pipeline = Pipeline(PipelineConfig())
    stranger = read_image(sorted((LFW_DIR / 'images' / 'Aaron_Eckhart').glob('*.jpg'))[0])
    tiles = face_tiles(pipeline.detector, [portrait, stranger], 200)
    embeddings = np.concatenate([pipeline.describe(portrait_frame(tile)).embeddings
                                 for tile in tiles])
    snapshot = GallerySnapshot(revision=1, patient_ids=np.array(['P-0001', 'P-0002']),
                               templates=embeddings, owners=np.arange(2))
    return tiles, snapshot


# With the box and landmark checks switched off, only the re-check period can notice.
@pytest.mark.parametrize('checks', [{}, {'recheck_min_iou': 0.0, 'recheck_landmark_shift': 1.0}],
                         ids=['every check', 'period only'])
def test_a_patient_replaced_in_the_same_box_is_caught_within_the_recheck_period(two_people,
                                                                                checks):
    tiles, snapshot = two_people
    pipeline = Pipeline(PipelineConfig().replace(tracker=checks), snapshot)
    period = pipeline.config.tracker.recheck_period_s
    results = [pipeline.process(portrait_frame(tiles[0]), index / FPS) for index in range(20)]
    assert results[-1].faces[0].patient_id == 'P-0001'
    assert not all(result.faces[0].fresh for result in results)  # it did skip embeddings
    swapped = [pipeline.process(portrait_frame(tiles[1]), (20 + index) / FPS).faces[0]
               for index in range(30)]
    assert len({face.track_id for face in swapped}) == 1  # one track all along: same box
    first_fresh = next(index for index, face in enumerate(swapped) if face.fresh)
    assert first_fresh / FPS <= period
    assert swapped[first_fresh].patient_id is None
    assert all(face.patient_id != 'P-0001' for face in swapped[first_fresh:])
    confirmed_b = [index for index, face in enumerate(swapped) if face.patient_id == 'P-0002']
    assert confirmed_b, 'the second person is confirmed afresh in the end'
    fresh_since_swap = sum(face.fresh for face in swapped[first_fresh:confirmed_b[0] + 1])
    assert fresh_since_swap >= pipeline.config.tracker.confirm_frames


def shaken(image, rng):
    """Return the photo moved, turned, scaled, re-lit, noised and JPEG-compressed a little."""
    import cv2
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-3, 3),
                                     rng.uniform(0.95, 1.05))
    matrix[:, 2] += rng.uniform(-5, 5, 2)
    moved = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    lit = moved.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.normal(0, 3, moved.shape)
    ok, data = cv2.imencode('.jpg', np.clip(lit, 0, 255).astype(np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def test_the_look_tells_the_same_face_from_another_in_its_place(portrait):
    if not LFW_DIR.is_dir():
        pytest.skip('../shared/data LFW is absent')
    pipeline = Pipeline(PipelineConfig())
    threshold = pipeline.config.tracker.recheck_min_look
    people = sorted((LFW_DIR / 'images').iterdir())[:40]
    photos = [read_image(sorted(person.glob('*.jpg'))[0]) for person in people]

    def look(image):
        return pipeline.describe(image).looks[0]

    rng = np.random.default_rng(0)
    for photo in photos[:5]:  # the same face, a little changed: no re-embedding
        reference = look(photo)
        assert min(same_look(reference, look(shaken(photo, rng))) for _ in range(4)) \
            >= threshold
    for first, second in zip(photos[:20], photos[20:]):  # another face: re-embed
        assert same_look(look(first), look(second)) < threshold
    [flat] = signatures([np.full((16, 16), 128, np.uint8)])
    assert flat is None and same_look(flat, LOOK) == 0.0


def test_a_photo_is_judged_alone_and_a_masked_face_against_bare_templates_stays_pending():
    named = FaceMatch('P-0001', (Candidate('P-0001', 0.8, 0.8),))
    assert judge_still('still-1', named).status == CONFIRMED
    assert judge_still('still-1', named).patient_id == 'P-0001'
    assert judge_still('still-1', decided(UNKNOWN)).status == UNKNOWN
    bare_only = FaceMatch('P-0001', (Candidate('P-0001', 0.8, 0.8),), like_templates=False)
    masked = judge_still('still-1', bare_only, (0.97, True))
    assert (masked.status, masked.patient_id, masked.masked) == ('pending', None, True)
    assert judge_still('still-1', bare_only, (0.02, False)).status == CONFIRMED


def test_bench_enrols_the_faces_shown_so_they_are_confirmed(tiny_model, capsys):
    assert main(['bench', '--faces', '1', '--enrol', '--frames', '20',
                 '--model', str(tiny_model)]) == 0
    output = capsys.readouterr().out
    assert 'confirmed faces per timed frame: median 1 of 1' in output


def test_a_moving_patient_in_changing_light_stays_confirmed_frame_after_frame(portrait):
    """The demo's clip: BlazeFace's landmarks jitter, so the look changes; she stays named."""
    from face_id_ros.evaluation.samples import compose_frame
    pipeline = Pipeline(PipelineConfig())
    sample = pipeline.describe(compose_frame(portrait, (640, 480), [(220, 250)], 260))
    pipeline.set_gallery(GallerySnapshot(revision=1, patient_ids=np.array(['P-0001']),
                                         templates=sample.embeddings, owners=np.arange(1)))
    faces = []
    for index in range(30):
        phase = index / 29
        frame = compose_frame(portrait, (640, 480), [(220 + 200 * phase, 250)],
                              face_width=260 + 80 * phase, brightness=0.7 + 0.5 * phase)
        faces.append(pipeline.process(frame, index / FPS).faces[0])
    first = next(index for index, face in enumerate(faces) if face.status == CONFIRMED)
    assert first <= 3
    assert all(face.patient_id == 'P-0001' for face in faces[first:])
    assert sum(face.fresh for face in faces[first:]) >= 5  # the look forced re-checks
