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
Replay a recorded ward round through the pipeline and score it (``face-id eval-bag``).

Two paces. ``fast`` processes every frame as fast as possible, optionally describing frames
(decode, detect, align, embed) in worker processes while matching and tracking stay in order
in this one. ``recorded`` has a feeder thread offer each frame at its recorded time to the
node's NewestFrameSlot while the worker processes the newest frame, so frames that arrive
during processing are dropped exactly as on the robot. Each visit (a labels interval with
a patient or a stranger in view) is scored:

- ``correct``: the patient in view was confirmed, and nobody else was, at any frame;
- ``wrong``: any face was confirmed as another patient (for a stranger: as anyone) - the
  number that must stay 0; a confirmation while nobody is in view is wrong too;
- ``unknown`` / ``pending``: never confirmed, and the visit's last processed face was
  ``unknown`` (matches nobody) or still ``pending`` (a visit with no face found is pending).

Visits the labels mark as masked are also summed up apart from the unmasked ones.

Time to confirm runs from the visit's first frame to the moment the confirming frame's result
was ready: its recorded time plus its processing latency (fast), or the replay clock when the
worker finished it (recorded). The real-time factor is the recorded duration over the time
needed to process every frame (frames x mean per-frame latency): at 1 or more, a worker keeps
up with the camera and drops nothing.
"""

import collections
import contextlib
from dataclasses import dataclass, field
import multiprocessing
from pathlib import Path
import shutil
import threading
import time

from face_id_ros.core.errors import FaceIdError, ImageDecodeError
from face_id_ros.core.ros_messages import stamp_seconds
from face_id_ros.evaluation.labels import NOBODY, STRANGER
import numpy as np
import yaml

CAMERA_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
PATIENT_ID_TOPIC = '/patient_id'
DETECTION_ARRAY = 'vision_msgs/msg/Detection2DArray'
PACES = ('fast', 'recorded')


@dataclass(frozen=True)
class CameraFrame:
    """One camera message: receive time (ns and seconds since the bag start) and its CDR."""

    stamp_ns: int
    seconds: float
    msgtype: str
    raw: bytes


@dataclass(frozen=True)
class FaceRecord:
    """One face of a processed frame: track, status, confirmed id, best candidate, mask."""

    track_id: str
    status: str
    patient_id: str | None
    best_id: str | None
    best_cosine: float | None
    masked: bool | None = None


@dataclass(frozen=True)
class FrameRecord:
    """One processed frame: when it was received and done (seconds), latencies, faces."""

    seconds: float
    done: float
    latency_ms: float
    end_to_end_ms: float
    faces: tuple
    stage_ms: dict = field(default_factory=dict)


class CameraBag:
    """The camera topic of a rosbag2 (sqlite3 or mcap; Image or CompressedImage)."""

    def __init__(self, path, topic=None):
        """Open the bag and find its camera topic: ``topic``, or the only image topic."""
        from rosbags.rosbag2 import Reader, ReaderError
        self.path = Path(path)
        try:
            with Reader(self.path) as reader:
                connections = camera_connections(reader.connections, topic)
                self.start_ns = reader.start_time
                self.storage = _storage_identifier(reader)
        except (OSError, ReaderError) as error:
            raise FaceIdError(f'cannot read bag {self.path}: {error}')
        self.topic = connections[0].topic
        self.msgtype = connections[0].msgtype
        self.count = sum(connection.msgcount for connection in connections)

    def frames(self):
        """Yield the camera frames in receive order; the bag is opened by the caller's thread."""
        from rosbags.rosbag2 import Reader
        with Reader(self.path) as reader:
            connections = camera_connections(reader.connections, self.topic)
            for connection, stamp_ns, raw in reader.messages(connections):
                yield CameraFrame(stamp_ns, (stamp_ns - self.start_ns) / 1e9,
                                  connection.msgtype, raw)


def camera_connections(connections, topic=None):
    """Return the image connections of ``topic``, or of the bag's only camera topic."""
    # REP-155 face crops (/humans/faces/<id>/cropped...) are images, not a camera.
    images = [item for item in connections
              if item.msgtype in CAMERA_TYPES and not item.topic.startswith('/humans/')]
    if topic:
        chosen = [item for item in images if item.topic == topic]
        if not chosen:
            found = sorted({f'{item.topic} ({item.msgtype})' for item in connections})
            raise FaceIdError(f'the bag has no Image or CompressedImage topic {topic}; '
                              f'its topics: {found}')
        return chosen
    topics = sorted({item.topic for item in images})
    if len(topics) != 1:
        raise FaceIdError(f'the bag has {len(topics)} image topics {topics}; '
                          'choose one with --topic' if topics else
                          'the bag has no sensor_msgs Image or CompressedImage topic')
    return images


