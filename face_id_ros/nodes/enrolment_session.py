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
Enrolment from a live camera: keep the best frames of one person, then write them.

Each offered frame goes through the enrolment quality gate (one face, confident, big enough,
sharp). Accepted frames must be some time apart (so the templates differ a little) and show
the same person as the first accepted frame (so a passer-by is never enrolled). Once enough
frames were accepted, the best ``keep`` of them become the patient's templates, unless the
face already matches another enrolled patient. No ROS here: the enrol node feeds frames in.
:func:`erase_patient` is the other half of the enrol node's job: a patient leaves the ward.
"""

from dataclasses import dataclass

from face_id_ros.core.enrolment import check_not_enrolled_as_another
from face_id_ros.core.errors import EnrolmentRejected
from face_id_ros.core.galleries import open_gallery
from face_id_ros.core.quality import assess_photo, shown_apart
import numpy as np


@dataclass(frozen=True)
class FrameVerdict:
    """What one offered frame did: accepted or not, why, and the progress so far."""

    accepted: bool
    reason: str
    accepted_frames: int
    needed_frames: int


class EnrolmentSession:
    """Collect accepted frames of one person and keep the best ``keep`` of them."""

    def __init__(self, pipeline, quality_config, keep=5, candidates=None, min_interval_s=0.2,
                 masked=False):
        """
        Start an empty session.

        ``keep`` templates are written, chosen by quality among ``candidates`` accepted
        frames (default ``3 * keep``); accepted frames are at least ``min_interval_s`` apart.
        ``masked``: the patient wears a mask, so every template is masked (otherwise each
        is where the model sees a mask).
        """
        if keep < 1:
            raise ValueError(f'keep must be at least 1, got {keep}')
        self.pipeline = pipeline
        self.quality_config = quality_config
        self.keep = keep
        self.candidates = max(candidates or 3 * keep, keep)
        self.min_interval_s = min_interval_s
        self.masked = masked
        self.samples = []
        self._last_accepted = None

    @property
    def done(self):
        """Return True once enough frames were accepted."""
        return len(self.samples) >= self.candidates

    @property
    def enough(self):
        """Return True once at least ``keep`` frames were accepted (enough to write)."""
        return len(self.samples) >= self.keep

    def offer(self, image, stamp):
        """Assess one BGR frame taken at ``stamp`` (seconds); return a FrameVerdict."""
        if self.done:
            return self._verdict(False, 'already done')
        if (self._last_accepted is not None
                and stamp - self._last_accepted < self.min_interval_s):
            return self._verdict(False, 'waiting between frames')
        try:
            sample = assess_photo(image, self.pipeline, self.quality_config)
            self._check_same_person(sample)
        except EnrolmentRejected as rejection:
            return self._verdict(False, str(rejection))
        self.samples.append(sample)
        self._last_accepted = stamp
        return self._verdict(True, f'accepted (quality {sample.quality:.2f})')

    def best(self):
        """Return the ``keep`` accepted samples of highest quality, best first."""
        return sorted(self.samples, key=lambda sample: -sample.quality)[:self.keep]

    def write(self, gallery, patient_id, source='camera', replace=False):
        """
        Write the best samples as ``patient_id``'s templates; return the new revision.

        Raises EnrolmentRejected when the id is not pseudonymous, when fewer than ``keep``
        frames were accepted, or when the face already matches another enrolled patient
        (one person, one id).
        """
        if not gallery.id_pattern.fullmatch(patient_id):
            raise EnrolmentRejected(
                f'patient id {patient_id!r} does not match the pseudonymous pattern '
                f'{gallery.id_pattern.pattern!r}: use ids such as P-0042, never names')
        if not self.enough:
            raise EnrolmentRejected(f'only {len(self.samples)} of {self.keep} frames passed '
                                    'the quality gate; nothing written')
        best = self.best()
        try:
            check_not_enrolled_as_another(
                gallery.snapshot(), patient_id, [sample.embedding for sample in best],
                self.pipeline.threshold)
        except EnrolmentRejected as rejection:
            raise EnrolmentRejected(f'{rejection}; remove that enrolment first if it is the '
                                    'same person') from None
        return gallery.add_templates(
            patient_id, np.stack([sample.embedding for sample in best]),
            [f'{source} #{index}' for index in range(len(best))],
            [sample.quality for sample in best], images=[sample.crop for sample in best],
            masked=[self.masked or sample.masked for sample in best], replace=replace)

    def _check_same_person(self, sample):
        if not self.samples:
            return
        similarity = float(np.dot(sample.embedding, self.samples[0].embedding))
        if similarity < self.pipeline.threshold:
            cosine, needed = shown_apart(similarity, self.pipeline.threshold, 2)
            raise EnrolmentRejected(
                f'this face differs from the first accepted one (cosine {cosine} < '
                f'{needed}): keep only the patient in view')

    def _verdict(self, accepted, reason):
        return FrameVerdict(accepted, reason, len(self.samples), self.candidates)


def erase_patient(gallery_config, embedder, patient_id):
    """
    Remove a patient and their templates, wiped from the file; return (path, revision).

    Opens the configured gallery with its key for ``embedder``'s model and never creates
    one; raises GalleryError when the patient is not enrolled. A face_id_node stops matching
    the patient at its next gallery reload.
    """
    with open_gallery(gallery_config, embedder.fingerprint, embedder.embedding_size,
                      create=False) as gallery:
        return gallery.path, gallery.remove_patient(patient_id)
