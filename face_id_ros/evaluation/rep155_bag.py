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
REP-155 topics in ward-round bags: written beside the camera, replayed into the identifier.

``Rep155Recorder`` is ``make-ward-bag --rep155``'s frame hook: it runs our detector and
tracker on each synthetic frame and writes what the REP-155 face publisher would publish
(``core.rep155_publisher``) with the frame's header. ``evaluate_rep155_bag`` reads those
topics back, assembles frames as the identifier node does (``core.rep155_identifier``), and
scores them with eval-bag's scoring: a visit is wrong when any face is confirmed as another
patient, or a stranger as anyone. It also checks ``/humans/candidate_matches`` itself: every
match with a confidence above 0 must name the patient in view.
"""

import time

from face_id_ros.core.image_codec import decode_any, encode_image
from face_id_ros.core.rep155 import (CANDIDATE_MATCHES, face_topic, FACES_TRACKED, IDS_LIST,
                                     IDS_MATCH, IMAGE, LANDMARKS, parse_face_topic, POINT,
                                     register_hri_msgs, ROI, session_token)
from face_id_ros.core.ros_messages import stamp_seconds
from face_id_ros.evaluation.bag_eval import (_spread, face_records, FrameRecord, score_visits,
                                             summarise, summarise_by_mask)
from face_id_ros.evaluation.labels import NOBODY, subject_at
import numpy as np


class Rep155Recorder:
    """Write the REP-155 face publisher's topics for each frame of a bag being made."""

    def __init__(self, config, seed=0):
        """Build a pipeline (no gallery: only detection and tracking matter) from ``config``."""
        from face_id_ros.core.pipeline import Pipeline
        from face_id_ros.core.rep155_publisher import Rep155Publisher
        self.pipeline = Pipeline(config)
        self.publisher = Rep155Publisher(session_token(np.random.default_rng([seed, 20])),
                                         config.tracker.max_gap_s)
        self._connections = {}

    def __call__(self, writer, stamp_ns, camera_message):
        """
        Detect and track a camera message; write its tracked ids and each face's four topics.

        The faces come from the decoded message (JPEG and all), as a detector on the robot
        sees the camera, with its header.
        """
        types = register_hri_msgs(writer.typestore).types
        header = camera_message.header
        frame = decode_any(camera_message)
        result = self.pipeline.process(frame, stamp_ns / 1e9)
        publication = self.publisher.frame(frame, result, self.pipeline)
        for face in publication.faces:
            xmin, ymin, xmax, ymax = face.roi
            fields = face.landmarks
            messages = {
                'roi': types[ROI](header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax,
                                  c=face.confidence),
                'cropped': types[IMAGE](header=header, **encode_image(face.cropped)),
                'aligned': types[IMAGE](header=header, **encode_image(face.aligned)),
                'landmarks': types[LANDMARKS](
                    header=header, height=fields['height'], width=fields['width'],
                    landmarks=[types[POINT](x=x, y=y, c=c) for x, y, c in fields['entries']]),
            }
            for name, message in messages.items():
                writer.write(self._connection(writer, face_topic(face.face_id, name)),
                             stamp_ns, message)
        writer.write(self._connection(writer, FACES_TRACKED), stamp_ns,
                     types[IDS_LIST](header=header, ids=list(publication.ids)))

    def _connection(self, writer, topic):
        if topic not in self._connections:
            parsed = parse_face_topic(topic)
            msgtype = IDS_LIST if parsed is None else {
                'roi': ROI, 'cropped': IMAGE, 'aligned': IMAGE, 'landmarks': LANDMARKS}[
                    parsed[1]]
            self._connections[topic] = writer.add_connection(topic, msgtype)
        return self._connections[topic]

    def __enter__(self):
        """Return the recorder, to pass as ``make_ward_bag``'s frame hook."""
        return self

    def __exit__(self, *exc_info):
        """Release the detector."""
        self.pipeline.detector.close()
        return False


def read_rep155_frames(bag_path, face_source, progress=True):
    """
    Yield (seconds since the bag start, stamp, tracked ids, FaceView list) per frame.

    Frames are assembled from the bag as the identifier node assembles them from topics.
    """
    from rosbags.rosbag2 import Reader
    from tqdm import tqdm
    from face_id_ros.core.ros_messages import rosbags_typestore
    from face_id_ros.core.rep155_identifier import face_part, FrameAssembler
    typestore = register_hri_msgs(rosbags_typestore())
    assembler = FrameAssembler(face_source)
    receive = {}
    with Reader(bag_path) as reader:
        wanted = [item for item in reader.connections if item.topic == FACES_TRACKED or (
            parse_face_topic(item.topic) or ('', ''))[1] in assembler.needed]
        count = sum(item.msgcount for item in wanted if item.topic == FACES_TRACKED)
        bar = tqdm(total=count, desc='eval-bag rep155', unit='frame', disable=not progress)
        for connection, stamp_ns, raw in reader.messages(wanted):
            message = typestore.deserialize_cdr(raw, connection.msgtype)
            stamp = stamp_seconds(message.header.stamp)
            if connection.topic == FACES_TRACKED:
                receive[stamp] = (stamp_ns - reader.start_time) / 1e9
                ready = assembler.add_tracked(stamp, message.ids)
                bar.update()
            else:
                face_id, name = parse_face_topic(connection.topic)
                ready = assembler.add_face_part(stamp, face_id, name, face_part(name, message))
            for frame_stamp, ids, parts in ready:
                yield receive[frame_stamp], frame_stamp, ids, assembler.views(parts)
        bar.close()
    for frame_stamp, ids, parts in assembler.flush():
        yield receive[frame_stamp], frame_stamp, ids, assembler.views(parts)