def _storage_identifier(reader):
    """Return ``sqlite3`` or ``mcap``, from the bag's metadata or its file name."""
    metadata = reader.path / 'metadata.yaml'
    if metadata.is_file():
        return yaml.safe_load(metadata.read_text(encoding='utf-8'))[
            'rosbag2_bagfile_information']['storage_identifier']
    return 'mcap' if reader.path.suffix == '.mcap' else 'sqlite3'


class Replay:
    """Feed a camera bag through a pipeline at one pace; keep what it would have published."""

    def __init__(self, bag, pipeline, output_bag=None, progress=True, workers=1):
        """
        Prepare the replay; ``output_bag`` is where the ``/patient_id`` bag goes.

        With ``workers`` > 1 the fast pace describes frames (decode, detect, align, embed) in
        that many processes, each with its own pipeline built from the same config, and
        matches and tracks them here in recorded order: the tracker sees what it would see
        with one worker.
        """
        from face_id_ros.core.ros_messages import rosbags_typestore
        if workers < 1:
            raise FaceIdError(f'workers must be at least 1, got {workers}')
        self.bag, self.pipeline, self.workers = bag, pipeline, workers
        self.typestore = rosbags_typestore()
        self.output_bag, self.progress = output_bag, progress
        self.records, self.frame_seconds, self.undecodable = [], [], 0
        self._writer = self._connection = None

    def run(self, pace):
        """Replay the bag at ``pace`` (fast or recorded); return (wall seconds, dropped)."""
        from tqdm import tqdm
        from face_id_ros.evaluation.wardbag import BagWriter
        if pace not in PACES:
            raise FaceIdError(f'pace must be one of {PACES}, got {pace!r}')
        self.pipeline.tracker.reset()
        self.records, self.frame_seconds, self.undecodable = [], [], 0
        with contextlib.ExitStack() as stack:
            if self.output_bag:  # closed on success, aborted on an error
                self._writer = stack.enter_context(BagWriter(self.output_bag,
                                                             self.bag.storage))
                self._connection = self._writer.add_connection(PATIENT_ID_TOPIC,
                                                               DETECTION_ARRAY)
            pool = None
            if pace == 'fast' and self.workers > 1:
                pool = stack.enter_context(_describer_pool(self.pipeline.config, self.workers))
            bar = stack.enter_context(tqdm(total=self.bag.count, desc=f'eval-bag {pace}',
                                           unit='frame', disable=not self.progress))
            started = time.perf_counter()
            if pool is not None:
                dropped = self._run_pooled(bar, pool)
            else:
                dropped = self._run_fast(bar) if pace == 'fast' else self._run_recorded(bar)
            wall = time.perf_counter() - started
        self._writer = None
        return wall, dropped

    def _run_fast(self, bar):
        for frame in self.bag.frames():
            self.frame_seconds.append(frame.seconds)
            self._process(frame, time.perf_counter())
            bar.update()
        return 0

    def _run_pooled(self, bar, pool):
        """Describe frames in the pool, a bounded window ahead; conclude them in order."""
        window = collections.deque()
        for frame in self.bag.frames():
            self.frame_seconds.append(frame.seconds)
            window.append((frame, time.perf_counter(),
                           pool.apply_async(_describe_in_worker, (frame,))))
            if len(window) > WINDOW_PER_WORKER * self.workers:
                self._conclude_pooled(*window.popleft())
                bar.update()
        while window:
            self._conclude_pooled(*window.popleft())
            bar.update()
        return 0

    def _conclude_pooled(self, frame, arrived, pending):
        described = pending.get()
        if described is None:
            self.undecodable += 1
            return
        batch, describe_ms = described
        message = self.typestore.deserialize_cdr(frame.raw, frame.msgtype)
        self._finish(frame, message, batch, describe_ms, arrived)

    def _run_recorded(self, bar):
        """Offer frames at their recorded times from a feeder thread; process the newest."""
        from face_id_ros.core.newest_frame import NewestFrameSlot
        slot, stop, failure = NewestFrameSlot(), threading.Event(), []
        clock_zero = time.perf_counter()

        def feed():
            try:
                for frame in self.bag.frames():
                    if stop.wait(max(0.0, clock_zero + frame.seconds - time.perf_counter())):
                        return
                    slot.offer((frame, time.perf_counter()))
                    self.frame_seconds.append(frame.seconds)
                    bar.update()
            except BaseException as error:  # handed to the worker, which re-raises it
                failure.append(error)
            finally:
                slot.close()

        feeder = threading.Thread(target=feed, name='bag-feeder', daemon=True)
        feeder.start()
        try:
            while (item := slot.take()) is not None:
                frame, arrived = item
                self._process(frame, arrived, clock_zero)
        finally:
            stop.set()
            feeder.join()
        if failure:
            raise failure[0]
        return slot.dropped

    def _process(self, frame, arrived, clock_zero=None):
        """Describe one frame here, then conclude it (see ``_finish``)."""
        started = time.perf_counter()
        described = describe_frame(self.pipeline, self.typestore, frame)
        if described is None:
            self.undecodable += 1  # the node skips such frames too
            return
        message, batch = described
        self._finish(frame, message, batch, (time.perf_counter() - started) * 1000.0,
                     arrived, clock_zero)

    def _finish(self, frame, message, batch, describe_ms, arrived, clock_zero=None):
        """
        Match and track a described frame; record it and write what would be published.

        ``arrived`` is when the frame was offered (perf_counter seconds). With the replay's
        ``clock_zero`` the frame is done at that clock's reading; without (fast pace), at its
        recorded time plus its processing latency.
        """
        from face_id_ros.core.patient_id import patient_detections
        from face_id_ros.core.ros_messages import build_detection_array
        started = time.perf_counter()
        result = self.pipeline.conclude(batch, stamp_seconds(message.header.stamp))
        done = time.perf_counter()
        latency_ms = describe_ms + (done - started) * 1000.0
        done_seconds = (frame.seconds + latency_ms / 1000.0 if clock_zero is None
                        else done - clock_zero)
        self.records.append(FrameRecord(frame.seconds, done_seconds, latency_ms,
                                        (done - arrived) * 1000.0, face_records(result),
                                        result.timings_ms))
        if self._writer:
            array = build_detection_array(self.typestore.types, message.header,
                                          patient_detections(result))
            self._writer.write(self._connection,
                               self.bag.start_ns + round(done_seconds * 1e9), array)


