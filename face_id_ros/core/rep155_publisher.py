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
Our detector's and tracker's faces as REP-155 content, frame by frame, without ROS.

A face is listed on ``/humans/faces/tracked`` from its first frame until its track has been
unseen for longer than the tracker's ``max_gap_s`` (as hri_face_detect keeps a face for a
few frames), so its id and topics stay while it is in view; ``started`` and ``ended`` say
when to create and destroy its publishers. A face seen in a frame gets its roi, cropped
(128x128 of the box, hri_face_detect's form), aligned (the crop our model embeds) and
landmarks. The candidate matches follow our confirmation policy (``rep155.candidate_matches``).
"""

from dataclasses import dataclass, replace

from face_id_ros.core.rep155 import (candidate_matches, CandidateMatch, cropped_face,
                                     landmark_fields, normalized_roi, rep155_face_id)


@dataclass(frozen=True)
class FaceContent:
    """One seen face: id, normalised roi, its confidence, landmarks fields, two images."""

    face_id: str
    roi: tuple
    confidence: float
    landmarks: dict
    cropped: object
    aligned: object


@dataclass(frozen=True)
class Rep155Publication:
    """One frame's REP-155 content: the tracked ids, the faces seen, starts, ends, matches."""

    ids: tuple
    faces: tuple
    started: tuple
    ended: tuple
    matches: tuple


class Rep155Publisher:
    """Turn pipeline results into REP-155 content; remember which faces are listed."""

    def __init__(self, session, max_gap_s):
        """``session`` makes this run's face ids (``rep155.session_token``)."""
        self.session, self.max_gap_s = session, max_gap_s
        self._last_seen = {}
        self._confirmed = {}

    def reset(self):
        """
        Forget every face (deactivation); return (the ids listed, the matches withdrawn).

        The ids' topics end; each confirmed face's match goes out again with confidence 0.0.
        """
        listed = tuple(self._last_seen)
        withdrawn = tuple(CandidateMatch(face_id, patient_id, 0.0)
                          for face_id, patient_id in sorted(self._confirmed.items()))
        self._last_seen, self._confirmed = {}, {}
        return listed, withdrawn

    def frame(self, image, result, pipeline):
        """Return the Rep155Publication of a pipeline FrameResult of ``image`` (BGR)."""
        height, width = image.shape[:2]
        landmark_set = pipeline.detector.landmark_set
        faces, tracked = [], []
        aligned = pipeline.align(image, result.landmarks)
        listed_before = set(self._last_seen)
        for index, (face, box, points) in enumerate(zip(result.faces, result.boxes,
                                                        result.landmarks)):
            face_id = rep155_face_id(face.track_id, self.session)
            tracked.append(replace(face, track_id=face_id))
            self._last_seen[face_id] = result.stamp
            faces.append(FaceContent(face_id, normalized_roi(box, (width, height)), 1.0,
                                     landmark_fields(points, landmark_set, (width, height),
                                                     1.0),
                                     cropped_face(image, box), aligned[index]))
        self._last_seen = {face_id: seen for face_id, seen in self._last_seen.items()
                           if result.stamp - seen <= self.max_gap_s}
        ended = tuple(sorted(listed_before - set(self._last_seen)))
        started = tuple(face.face_id for face in faces if face.face_id not in listed_before)
        matches, self._confirmed = candidate_matches(self._confirmed, tracked, ended)
        return Rep155Publication(tuple(self._last_seen), tuple(faces), started, ended,
                                 tuple(matches))
