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

"""Live-camera enrolment on real frames of the sample portrait, with a real ONNX embedder."""

from dataclasses import replace
import math
import re
import sqlite3

import cv2
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.errors import EnrolmentRejected, GalleryError
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import write_key_file
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.quality import assess_photo, shown_apart
from face_id_ros.evaluation.samples import compose_frame
from face_id_ros.nodes.enrolment_session import EnrolmentSession, erase_patient
import numpy as np
import pytest


@pytest.fixture(scope='module')
def pipeline(tiny_model):
    # Full range, as on the ward, so a distant face is found and refused as too small.
    return Pipeline(PipelineConfig().replace(embedder={'model': str(tiny_model)},
                                             detector={'blazeface_range': 'full'}))


def camera_frame(portrait, index, face_width=300):
    """Return a 640x480 frame of the portrait drifting a little, as a person standing still."""
    return compose_frame(portrait, (640, 480), [(300 + 6 * index, 240 + 3 * index)],
                         face_width, brightness=0.95 + 0.02 * (index % 3))


def open_gallery(path, pipeline, store_images=False):
    config = pipeline.config.gallery
    return Gallery.open(path, pipeline.embedder.fingerprint, pipeline.embedder.embedding_size,
                        id_pattern=config.id_pattern, store_images=store_images)


def filled_session(pipeline, portrait, keep=2):
    session = EnrolmentSession(pipeline, pipeline.config.quality, keep=keep, candidates=4)
    for index in range(4):
        assert session.offer(camera_frame(portrait, index), index * 0.5).accepted
    return session


def test_the_operator_is_told_what_the_session_waits_for(pipeline, portrait):
    session = EnrolmentSession(pipeline, pipeline.config.quality, keep=2, candidates=3)
    reasons = [
        session.offer(np.full((480, 640, 3), 96, np.uint8), 0.0).reason,
        session.offer(compose_frame(portrait, (640, 480), [(160, 240), (480, 240)], 300),
                      0.1).reason,
        session.offer(camera_frame(portrait, 0, face_width=170), 0.2).reason,
        session.offer(cv2.GaussianBlur(camera_frame(portrait, 0), (0, 0), 6), 0.3).reason,
    ]
    assert reasons[0] == 'no face found'
    assert reasons[1].startswith('2 faces found')
    assert reasons[2].startswith('face too small')
    assert reasons[3].startswith('face too blurred')
    assert session.samples == [] and not session.enough


NUMBER = r'(\d+(?:\.\d+)?)'


def test_a_refusal_never_shows_the_value_equal_to_what_it_needs(pipeline, portrait):
    frame = camera_frame(portrait, 0)
    quality = pipeline.config.quality
    sample = assess_photo(frame, pipeline, quality)
    face = pipeline.describe(frame).faces[0]
    # Gates set just above this very face: the exact values decide, the message tells.
    refusals = {
        'face detected with low confidence': replace(quality, min_score=face.score + 1e-4),
        'face too small:': replace(quality, min_face_size=math.floor(face.size) + 1),
        'face too blurred: sharpness': replace(quality, min_sharpness=sample.sharpness + 1e-3),
    }
    for start, gate in refusals.items():
        with pytest.raises(EnrolmentRejected) as refusal:
            assess_photo(frame, pipeline, gate)
        message = str(refusal.value)
        assert message.startswith(start)
        shown, needed = re.search(NUMBER + r'(?: px)? \(needs ' + NUMBER, message).groups()
        assert float(shown) < float(needed), message


def test_shown_apart_adds_decimals_only_where_rounding_hides_the_difference():
    assert shown_apart(0.7996, 0.8) == ('0.7996', '0.8000')
    assert shown_apart(0.62, 0.8) == ('0.62', '0.80')
    assert shown_apart(79.6, 80, 0) == ('79.6', '80.0')
    assert shown_apart(61.0, 80, 0) == ('61', '80')


def test_accepted_frames_are_spaced_and_the_best_are_kept(pipeline, portrait):
    session = EnrolmentSession(pipeline, pipeline.config.quality, keep=2, candidates=3,
                               min_interval_s=0.3)
    verdicts = [session.offer(camera_frame(portrait, index), stamp)
                for index, stamp in enumerate((0.0, 0.1, 0.4, 0.5, 0.8, 1.2))]
    assert [verdict.accepted for verdict in verdicts] == [True, False, True, False, True,
                                                          False]
    assert verdicts[1].reason == 'waiting between frames'
    assert verdicts[4].accepted_frames == verdicts[4].needed_frames == 3
    assert verdicts[5].reason == 'already done' and session.done
    best = session.best()
    assert len(best) == 2
    assert best[0].quality >= best[1].quality >= min(s.quality for s in session.samples)


