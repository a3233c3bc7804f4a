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
Open-set matching of face embeddings against a gallery snapshot.

A patient's similarity is the best cosine over their templates. A face is named only when
that similarity reaches the threshold and leads the runner-up patient by the margin;
otherwise it is ``unknown``: an unenrolled person is never the nearest patient.

Scores are on one scale everywhere: the cosine the threshold is in. A candidate's ``score``
(JSON, ``/patient_id``, the gate's evidence) is that cosine clipped at 0, so it lies in
[0, 1] as the message contract wants; a negative cosine is no closer to any threshold.

A face known to wear a mask (or known not to) is compared with the templates of its own
kind where the patient has any, as a masked face and a bare one of the same person are
further apart than two masked ones; ``FaceMatch.like_templates`` says whether the best
candidate was scored that way, so the tracker can ask for more evidence when not.

Masked faces of *different* people are also closer than bare ones: against masked
templates the bare threshold would name masked strangers. A cosine to a masked template
therefore counts lowered by the gap between the masked and the bare threshold, so that one
threshold and one margin decide for every template; without a masked threshold, masked
templates name nobody.
"""

from dataclasses import dataclass

from face_id_ros.core.config import AUTO
from face_id_ros.core.errors import ConfigError, GalleryError, ModelError
import numpy as np

UNKNOWN = 'unknown'


@dataclass(frozen=True)
class Candidate:
    """One patient's similarity to a face: the cosine, and ``score``, the cosine clipped at 0."""

    patient_id: str
    cosine: float
    score: float


@dataclass(frozen=True)
class FaceMatch:
    """One face's decision (a patient id or ``unknown``) and its best candidates."""

    decision: str
    candidates: tuple = ()
    like_templates: bool = True

    @property
    def best_score(self):
        """Score of the best candidate, or None when there is none."""
        return self.candidates[0].score if self.candidates else None


def resolve_threshold(config, recommended):
    """
    Return the cosine threshold a MatcherConfig asks for, and a warning or None.

    ``auto`` is the model's ``recommended`` threshold. A number below it is refused
    (ConfigError) unless ``allow_below_model_threshold``; then the warning gives both
    numbers, for every start to log. A recommendation outside [0, 1] is a ModelError.
    """
    if not 0.0 <= recommended <= 1.0:
        raise ModelError(f'the model recommends the cosine threshold {recommended!r}, outside '
                         '[0, 1]: set its metadata right (face-id model stamp)')
    if config.threshold == AUTO:
        return float(recommended), None
    threshold = float(config.threshold)
    if threshold >= recommended:
        return threshold, None
    if not config.allow_below_model_threshold:
        raise ConfigError(f"matcher.threshold {threshold:g} is below the model's recommended "
                          f'{recommended:g}, so more strangers would match patients: use auto '
                          'or a higher value (matcher.allow_below_model_threshold: true '
                          'allows it, for experiments)')
    return threshold, (f"matcher.threshold {threshold:g} is below the model's recommended "
                       f'{recommended:g} (allow_below_model_threshold): more strangers will '
                       'match patients')


def resolve_masked_threshold(threshold, metadata):
    """
    Return the cosine threshold for masked templates, or None when the model has none.

    It lies as far above the resolved ``threshold`` as the model's masked threshold
    (``metadata.masked_cosine_threshold``) lies above its bare one, so raising the
    threshold raises both.
    """
    if metadata.masked_cosine_threshold is None:
        return None
    gap = metadata.masked_cosine_threshold - metadata.cosine_threshold
    return min(1.0, threshold + max(0.0, gap))


def match(embeddings, snapshot, config, threshold, masked=None, masked_threshold=None):
    """
    Match (N, D) face embeddings against a snapshot; return one FaceMatch per face.

    ``threshold`` is the resolved cosine threshold in [0, 1] (``resolve_threshold``) and
    ``masked_threshold`` the one for masked templates (``resolve_masked_threshold``; None:
    masked templates name nobody). Rows that are not finite or are all zeros match nobody.
    ``masked`` (N,) says per face whether it wears a mask (None: not known, every template
    counts alike). A candidate's cosine to a masked template is reported lowered by
    ``masked_threshold - threshold``, the scale on which it was judged.
    """
    if isinstance(threshold, str) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f'match threshold {threshold!r} is not a cosine in [0, 1]; '
                          'resolve it first (resolve_threshold)')
    if masked_threshold is not None and not threshold <= masked_threshold <= 1.0:
        raise ConfigError(f'masked threshold {masked_threshold!r} is not a cosine in '
                          f'[{threshold}, 1] (resolve_masked_threshold)')
    faces = np.asarray(embeddings, dtype=np.float32)
    if not faces.size:
        return []
    if faces.ndim != 2 or faces.shape[1] != snapshot.embedding_size:
        raise GalleryError(f'face embeddings have shape {faces.shape} but the gallery '
                           f'holds size {snapshot.embedding_size}')
    if not len(snapshot.patient_ids):
        return [FaceMatch(UNKNOWN) for _ in range(len(faces))]
    norms = np.linalg.norm(faces, axis=1)
    usable = np.isfinite(norms) & (norms > 0)
    faces = np.where(usable[:, None], faces / np.where(usable, norms, 1.0)[:, None], 0.0)
    # Without a masked threshold masked templates do not count: -1 is below any threshold.
    countable = ~snapshot.masked if masked_threshold is None else np.ones_like(snapshot.masked)
    cosines = np.where(countable[None, :], _on_bare_scale(
        faces @ snapshot.templates.T, snapshot.masked, threshold, masked_threshold),
        np.float32(-1.0))
    per_patient, like = _per_patient(cosines, snapshot, masked, countable)
    order = best_first(per_patient, max(config.top_k, 2))
    return [_decide(snapshot.patient_ids, per_patient[row], order[row], config, threshold,
                    bool(like[row, order[row][0]]))
            if usable[row] else FaceMatch(UNKNOWN) for row in range(len(faces))]