def describe_frame(pipeline, typestore, frame):
    """Deserialise, decode and describe a CameraFrame; return (message, FaceBatch) or None."""
    from face_id_ros.core.image_codec import decode_any
    started = time.perf_counter()
    message = typestore.deserialize_cdr(frame.raw, frame.msgtype)
    try:
        image = decode_any(message)
    except ImageDecodeError:
        return None
    decoded = time.perf_counter()
    batch = pipeline.describe(image)
    batch.timings_ms = {'decode': (decoded - started) * 1000.0, **batch.timings_ms}
    return message, batch


# Worker processes of the pooled fast pace: each builds its own pipeline once.
WINDOW_PER_WORKER = 4     # frames in flight per worker: enough to keep each one busy
WORKER_START_S = 120.0
_worker = {}


@contextlib.contextmanager
def _describer_pool(config, workers):
    """Start ``workers`` spawned processes with a pipeline each; wait until all are ready."""
    context = multiprocessing.get_context('spawn')  # mediapipe's threads do not survive fork
    ready = context.Barrier(workers + 1)
    with context.Pool(workers, _start_worker, (config, ready)) as pool:
        try:
            ready.wait(WORKER_START_S)
        except threading.BrokenBarrierError:
            raise FaceIdError(f'{workers} replay workers did not start within '
                              f'{WORKER_START_S:.0f} s')
        yield pool


def _start_worker(config, ready):
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.core.ros_messages import rosbags_typestore
    _worker['pipeline'], _worker['typestore'] = Pipeline(config), rosbags_typestore()
    ready.wait(WORKER_START_S)


def _describe_in_worker(frame):
    """Describe one frame; return (FaceBatch without crops, milliseconds) or None."""
    started = time.perf_counter()
    described = describe_frame(_worker['pipeline'], _worker['typestore'], frame)
    if described is None:
        return None
    batch = described[1]
    batch.crops = None  # the main process never needs them: less to pickle
    return batch, (time.perf_counter() - started) * 1000.0


