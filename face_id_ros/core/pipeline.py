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

"""The one pipeline every entry point uses: frame in, per-face identities out."""

from dataclasses import dataclass, field
import logging
import time

from face_id_ros.core.alignment import align_face, detector_template
from face_id_ros.core.appearance import FaceLooks
from face_id_ros.core.detection import make_detector
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.gallery import GallerySnapshot
from face_id_ros.core.matching import match, resolve_masked_threshold, resolve_threshold
from face_id_ros.core.resources import default_model_path
from face_id_ros.core.tracking import FaceTracker, judge_still
import numpy as np


@dataclass
class FaceBatch:
    """
    The faces of one frame: detections, and the aligned crops and embeddings of some.

    ``rows`` are the faces that were aligned and embedded, in the order of ``crops``,
    ``embeddings`` and ``mask_probabilities`` (NaN where the model cannot tell); None: all.
    ``looks`` are every face's appearance signature (``core.appearance``), for the tracker.
    """

    faces: list
    crops: np.ndarray
    embeddings: np.ndarray
    mask_probabilities: np.ndarray
    timings_ms: dict = field(default_factory=dict)
    rows: tuple | None = None
    looks: tuple = ()

    @property
    def embedded_rows(self):
        """Return the faces the embeddings belong to, in their order."""
        return tuple(range(len(self.faces))) if self.rows is None else self.rows

    def masks(self, threshold):
        """Return each face's ``(mask probability, masked)``; masked is None when unknown."""
        return [(float(chance), None if np.isnan(chance) else bool(chance >= threshold))
                for chance in self.mask_probabilities]


@dataclass
class FrameResult:
    """
    What the pipeline concluded about one frame; ``faces`` are ``TrackedFace`` objects.

    ``landmarks`` are the faces' detector landmarks in frame pixels (the REP-155 face
    publisher sends them on), in the order of ``faces`` and ``boxes``.
    """

    stamp: float
    faces: list
    boxes: list
    timings_ms: dict
    gallery_revision: int
    landmarks: list = field(default_factory=list)