def best_first(scores, count):
    """
    Return, per row, the indices of the ``count`` highest scores, highest first.

    The same indices, in the same order, as the first ``count`` of a stable descending sort
    (ties by index), found in time linear in the number of patients: a full sort of 10,000
    patients per face cost more than the similarities themselves.
    """
    if scores.shape[1] <= count:
        return np.argsort(-scores, axis=1, kind='stable')
    # Everything at least as high as the count-th best, ties included, then sorted.
    floor = -np.partition(-scores, count - 1, axis=1)[:, count - 1:count]
    rows = []
    for row, lowest in zip(scores, floor):
        chosen = np.flatnonzero(row >= lowest)
        rows.append(chosen[np.argsort(-row[chosen], kind='stable')][:count])
    return np.array(rows, np.int64).reshape(len(scores), count)


def _on_bare_scale(cosines, masked_templates, threshold, masked_threshold):
    """Lower the cosines to masked templates by the gap between the two thresholds."""
    if masked_threshold is None or not masked_templates.any():
        return cosines
    gap = np.float32(masked_threshold - threshold)
    return cosines - gap * masked_templates[None, :].astype(np.float32)


def _per_patient(cosines, snapshot, masked, countable):
    """
    Return each face's similarity to each patient, and whether it came from like templates.

    A face of known kind (masked or not) takes the best cosine over the patient's
    ``countable`` templates of that kind, or over all of them when the patient has none.
    """
    starts = snapshot.template_starts
    best_of_all = np.maximum.reduceat(cosines, starts, axis=1)
    if masked is None:
        return best_of_all, np.ones(best_of_all.shape, bool)
    masked = np.asarray(masked, bool)
    like = (snapshot.masked[None, :] == masked[:, None]) & countable[None, :]
    has_like = np.maximum.reduceat(like, starts, axis=1)
    best_of_like = np.maximum.reduceat(np.where(like, cosines, -np.inf), starts, axis=1)
    return np.where(has_like, best_of_like, best_of_all), has_like


def _decide(patient_ids, similarities, order, config, threshold, like_templates):
    """Name the best patient only above threshold and with a strict lead >= margin."""
    best = float(similarities[order[0]])
    # With one enrolled patient there is no runner-up; the threshold alone decides.
    runner_up = float(similarities[order[1]]) if len(order) > 1 else -1.0
    lead = best - runner_up
    named = best >= threshold and lead >= config.margin and lead > 0.0
    candidates = tuple(
        Candidate(str(patient_ids[index]), float(similarities[index]),
                  float(np.clip(similarities[index], 0.0, 1.0)))
        for index in order[:config.top_k])
    return FaceMatch(str(patient_ids[order[0]]) if named else UNKNOWN, candidates,
                     like_templates)