def face_records(result):
    """Summarise a pipeline FrameResult's faces for scoring and plots."""
    records = []
    for face in result.faces:
        best = face.candidates[0] if face.candidates else None
        records.append(FaceRecord(face.track_id, face.status, face.patient_id,
                                  best.patient_id if best else None,
                                  best.cosine if best else None, face.masked))
    return tuple(records)


# Scoring ------------------------------------------------------------------------------------

def score_visits(intervals, records, frame_seconds):
    """
    Score each labelled interval from the processed frames' records.

    ``frame_seconds`` are the receive times of all camera frames (processed or dropped),
    since the bag start. Returns one dict per interval, in time order.
    """
    frame_seconds = np.asarray(frame_seconds, np.float64)
    scored = []
    for index, interval in enumerate(intervals):
        inside = frame_seconds[(frame_seconds >= interval.start)
                               & (frame_seconds < interval.end)]
        processed = [record for record in records if interval.contains(record.seconds)]
        scored.append(_score_interval(index, interval, inside, processed))
    return scored


def _score_interval(index, interval, inside, processed):
    with_face = [record for record in processed if record.faces]
    confirmed = [(record, face.patient_id) for record in with_face for face in record.faces
                 if face.status == 'confirmed']
    wrong = sorted({patient for _, patient in confirmed if patient != interval.subject})
    right = [record for record, patient in confirmed if patient == interval.subject]
    if wrong:
        outcome = 'wrong'
    elif right:
        outcome = 'correct'
    elif with_face and with_face[-1].faces[0].status == 'unknown':
        outcome = 'unknown'
    else:
        outcome = 'pending'
    first = float(inside[0]) if len(inside) else interval.start
    return {
        'index': index, 'subject': interval.subject, 'masked': interval.masked,
        'start': interval.start, 'end': interval.end,
        'frames': int(len(inside)), 'processed': len(processed),
        'frames_with_face': len(with_face),
        'frames_masked': sum(bool(record.faces[0].masked) for record in with_face),
        'outcome': outcome,
        'confirmed_as': wrong or ([interval.subject] if right else []),
        'time_to_confirm_s': round(right[0].done - first, 4) if right and not wrong else None,
    }


def summarise(visits):
    """Count outcomes over patient visits, stranger visits and empty stretches."""
    patients = [item for item in visits if item['subject'] not in (STRANGER, NOBODY)]
    strangers = [item for item in visits if item['subject'] == STRANGER]
    empty = [item for item in visits if item['subject'] == NOBODY]

    def count(items, outcome):
        return sum(item['outcome'] == outcome for item in items)

    times = [item['time_to_confirm_s'] for item in patients
             if item['time_to_confirm_s'] is not None]
    correct = count(patients, 'correct')
    return {
        'confirmed_wrong': count(patients, 'wrong') + count(strangers, 'wrong')
        + count(empty, 'wrong'),
        'patient_visits': len(patients), 'confirmed_correct': correct,
        'confirmed_correct_rate': correct / len(patients) if patients else None,
        'patients_confirmed_wrong': count(patients, 'wrong'),
        'patients_unknown': count(patients, 'unknown'),
        'patients_pending': count(patients, 'pending'),
        'stranger_visits': len(strangers),
        'strangers_confirmed': count(strangers, 'wrong'),
        'strangers_unknown': count(strangers, 'unknown'),
        'strangers_pending': count(strangers, 'pending'),
        'empty_stretches': len(empty), 'empty_stretches_confirmed': count(empty, 'wrong'),
        'time_to_confirm_s': _spread(times, 3),
    }


def summarise_by_mask(visits):
    """Summarise the masked and the unmasked visits apart (empty stretches are neither)."""
    groups = {'unmasked': [item for item in visits
                           if item['subject'] != NOBODY and not item['masked']],
              'masked': [item for item in visits if item['masked']]}
    return {name: {key: value for key, value in summarise(items).items()
                   if not key.startswith('empty_stretches')}
            for name, items in groups.items()}


def _spread(values, digits):
    if not len(values):
        return {'median': None, 'p95': None, 'max': None}
    return {'median': round(float(np.median(values)), digits),
            'p95': round(float(np.percentile(values, 95)), digits),
            'max': round(float(np.max(values)), digits)}


