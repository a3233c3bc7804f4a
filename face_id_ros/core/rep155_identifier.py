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
Identify the faces another REP-155 node publishes, with our model, gallery and policy.

``FrameAssembler`` gathers one camera frame's per-face messages (roi, landmarks, the face
image) by their header stamp and hands the frame over when ``/humans/faces/tracked`` for
that stamp has come and every listed face is complete (hri_face_detect publishes the faces
first, the list last), or when a later list arrives first. ``Rep155Identifier`` embeds each
face, matches it against the gallery and applies our temporal policy per REP-155 face id:
each face id has its own track, so evidence never passes from one upstream face to another,
and a face that leaves ``tracked`` loses its confirmation (``core.rep155.candidate_matches``).

Face images: ``cropped`` (default) is re-aligned to our model's template with the landmarks
mapped into the crop; ``aligned`` is embedded as it is, for a face_id_ros face publisher
upstream, whose ``aligned`` crops are our model's, and is refused at any other size.
"""

from dataclasses import dataclass, replace

from face_id_ros.core.alignment import detector_template
from face_id_ros.core.errors import ConfigError
from face_id_ros.core.image_codec import decode_any
from face_id_ros.core.matching import match, resolve_masked_threshold
from face_id_ros.core.pipeline import FrameResult
from face_id_ros.core.rep155 import align_cropped, candidate_matches, pixel_box, read_landmarks
from face_id_ros.core.tracking import FaceTracker
import numpy as np

FACE_SOURCES = ('cropped', 'aligned')


@dataclass(frozen=True)
class FaceView:
    """One face of one frame: REP-155 id, normalised roi, FaceLandmarks, face image (BGR)."""

    face_id: str
    roi: tuple
    landmarks: object
    image: np.ndarray


@dataclass(frozen=True)
class Rep155Frame:
    """What the identifier concluded about one frame: our result, and candidate matches."""

    result: FrameResult
    matches: list
    skipped: tuple = ()


class FrameAssembler:
    """Collect per-face messages by stamp; return whole frames once their list is known."""

    def __init__(self, face_source='cropped'):
        """``face_source`` names the face image topic awaited with roi and landmarks."""
        if face_source not in FACE_SOURCES:
            raise ConfigError(f'rep155 face_source {face_source!r} is not one of '
                              f'{FACE_SOURCES}')
        self.needed = ('roi', 'landmarks', face_source)
        self._parts = {}     # (stamp, face id) -> {topic name: value}
        self._pending = None  # (stamp, ids) of a list whose faces are not all in

    def add_face_part(self, stamp, face_id, name, value):
        """Keep one per-face message's content; return the frames it completes."""
        if name in self.needed:
            self._parts.setdefault((stamp, face_id), {})[name] = value
        return self._complete_pending()

    def add_tracked(self, stamp, ids):
        """Take one ``/humans/faces/tracked`` list; return the frames now ready, oldest first."""
        ready = []
        if self._pending is not None and self._pending[0] < stamp:
            ready.append(self._frame(*self._pending))  # a later list: the older one is done
            self._pending = None
        self._pending = (stamp, tuple(ids))
        return ready + self._complete_pending()

    def views(self, parts):
        """Return the FaceView of each face whose parts are all in and whose landmarks read."""
        return [FaceView(face_id, part['roi'], part['landmarks'], part[self.needed[2]])
                for face_id, part in parts.items()
                if set(self.needed) <= set(part) and part['landmarks'] is not None]

    def flush(self):
        """Return the frame still waiting (at the end of a recording), if any."""
        pending, self._pending = self._pending, None
        return [self._frame(*pending)] if pending else []

    def _complete_pending(self):
        if self._pending is None:
            return []
        stamp, ids = self._pending
        if all(set(self.needed) <= set(self._parts.get((stamp, face_id), {}))
               for face_id in ids):
            self._pending = None
            return [self._frame(stamp, ids)]
        return []

    def _frame(self, stamp, ids):
        """Return (stamp, ids, {face id: parts}) and forget every part up to ``stamp``."""
        parts = {face_id: self._parts.get((stamp, face_id), {}) for face_id in ids}
        self._parts = {key: value for key, value in self._parts.items() if key[0] > stamp}
        return stamp, ids, parts


