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
One person, one id: the enrolment rules that `face-id enroll` and the enrol node share.

A face that already matches another enrolled patient is refused (two ids for one person
would let the wrong medication record follow them). A photo is known by a digest of its
bytes, never by its path or file name: keyed with the gallery key (HMAC-SHA256) when the
gallery is encrypted, so the digest names nobody to whoever holds the file but not the key.
The same photo twice is one template. These rules sit above the gallery's storage, so every
gallery backend enforces them alike.
"""

import hashlib
import hmac

from face_id_ros.core.errors import EnrolmentRejected
import numpy as np

# The prefixes of the sources the enrolment tools write; anything else in a gallery's source
# column was written by an older release and may hold a photo's path.
PHOTO_SOURCE_PREFIXES = ('photo hmac-sha256:', 'photo sha256:')
# HMAC's message starts with this, so the digest is of no use outside face_id_ros.
_DIGEST_CONTEXT = b'face_id_ros enrolment photo\x1f'


def photo_source(data, key=None):
    """Return the gallery source of a photo's bytes: its digest, keyed with ``key`` if given."""
    if key is None:
        return PHOTO_SOURCE_PREFIXES[1] + hashlib.sha256(bytes(data)).hexdigest()
    digest = hmac.new(key.secret, _DIGEST_CONTEXT + bytes(data), hashlib.sha256)
    return PHOTO_SOURCE_PREFIXES[0] + digest.hexdigest()


def check_not_enrolled_as_another(snapshot, patient_id, embeddings, threshold):
    """
    Raise EnrolmentRejected when a face matches a patient other than ``patient_id``.

    ``embeddings`` are the faces to enrol (N, D); a match is any template of another patient
    at a cosine of at least ``threshold``, the matcher's own. The message names the closest
    patient and the cosine.
    """
    if not len(snapshot.templates):
        return
    embeddings = np.atleast_2d(np.asarray(embeddings, np.float32))
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    owners = snapshot.patient_ids[snapshot.owners]
    others = owners != patient_id
    cosines = (embeddings @ snapshot.templates[others].T).max(axis=0, initial=-1.0)
    if cosines.size and cosines.max() >= threshold:
        closest = owners[others][int(np.argmax(cosines))]
        raise EnrolmentRejected(
            f'this face already matches enrolled patient {closest} (cosine '
            f'{cosines.max():.2f} >= {threshold:.2f})')