def evaluate_rep155_bag(bag_path, intervals, pipeline, face_source='cropped', progress=True):
    """
    Replay a bag's REP-155 topics through the identifier; return (report, records).

    ``pipeline`` gives the model, gallery snapshot, configuration and threshold, exactly as
    eval-bag's replay uses them; every frame is processed (fast pace).
    """
    from face_id_ros.core.rep155_identifier import Rep155Identifier
    identifier = Rep155Identifier(pipeline.embedder, pipeline.config, pipeline.threshold,
                                  face_source)
    identifier.set_gallery(pipeline.snapshot)
    records, frame_seconds, published, skipped = [], [], [], 0
    started = time.perf_counter()
    for seconds, stamp, ids, views in read_rep155_frames(bag_path, face_source, progress):
        frame_seconds.append(seconds)
        begun = time.perf_counter()
        frame = identifier.process(stamp, ids, views)
        latency_ms = (time.perf_counter() - begun) * 1000.0
        skipped += len(frame.skipped)
        records.append(FrameRecord(seconds, seconds + latency_ms / 1000.0, latency_ms,
                                   latency_ms, face_records(frame.result)))
        published += [(seconds, item) for item in frame.matches]
    wall = time.perf_counter() - started
    visits = score_visits(intervals, records, frame_seconds)
    latencies = [record.latency_ms for record in records]
    naming = [(seconds, item) for seconds, item in published if item.confidence > 0]
    wrong_matches = sum(1 for seconds, item in naming
                        if _subject(intervals, seconds) != item.person_id)
    report = {
        'bag': str(bag_path), 'topic': f'{FACES_TRACKED} ({face_source})',
        'face_source': face_source, 'pace': 'fast', 'workers': 1,
        'model': f'{pipeline.embedder.metadata.name} {pipeline.embedder.metadata.version}',
        'threshold': pipeline.threshold, 'margin': pipeline.config.matcher.margin,
        'gallery_revision': pipeline.snapshot.revision,
        'frames': len(frame_seconds), 'processed': len(records), 'dropped': 0,
        'faces_skipped': skipped,
        'duration_s': round(float(frame_seconds[-1] - frame_seconds[0]), 3)
        if frame_seconds else 0.0,
        'wall_s': round(wall, 3),
        'frames_per_s': round(len(records) / wall, 2) if wall > 0 else None,
        'latency_ms': _spread(latencies, 2),
        'candidate_matches': {'topic': CANDIDATE_MATCHES, 'published': len(published),
                              'naming_a_person': len(naming),
                              'naming_someone_not_in_view': wrong_matches,
                              'type': IDS_MATCH},
        'overall': summarise(visits), 'by_mask': summarise_by_mask(visits),
        'visits': [item for item in visits if item['subject'] != 'nobody'],
    }
    return report, records


def _subject(intervals, seconds):
    interval = subject_at(intervals, seconds)
    return interval.subject if interval else NOBODY


def print_rep155_report(report):
    """Print the REP-155 identifier's numbers, wrong confirmations first."""
    overall, matches = report['overall'], report['candidate_matches']
    rate = overall['confirmed_correct_rate']
    print(f'REP-155 identifier ({report["face_source"]}): {report["frames"]} frames of '
          f'{FACES_TRACKED}, {report["faces_skipped"]} face images unusable; model '
          f'{report["model"]}, threshold {report["threshold"]:.3f}')
    print(f'  confirmed WRONG: {overall["confirmed_wrong"]} (patients as another '
          f'{overall["patients_confirmed_wrong"]}, strangers confirmed '
          f'{overall["strangers_confirmed"]}/{overall["stranger_visits"]}, empty stretches '
          f'{overall["empty_stretches_confirmed"]})')
    print(f'  patients confirmed correct: {overall["confirmed_correct"]}/'
          f'{overall["patient_visits"]}' + (f' ({100 * rate:.1f}%)' if rate is not None else '')
          + f', unknown {overall["patients_unknown"]}, pending {overall["patients_pending"]}')
    print(f'  {CANDIDATE_MATCHES}: {matches["published"]} published, '
          f'{matches["naming_a_person"]} naming a patient, '
          f'{matches["naming_someone_not_in_view"]} naming someone not in view')
    latency = report['latency_ms']
    if latency['median'] is not None:
        print(f'  latency per frame: median {latency["median"]:.1f} ms, p95 '
              f'{latency["p95"]:.1f} ms')


def eval_rep155_bag(pipeline, bag, labels, out='eval_bag', face_source='cropped',
                    progress=True):
    """Score the REP-155 identifier on a bag's face topics; print, write report.json."""
    import json
    from pathlib import Path
    from face_id_ros.evaluation.labels import load_labels
    intervals = load_labels(labels, pipeline.config.gallery.id_pattern)
    report, _ = evaluate_rep155_bag(bag, intervals, pipeline, face_source, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    print_rep155_report(report)
    print(f'  report in {out}/')
    return report