def test_a_different_face_cannot_join_a_session(pipeline, portrait):
    session = EnrolmentSession(pipeline, pipeline.config.quality, keep=2)
    assert session.offer(camera_frame(portrait, 0), 0.0).accepted
    # The tiny test embedder is no face model: to it the mirrored portrait is someone else.
    verdict = session.offer(camera_frame(portrait[:, ::-1].copy(), 0), 1.0)
    assert not verdict.accepted
    assert verdict.reason.startswith('this face differs from the first accepted one')


def test_written_templates_identify_the_patient(pipeline, portrait, tmp_path):
    session = filled_session(pipeline, portrait)
    with open_gallery(tmp_path / 'g.db', pipeline) as gallery:
        assert session.write(gallery, 'P-0042', source='camera /cam') == 1
        [record] = gallery.list_patients()
        snapshot = gallery.snapshot()
    assert (record.patient_id, record.template_count) == ('P-0042', 2)
    live = Pipeline(pipeline.config, snapshot)
    statuses = [live.process(camera_frame(portrait, index), index / 15.0).faces[0]
                for index in range(3)]
    assert [(face.status, face.patient_id) for face in statuses] == [
        ('pending', None), ('pending', None), ('confirmed', 'P-0042')]


def test_nothing_is_written_without_enough_frames(pipeline, portrait, tmp_path):
    session = EnrolmentSession(pipeline, pipeline.config.quality, keep=3)
    session.offer(camera_frame(portrait, 0), 0.0)
    with open_gallery(tmp_path / 'g.db', pipeline) as gallery:
        with pytest.raises(EnrolmentRejected, match='only 1 of 3 frames'):
            session.write(gallery, 'P-0042')
        assert gallery.revision == 0


def test_one_face_is_never_enrolled_under_two_ids(pipeline, portrait, tmp_path):
    with open_gallery(tmp_path / 'g.db', pipeline) as gallery:
        filled_session(pipeline, portrait).write(gallery, 'P-0001')
        again = filled_session(pipeline, portrait)
        with pytest.raises(EnrolmentRejected, match='already matches enrolled patient P-0001'):
            again.write(gallery, 'P-0002')
        assert again.write(gallery, 'P-0001', replace=True) == 2  # re-enrolling is fine
        assert [(r.patient_id, r.template_count) for r in gallery.list_patients()] == [
            ('P-0001', 2)]
        with pytest.raises(EnrolmentRejected, match='pseudonymous'):
            filled_session(pipeline, portrait).write(gallery, 'Grace Hopper')


def test_face_crops_are_stored_as_png_only_when_asked(pipeline, portrait, tmp_path):
    for store_images in (False, True):
        path = tmp_path / f'store_{store_images}.db'
        with open_gallery(path, pipeline, store_images=store_images) as gallery:
            filled_session(pipeline, portrait).write(gallery, 'P-0042')
        with sqlite3.connect(path) as database:
            images = [row[0] for row in database.execute('SELECT image FROM templates')]
        if store_images:
            decoded = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR)
            assert decoded.shape == (112, 112, 3)
        else:
            assert images == [None, None]


def test_an_erased_patient_is_no_longer_matched_after_the_reload(pipeline, portrait, tmp_path):
    """What ``enroll --erase`` does, then the face_id_node's reload (FrameWorker's)."""
    live = Pipeline(pipeline.config.replace(gallery={
        'path': str(tmp_path / 'ward.db'), 'key_file': write_key_file(tmp_path / 'ward.key')}))
    config = live.config.gallery
    embedder = pipeline.embedder
    with Gallery.from_config(config, embedder.fingerprint, embedder.embedding_size) as gallery:
        filled_session(pipeline, portrait).write(gallery, 'P-0042')
        other = np.random.default_rng(43).normal(size=embedder.embedding_size)
        gallery.add_templates('P-0043', other, ['another patient'], [1.0])
    node_worker = FrameWorker(live, message_types=None)  # reloads only, no messages here

    def reload_and_watch(face):
        node_worker.reload_gallery()
        live.tracker.reset()
        faces = [live.process(camera_frame(face, index), index / 15.0).faces[0]
                 for index in range(3)]
        return faces[-1].status, faces[-1].patient_id, {
            candidate.patient_id for found in faces for candidate in found.candidates}, list(
            live.snapshot.patient_ids)

    assert reload_and_watch(portrait)[:2] == ('confirmed', 'P-0042')
    assert erase_patient(config, embedder, 'P-0042') == (config.path, 3)
    status, patient_id, candidates, enrolled = reload_and_watch(portrait)
    assert status == 'unknown' and patient_id is None and 'P-0042' not in candidates
    assert enrolled == ['P-0043']
    with pytest.raises(GalleryError, match="no patient 'P-0042'"):
        erase_patient(config, embedder, 'P-0042')
