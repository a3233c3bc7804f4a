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
Open the configured gallery: the SQLite file (the default) or the hospital's server.

The pipeline, the nodes and ``face-id`` open galleries through :func:`open_gallery`, so both
backends answer the same calls (``snapshot``, ``add_templates``, ``remove_patient``,
``list_patients``, ``template_sources``, ``info``, ``revision``, ``batch``) and the enrolment
rules above them (quality gate, one person one id, one template per photo) are the same for
both.
"""

from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_postgres import PostgresGallery


def open_gallery(config, model_fingerprint, embedding_size, create=True):
    """
    Open the gallery a GalleryConfig names: its server (``url``) or its SQLite file.

    ``create`` makes a missing SQLite file (a server's schema is made by ``face-id gallery
    migrate`` only); the server's audit trail names ``config.operator`` as the writer.
    """
    if config.url:
        return PostgresGallery.from_config(config, model_fingerprint, embedding_size)
    return Gallery.from_config(config, model_fingerprint, embedding_size, create=create)
