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
What ``face_id_node`` does with each camera message and each gallery reload, without ROS.

The node's worker thread calls :meth:`FrameWorker.process` on the newest camera message and
publishes the ``/patient_id`` message it returns; its ``~/reload_gallery`` service calls
:meth:`FrameWorker.reload_gallery` from the executor thread while the worker runs. The soak
test (``face-id soak --mode node``) calls the same two methods with ``rosbags`` message
classes, so what it measures is what the node runs.
"""

from dataclasses import dataclass
import os

from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_sync import GallerySync
from face_id_ros.core.image_codec import decode_any
from face_id_ros.core.patient_id import mask_detections, patient_detections
from face_id_ros.core.ros_messages import build_detection_array, stamp_seconds


@dataclass(frozen=True)
class ProcessedFrame:
    """
    One camera message's decoded image, pipeline result and the messages to publish.

    ``message`` goes on ``/patient_id``; ``masks`` on ``face_id/masks``: the same header,
    track ids and boxes, with each face's mask call (``patient_id.mask_detections``).
    """

    image: object
    result: object
    message: object
    masks: object


@dataclass(frozen=True)
class GalleryLoaded:
    """The gallery a reload swapped in: its file, revision and patient count."""

    path: str
    revision: int
    patients: int


class FrameWorker:
    """Turn camera messages into ``/patient_id`` messages with one pipeline."""

    def __init__(self, pipeline, message_types, on_gallery=None):
        """
        ``message_types`` maps full type names to message classes (rclpy or rosbags).

        ``on_gallery(GalleryLoaded)`` is told of every revision a server gallery's sync
        swaps in (from the sync thread); a SQLite gallery changes only on reload.
        """
        self.pipeline = pipeline
        self.message_types = message_types
        self.on_gallery = on_gallery
        self.sync = None

    def process(self, msg):
        """Decode, identify and build the ``/patient_id`` message, with ``msg``'s header."""
        image = decode_any(msg)
        result = self.pipeline.process(image, stamp_seconds(msg.header.stamp))
        message = build_detection_array(self.message_types, msg.header,
                                        patient_detections(result))
        masks = build_detection_array(self.message_types, msg.header, mask_detections(result))
        return ProcessedFrame(image, result, message, masks)

    def reload_gallery(self):
        """
        Read the configured gallery into a new snapshot and swap it in; return GalleryLoaded.

        The swap is one assignment, so the frame in hand uses the old or the new snapshot,
        never a mix. Raises GalleryError when there is no gallery file or it was made by
        another model; the snapshot in use then stays.
        """
        pipeline = self.pipeline
        config = pipeline.config.gallery
        if config.url:
            return self._sync_with_server(config)
        path = os.path.expanduser(config.path)
        if not os.path.isfile(path):
            raise GalleryError(
                f'no gallery at {path}: enrol patients first (`ros2 run face_id_ros enroll '
                '--patient-id P-0042` or `face-id enroll`) or set the gallery.path parameter')
        with Gallery.from_config(config, pipeline.embedder.fingerprint,
                                 pipeline.embedder.embedding_size, create=False) as gallery:
            snapshot = gallery.snapshot()
            gallery_path = gallery.path
        pipeline.set_gallery(snapshot)
        return GalleryLoaded(gallery_path, snapshot.revision, len(snapshot.patient_ids))

    def sync_status(self):
        """Return the server sync's SyncStatus, or None for a SQLite gallery."""
        return None if self.sync is None else self.sync.status

    def close(self):
        """Stop following the server gallery (nothing to do for a SQLite one)."""
        if self.sync is not None:
            self.sync.stop()
            self.sync = None

    def _sync_with_server(self, config):
        """
        Follow the server gallery (first call), or sync now; return GalleryLoaded.

        The first call syncs before it returns (or falls back to the local cache when the
        server is unreachable, GalleryError when there is none); later calls raise
        GalleryError when the server cannot be reached, and the snapshot in use stays.
        """
        if self.sync is None:
            embedder = self.pipeline.embedder
            sync = GallerySync(config, embedder.fingerprint, embedder.embedding_size,
                               self._swap_in)
            try:
                sync.start()
            except BaseException:
                sync.stop()
                raise
            self.sync = sync
        else:
            self.sync.sync_once()
        return self._loaded(self.pipeline.snapshot)

    def _swap_in(self, snapshot):
        """Use a synced revision from the next frame on; tell the node."""
        self.pipeline.set_gallery(snapshot)
        if self.on_gallery is not None and self.sync is not None:
            self.on_gallery(self._loaded(snapshot))

    def _loaded(self, snapshot):
        return GalleryLoaded(self.sync.server_name if self.sync else '', snapshot.revision,
                             len(snapshot.patient_ids))