def evaluate_bag(bag, intervals, pipeline, pace='fast', output_bag=None, progress=True,
                 workers=1):
    """
    Replay ``bag`` (a CameraBag) at ``pace`` and score it against the label intervals.

    Returns (report dict, frame records). ``output_bag``, when given, receives the
    ``/patient_id`` Detection2DArray messages, stamped with the source images' headers.
    """
    replay = Replay(bag, pipeline, output_bag, progress, workers)
    wall, dropped = replay.run(pace)
    records, frame_seconds = replay.records, replay.frame_seconds
    visits = score_visits(intervals, records, frame_seconds)
    latencies = [record.latency_ms for record in records]
    intervals_s = np.diff(frame_seconds)
    duration = (frame_seconds[-1] - frame_seconds[0] + float(np.median(intervals_s))
                if len(intervals_s) else 0.0)
    needed = len(frame_seconds) * float(np.mean(latencies)) / 1000.0 if latencies else 0.0
    metadata = pipeline.embedder.metadata
    report = {
        'bag': str(bag.path), 'topic': bag.topic, 'msgtype': bag.msgtype, 'pace': pace,
        'model': f'{metadata.name} {metadata.version}',
        'detector': f'{pipeline.config.detector.backend}/'
                    f'{pipeline.config.detector.blazeface_range}',
        'threads': pipeline.config.embedder.threads,
        'workers': workers if pace == 'fast' else 1,
        'threshold': pipeline.threshold, 'margin': pipeline.config.matcher.margin,
        'gallery_revision': pipeline.snapshot.revision,
        'frames': len(frame_seconds), 'processed': len(records), 'dropped': int(dropped),
        'undecodable': replay.undecodable, 'duration_s': round(duration, 3),
        'wall_s': round(wall, 3),
        'frames_per_s': round(len(records) / wall, 2) if wall > 0 else None,
        'real_time_factor': round(duration / needed, 3) if needed > 0 else None,
        'latency_ms': _spread(latencies, 2),
        'end_to_end_ms': _spread([record.end_to_end_ms for record in records], 2),
        'stage_median_ms': {stage: round(float(np.median([record.stage_ms[stage]
                                                          for record in records])), 2)
                            for stage in (records[0].stage_ms if records else ())},
        'overall': summarise(visits),
        'by_mask': summarise_by_mask(visits),
        'visits': [item for item in visits if item['subject'] != NOBODY],
        'empty_stretches_confirmed': [item for item in visits
                                      if item['subject'] == NOBODY
                                      and item['outcome'] == 'wrong'],
    }
    return report, records


# Outputs ------------------------------------------------------------------------------------

def frame_outcome(record, subject):
    """Classify a processed frame with faces against who was in view."""
    confirmed = {face.patient_id for face in record.faces if face.status == 'confirmed'}
    if confirmed - {subject}:
        return 'wrong'
    if confirmed:
        return 'correct'
    return 'unknown' if record.faces[0].status == 'unknown' else 'pending'


def write_outputs(out, report, records, intervals):
    """Write report.json and the timeline, score-trace and latency figures into ``out``."""
    import json
    from face_id_ros.evaluation import plots
    from face_id_ros.evaluation.labels import subject_at
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    labelled = [(record, subject_at(intervals, record.seconds)) for record in records
                if record.faces]
    labelled = [(record, interval.subject) for record, interval in labelled if interval]
    title = f'{Path(report["bag"]).name}, {report["pace"]} pace, {report["model"]}'
    plots.plot_ward_timeline([(item.start, item.end, item.subject, item.masked)
                              for item in intervals],
                             [(record.seconds, frame_outcome(record, subject))
                              for record, subject in labelled],
                             out / 'timeline.png', f'Who was in view, what was published: '
                             f'{title}')
    scored = [(record, subject) for record, subject in labelled
              if record.faces[0].best_cosine is not None]
    plots.plot_score_trace([record.seconds for record, _ in scored],
                           [record.faces[0].best_cosine for record, _ in scored],
                           [record.faces[0].best_id == subject for record, subject in scored],
                           report['threshold'], out / 'scores.png',
                           f'Best candidate per frame: {title}')
    latencies = {'decode + pipeline': [record.latency_ms for record in records]}
    if report['pace'] == 'recorded':
        latencies['arrival to result'] = [record.end_to_end_ms for record in records]
    plots.plot_latency_histogram(latencies, out / 'latency.png', f'Latency: {title}')