class Pipeline:
    """Detect, align, embed, match and track the faces of one camera stream."""

    def __init__(self, config, snapshot=None):
        """
        Load the detector and embedder that ``config`` names.

        Raises ModelError or ConfigError with the reason when a stage cannot start.
        """
        self.config = config
        self.detector = make_detector(config.detector)
        self.embedder = OnnxEmbedder(config.embedder.model or default_model_path(),
                                     config.embedder.threads, config.embedder.flip_sum)
        self.template = detector_template(self.detector.landmark_set,
                                          self.embedder.metadata.template)
        self.face_looks = FaceLooks(self.template, self.embedder.input_size)
        self.threshold, self.threshold_warning = resolve_threshold(
            config.matcher, self.embedder.metadata.cosine_threshold)
        if self.threshold_warning:
            logging.getLogger('face_id_ros').warning(self.threshold_warning)
        self.masked_threshold = resolve_masked_threshold(self.threshold, self.embedder.metadata)
        self.tracker = FaceTracker(config.tracker)
        self.snapshot = snapshot or GallerySnapshot.empty(self.embedder.embedding_size)

    def set_gallery(self, snapshot):
        """Swap in a new gallery snapshot; a frame uses the old or the new one, never a mix."""
        self.snapshot = snapshot

    def describe(self, image):
        """Detect, align and embed every face of a BGR frame (no matching, no tracking)."""
        timings = {}
        faces = self._detect(image, timings)
        looks = self._looks(image, faces, timings)
        batch = self._embed(image, faces, None, timings)
        batch.looks = looks
        return batch

    def identify_still(self, image, stamp=0.0):
        """
        Judge each face of a still photo on its own embedding; return a FrameResult.

        No tracking: a photo is not a video frame (``tracking.judge_still``). Faces are
        named ``still-1``, ``still-2``... in detection order.
        """
        batch = self.describe(image)
        started = time.perf_counter()
        masks = batch.masks(self.embedder.metadata.mask_threshold)
        matched = match(batch.embeddings, self.snapshot, self.config.matcher, self.threshold,
                        self._masked(masks), self.masked_threshold)
        faces = [judge_still(f'still-{row + 1}', face_match, mask)
                 for row, (face_match, mask) in enumerate(zip(matched, masks))]
        timings = {**batch.timings_ms, 'match': _elapsed_ms(started)}
        return FrameResult(stamp, faces, list(_boxes(batch.faces)), timings,
                           self.snapshot.revision)

    def _detect(self, image, timings):
        started = time.perf_counter()
        faces = self.detector.detect(image)
        timings['detect'] = _elapsed_ms(started)
        return faces

    def _looks(self, image, faces, timings):
        """Return every face's appearance signature, the tracker's test that it is unchanged."""
        started = time.perf_counter()
        looks = self.face_looks.looks(image, [face.landmarks for face in faces])
        timings['look'] = _elapsed_ms(started)
        return looks

    def _embed(self, image, faces, rows, timings):
        """Align and embed the faces ``rows`` (None: all); return the frame's FaceBatch."""
        chosen = faces if rows is None else [faces[row] for row in rows]
        started = time.perf_counter()
        crops = self.align(image, [face.landmarks for face in chosen])
        timings['align'] = _elapsed_ms(started)
        started = time.perf_counter()
        embeddings, mask_probabilities = self.embedder.embed_and_mask(crops)
        timings['embed'] = _elapsed_ms(started)
        return FaceBatch(faces, crops, embeddings, mask_probabilities, timings,
                         None if rows is None else tuple(rows))

    def align(self, image, landmark_sets):
        """Return the aligned crops ``(N, H, W, 3)`` for the detector's landmark sets."""
        width, height = self.embedder.input_size
        crops = [align_face(image, landmarks, self.template, (width, height))
                 for landmarks in landmark_sets]
        return np.stack(crops) if crops else np.zeros((0, height, width, 3), np.uint8)

    def process(self, image, stamp):
        """
        Run every stage on one frame with its stamp (seconds); return a FrameResult.

        Only the faces the tracker asks for are aligned and embedded (a confirmed face that
        looks unchanged carries its last embedding until its re-check).
        """
        timings, snapshot = {}, self.snapshot
        faces = self._detect(image, timings)
        looks = self._looks(image, faces, timings)
        started = time.perf_counter()
        plan = self.tracker.plan(stamp, _boxes(faces), [face.landmarks for face in faces],
                                 snapshot.revision, looks)
        planned_ms = _elapsed_ms(started)
        batch = self._embed(image, faces, plan.fresh_rows, timings)
        return self._conclude(batch, stamp, plan, snapshot, planned_ms)

    def conclude(self, batch, stamp):
        """
        Match and track one frame's described faces; return a FrameResult.

        ``describe`` needs no state, so replays may run it in worker processes; ``conclude``
        holds the tracker and must see the frames in order. The tracker's plan decides which
        of the embeddings count, exactly as in ``process``.
        """
        snapshot = self.snapshot
        started = time.perf_counter()
        plan = self.tracker.plan(stamp, _boxes(batch.faces),
                                 [face.landmarks for face in batch.faces], snapshot.revision,
                                 batch.looks or None)
        return self._conclude(batch, stamp, plan, snapshot, _elapsed_ms(started))

    def _conclude(self, batch, stamp, plan, snapshot, planned_ms):
        """Match the planned faces' embeddings, track every face; 'match' includes the plan."""
        started = time.perf_counter()
        masks = batch.masks(self.embedder.metadata.mask_threshold)
        matched = match(batch.embeddings, snapshot, self.config.matcher, self.threshold,
                        self._masked(masks), self.masked_threshold)
        matches = [None] * len(batch.faces)
        face_masks = [(float('nan'), None)] * len(batch.faces)
        for row, face_match, mask in zip(batch.embedded_rows, matched, masks):
            if plan.fresh[row]:
                matches[row], face_masks[row] = face_match, mask
        boxes = _boxes(batch.faces)
        tracked = self.tracker.update(stamp, boxes, matches, face_masks, plan)
        timings = {**batch.timings_ms, 'match': planned_ms + _elapsed_ms(started)}
        return FrameResult(stamp, tracked, list(boxes), timings, snapshot.revision,
                           [face.landmarks for face in batch.faces])

    def _masked(self, masks):
        """Return each face's mask call for the matcher; None when the model cannot tell."""
        return None if not self.embedder.has_mask_output else [flag for _, flag in masks]


def _boxes(faces):
    return np.array([face.box for face in faces], np.float32).reshape(-1, 4)


def _elapsed_ms(started):
    return (time.perf_counter() - started) * 1000.0