class Rep155Identifier:
    """Embed, match and track REP-155 faces; say who is confirmed, fail closed."""

    def __init__(self, embedder, config, threshold, face_source='cropped'):
        """``config`` is the PipelineConfig (matcher, tracker); ``threshold`` resolved."""
        if face_source not in FACE_SOURCES:
            raise ConfigError(f'rep155 face_source {face_source!r} is not one of '
                              f'{FACE_SOURCES}')
        self.embedder, self.config, self.threshold = embedder, config, threshold
        self.masked_threshold = resolve_masked_threshold(threshold, embedder.metadata)
        self.face_source = face_source
        self.snapshot = None
        self._trackers = {}
        self._confirmed = {}

    def set_gallery(self, snapshot):
        """Swap in a gallery snapshot; a frame uses the old or the new one, never a mix."""
        self.snapshot = snapshot

    def reset(self):
        """Forget every face (activation, a replay looping)."""
        self._trackers, self._confirmed = {}, {}

    def process(self, stamp, tracked_ids, views):
        """
        Identify one frame: ``tracked_ids`` of ``/humans/faces/tracked``, ``views`` FaceView.

        Faces listed without a complete view this frame keep their track but add no evidence.
        Returns a Rep155Frame: a FrameResult whose faces carry the REP-155 face id as
        ``track_id`` (for ``/patient_id``), the candidate matches, and the face ids skipped
        (an image that cannot be used).
        """
        snapshot = self.snapshot
        ended = set(self._trackers) - set(tracked_ids)
        for face_id in ended:
            del self._trackers[face_id]
        faces, boxes, skipped = [], [], []
        for view in views:
            crop = self._face_crop(view)
            if crop is None:
                skipped.append(view.face_id)
                continue
            box = pixel_box(view.roi, view.landmarks.image_size)
            faces.append(self._track(view, box, crop, stamp, snapshot))
            boxes.append(box)
        matches, self._confirmed = candidate_matches(self._confirmed, faces, ended)
        return Rep155Frame(FrameResult(stamp, faces, boxes, {}, snapshot.revision), matches,
                           tuple(skipped))

    def _track(self, view, box, crop, stamp, snapshot):
        tracker = self._trackers.get(view.face_id)
        if tracker is None:
            tracker = self._trackers[view.face_id] = FaceTracker(self.config.tracker)
        plan = tracker.plan(stamp, [box], [view.landmarks.points], snapshot.revision)
        face_match, mask = None, (float('nan'), None)
        if plan.fresh[0]:
            embeddings, chances = self.embedder.embed_and_mask(crop[None])
            chance = float(chances[0])
            masked = None if np.isnan(chance) else bool(
                chance >= self.embedder.metadata.mask_threshold)
            face_match = match(embeddings, snapshot, self.config.matcher, self.threshold,
                               None if masked is None else [masked], self.masked_threshold)[0]
            mask = (chance, masked)
        tracked = tracker.update(stamp, [box], [face_match], [mask], plan)[0]
        return replace(tracked, track_id=view.face_id)

    def _face_crop(self, view):
        """Return the crop our model embeds, or None when the view cannot give one."""
        width, height = self.embedder.input_size
        if self.face_source == 'aligned':
            ok = view.image.shape[:2] == (height, width)
            return view.image if ok else None
        if view.landmarks is None or view.image.size == 0:
            return None
        template = detector_template(view.landmarks.landmark_set,
                                     self.embedder.metadata.template)
        return align_cropped(view.image, pixel_box(view.roi, view.landmarks.image_size),
                             view.landmarks.points, template, (width, height))


def face_part(name, message):
    """Return what the identifier needs of one per-face message (rclpy's or a bag's)."""
    if name == 'roi':
        return (message.xmin, message.ymin, message.xmax, message.ymax)
    if name == 'landmarks':
        return read_landmarks([(item.x, item.y, item.c) for item in message.landmarks],
                              message.width, message.height)
    return decode_any(message)