def fresh_output_bag(path):
    """Return ``path`` for a new output bag, removing an earlier bag written there."""
    path = Path(path)
    if path.exists():
        if not (path / 'metadata.yaml').is_file():
            raise FaceIdError(f'{path} exists and is not a bag; choose another --out')
        shutil.rmtree(path)
    return path


def print_report(report):
    """Print the numbers that matter, wrong confirmations first."""
    overall = report['overall']
    rate = overall['confirmed_correct_rate']
    confirm = overall['time_to_confirm_s']
    print(f'{report["pace"]} pace: {report["frames"]} frames of {report["topic"]} '
          f'({report["duration_s"]:.1f} s), {report["processed"]} processed, '
          f'{report["dropped"]} dropped; model {report["model"]}, '
          f'threshold {report["threshold"]:.3f}')
    print(f'  confirmed WRONG: {overall["confirmed_wrong"]} (patients as another '
          f'{overall["patients_confirmed_wrong"]}, strangers confirmed '
          f'{overall["strangers_confirmed"]}/{overall["stranger_visits"]}, empty stretches '
          f'{overall["empty_stretches_confirmed"]})')
    print(f'  patients confirmed correct: {overall["confirmed_correct"]}/'
          f'{overall["patient_visits"]}'
          + (f' ({100 * rate:.1f}%)' if rate is not None else '')
          + f', unknown {overall["patients_unknown"]}, pending {overall["patients_pending"]}'
          f'; strangers unknown {overall["strangers_unknown"]}, pending '
          f'{overall["strangers_pending"]}')
    if confirm['median'] is not None:
        print(f'  time to confirm: median {confirm["median"]:.2f} s, p95 {confirm["p95"]:.2f} s')
    if report['by_mask']['masked']['patient_visits'] or \
            report['by_mask']['masked']['stranger_visits']:
        print_mask_table(report['by_mask'])
    latency = report['latency_ms']
    if latency['median'] is not None:
        print(f'  latency per frame: median {latency["median"]:.1f} ms, p95 '
              f'{latency["p95"]:.1f} ms; {report["frames_per_s"]:.1f} frames/s processed '
              f'({report["workers"]} worker(s)); '
              f'real-time factor {report["real_time_factor"]:.2f}')
        print('  median ms per stage: ' + ', '.join(
            f'{stage} {value:.1f}' for stage, value in report['stage_median_ms'].items()))


def print_mask_table(by_mask):
    """Print confirmed correct and wrong, strangers named, time to confirm: masked or not."""
    print(f'  {"visits":<9} {"patients":>8} {"confirmed":>15} {"wrong":>5} '
          f'{"strangers":>9} {"named":>5} {"median confirm":>14}')
    for name, group in by_mask.items():
        rate = group['confirmed_correct_rate']
        confirmed = f'{group["confirmed_correct"]}' + (
            f' ({100 * rate:.1f}%)' if rate is not None else '')
        median = group['time_to_confirm_s']['median']
        print(f'  {name:<9} {group["patient_visits"]:>8} {confirmed:>15} '
              f'{group["patients_confirmed_wrong"]:>5} {group["stranger_visits"]:>9} '
              f'{group["strangers_confirmed"]:>5} '
              f'{"-" if median is None else f"{median:.2f} s":>14}')


def eval_bag(pipeline, enrolled, bag, labels, out='eval_bag', topic=None, pace='fast',
             workers=1, progress=True):
    """
    Replay a bag, print the scores, write the report, plots and ``/patient_id`` bag.

    ``pipeline`` holds the gallery to match against and ``enrolled`` its patient ids;
    ``bag`` is a rosbag2 folder or storage file, ``labels`` its labels YAML, ``topic`` the
    camera topic (default: the only image topic). Returns the report.
    """
    from face_id_ros.evaluation.labels import load_labels
    intervals = load_labels(labels, pipeline.config.gallery.id_pattern)
    missing = sorted({item.subject for item in intervals if item.is_patient} - set(enrolled))
    if missing:
        print(f'warning: labelled patients not in the gallery (never confirmable): {missing}')
    bag = CameraBag(bag, topic)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, records = evaluate_bag(bag, intervals, pipeline, pace,
                                   fresh_output_bag(out / 'patient_id'), progress, workers)
    write_outputs(out, report, records, intervals)
    print_report(report)
    print(f'  report, plots and the /patient_id bag in {out}/')
    return report
