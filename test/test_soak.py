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

"""The node's ROS-free worker path and the soak command, on the real portrait and real files."""

import csv
import json

from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.errors import FaceIdError, GalleryError
from face_id_ros.core.frame_worker import FrameWorker
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.image_codec import encode_image
from face_id_ros.core.pipeline import Pipeline
from face_id_ros.core.ros_messages import rosbags_typestore
from face_id_ros.evaluation.samples import compose_frame
from face_id_ros.evaluation.soak import face_tiles, SceneSchedule, soak, SoakSettings
import pytest


def soak_config(tiny_model, tmp_path):
    """Return a pipeline config with the tiny embedder and an unencrypted test gallery."""
    return PipelineConfig().replace(
        embedder={'model': str(tiny_model)},
        gallery={'path': str(tmp_path / 'gallery.db'), 'encryption': 'off'})


def camera_message(typestore, image, seconds=12, nanoseconds=500):
    """Return a rosbags sensor_msgs/Image of ``image`` stamped ``seconds.nanoseconds``."""
    types = typestore.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=seconds, nanosec=nanoseconds),
        frame_id='camera')
    return types['sensor_msgs/msg/Image'](header=header, **encode_image(image))


def test_the_frame_worker_turns_a_camera_message_into_patient_id(
        tiny_model, tmp_path, portrait):
    typestore = rosbags_typestore()
    worker = FrameWorker(Pipeline(soak_config(tiny_model, tmp_path)), typestore.types)
    frame = compose_frame(portrait, (640, 480), [(320, 240)], 300)
    processed = worker.process(camera_message(typestore, frame))
    [detection] = processed.message.detections
    assert processed.image.shape == (480, 640, 3)
    assert processed.result.stamp == pytest.approx(12.0000005)
    assert processed.message.header.frame_id == 'camera'
    assert detection.header.stamp.nanosec == 500
    assert detection.id == processed.result.faces[0].track_id
    assert detection.results[0].hypothesis.class_id == 'pending'  # one frame: no evidence yet


def test_the_frame_worker_reloads_the_gallery_or_keeps_the_old_one(tiny_model, tmp_path,
                                                                   portrait):
    config = soak_config(tiny_model, tmp_path)
    pipeline = Pipeline(config)
    worker = FrameWorker(pipeline, rosbags_typestore().types)
    with pytest.raises(GalleryError, match='no gallery at'):
        worker.reload_gallery()
    assert pipeline.snapshot.revision == 0
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        revision = gallery.add_templates('P-0001', pipeline.describe(portrait).embeddings,
                                         ['portrait'], [1.0])
    loaded = worker.reload_gallery()
    assert (loaded.revision, loaded.patients) == (revision, 1)
    assert pipeline.snapshot.revision == revision
    assert list(pipeline.snapshot.patient_ids) == ['P-0001']


def test_scenes_cycle_through_zero_to_max_faces_the_detector_finds(
        tiny_model, tmp_path, portrait):
    pipeline = Pipeline(soak_config(tiny_model, tmp_path))
    settings = SoakSettings(max_faces=3, size=(640, 480), tile_side=200)
    schedule = SceneSchedule(face_tiles(pipeline.detector, [portrait], 200), settings)
    for scene in range(5):
        frame, shown = schedule.frame(scene * 4.0 + 1.0)
        assert shown == scene % 4
        assert len(pipeline.detector.detect(frame)) == shown
    with pytest.raises(FaceIdError, match='do not fit'):
        SceneSchedule(face_tiles(pipeline.detector, [portrait], 300), settings)


def read_rows(path):
    with open(path, newline='') as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize('mode', ['pipeline', 'node'])
def test_a_short_soak_records_frames_memory_and_gallery_reloads(tiny_model, tmp_path,
                                                                portrait, mode):
    settings = SoakSettings(minutes=0.1, fps=10.0, max_faces=2, reload_every_s=1.0,
                            warmup_minutes=0.02, mode=mode)
    out = tmp_path / 'soak'
    summary = soak(soak_config(tiny_model, tmp_path), settings, out, [portrait],
                   progress=False)
    frames, seconds = read_rows(out / 'frames.csv'), read_rows(out / 'seconds.csv')
    assert 40 <= len(frames) <= 61  # 6 s at 10 fps, less what a slow machine dropped
    assert {(row['faces_shown'], row['faces_found']) for row in frames} == {
        ('0', '0'), ('1', '1')}  # the first 6 s: scenes of 0 and 1 face
    assert all(float(row['rss_mib']) > float(row['anon_mib']) > 20.0 for row in seconds)
    assert summary['gallery_reloads'] >= 3 and summary['gallery_reload_failures'] == 0
    revisions = [int(row['gallery_revision']) for row in frames]
    assert revisions == sorted(revisions) and revisions[-1] > revisions[0]
    assert json.loads((out / 'summary.json').read_text())['frames'] == len(frames)
    assert 'memory_growth_mib' in summary
    assert (out / 'soak.png').stat().st_size > 10_000
