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
Soak test: hours of paced frames with 0 to N real faces, memory and latency recorded.

``face-id soak`` cycles scenes of 0, 1, ... ``max_faces`` real faces (tiles cut around the
faces of real photos, drifting a few pixels a frame and changing in brightness) at a camera's
pace. A second process enrols and removes a visitor in the real gallery file every few
seconds and a reload thread swaps each new revision in while frames run, as the node's
``~/reload_gallery`` service does. Two modes:

- ``pipeline``: ``Pipeline.process`` on each frame, in the pacing thread;
- ``node``: the node's worker path without ROS: a camera thread offers ``sensor_msgs/Image``
  messages to a ``NewestFrameSlot`` and a worker thread runs ``FrameWorker.process`` on the
  newest one (decode, pipeline, ``/patient_id`` message), exactly the calls the node makes.

It writes ``frames.csv`` (one row per processed frame), ``seconds.csv`` (resident memory
once a second), ``minutes.csv``, ``soak.png`` and ``summary.json``, and prints the goal
checks: memory growth after the warm-up and the last minute's p99 latency against the first
minute's. Growth is measured on anonymous resident memory (heap and arenas, where a leak
grows): the resident total also holds pages of the mapped libraries and model files, which
the kernel drops and reloads as other processes need memory.
"""

import csv
from dataclasses import dataclass
import json
import multiprocessing
from pathlib import Path
import queue
import resource
import threading
import time

import cv2
from face_id_ros.core.errors import FaceIdError
import numpy as np

MODES = ('pipeline', 'node')
SCENE_S = 4.0
TILE_CONTEXT = 1.8  # tile side over the face box width: some hair, chin and background
DRIFT_PX = 6.0
RSS_GROWTH_GOAL_MIB = 5.0
P99_RATIO_GOAL = 1.2
VISITOR_ID = 'P-9999'
FRAME_COLUMNS = ('t_s', 'faces_shown', 'faces_found', 'confirmed', 'embedded', 'latency_ms',
                 'gallery_revision')
SECOND_COLUMNS = ('t_s', 'rss_mib', 'anon_mib', 'frames', 'dropped', 'reloads',
                  'gallery_revision')


@dataclass(frozen=True)
class SoakSettings:
    """How long and how hard to soak; see ``soak``."""

    minutes: float = 60.0
    fps: float = 30.0
    max_faces: int = 5
    size: tuple = (640, 480)
    tile_side: int = 200
    reload_every_s: float = 10.0
    warmup_minutes: float = 1.0
    mode: str = 'pipeline'


def memory_mib():
    """Return this process's (resident, anonymous resident) memory now in MiB (Linux /proc)."""
    try:
        with open('/proc/self/status') as stream:
            fields = dict(line.split(':', 1) for line in stream if ':' in line)
        return tuple(int(fields[name].split()[0]) / 1024.0 for name in ('VmRSS', 'RssAnon'))
    except (OSError, KeyError):  # no /proc: the peak is the best the platform offers
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return peak, peak


def people_photos(root, count):
    """Read the first photo of ``count`` people spread evenly over ``root``'s identity folders."""
    from face_id_ros.core.image_files import identity_folders, read_image
    people = list(identity_folders(root).values())
    step = max(1, len(people) // count)
    return [read_image(photos[0]) for photos in people[::step][:count]]


def face_tiles(detector, photos, side):
    """
    Cut a square tile of ``side`` pixels around the largest face of each photo.

    Photos where the detector finds no face are left out; returns the list of tiles.
    """
    tiles = []
    for photo in photos:
        faces = detector.detect(photo)
        if not faces:
            continue
        box = max(faces, key=lambda face: face.box[2] - face.box[0]).box
        centre = (box[:2] + box[2:]) / 2.0
        half = TILE_CONTEXT * (box[2] - box[0]) / 2.0
        pad = int(np.ceil(half))
        padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = (int(round(value - half)) + pad for value in centre)
        crop = padded[y0:y0 + 2 * int(half), x0:x0 + 2 * int(half)]
        tiles.append(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA))
    return tiles


class SceneSchedule:
    """
    The frames of a soak: scenes of 0, 1, ... ``max_faces`` faces, each ``SCENE_S`` long.

    Scene ``k`` shows ``k % (max_faces + 1)`` tiles, the people rotating from scene to scene;
    within a scene the faces drift a few pixels and the light changes, so tracks continue.
    """

    def __init__(self, tiles, settings):
        """``tiles`` are the people's face tiles (at least one), all of one size."""
        if not tiles:
            raise FaceIdError('the soak needs at least one photo with a detectable face')
        self.tiles, self.settings = tiles, settings
        width, height = settings.size
        columns = int(np.ceil(np.sqrt(settings.max_faces * width / height)))
        rows = int(np.ceil(settings.max_faces / columns))
        if tiles[0].shape[0] > min(width / columns, height / rows):
            raise FaceIdError(f'{settings.max_faces} tiles of {tiles[0].shape[0]} px do not fit '
                              f'a {width}x{height} frame side by side; lower --tile-side')
        self.slots = [((index % columns + 0.5) * width / columns,
                       (index // columns + 0.5) * height / rows)
                      for index in range(settings.max_faces)]

    def faces_in(self, seconds):
        """Return how many faces the frame at ``seconds`` shows."""
        return int(seconds // SCENE_S) % (self.settings.max_faces + 1)

    def frame(self, seconds):
        """Return the BGR frame at ``seconds`` since the start, and its face count."""
        width, height = self.settings.size
        scene = int(seconds // SCENE_S)
        count = self.faces_in(seconds)
        frame = np.full((height, width, 3), 96, np.uint8)
        side = self.tiles[0].shape[0]
        for slot, (centre_x, centre_y) in enumerate(self.slots[:count]):
            tile = self.tiles[(scene + slot) % len(self.tiles)]
            phase = 2.0 * np.pi * seconds / 3.0 + slot
            x0 = int(np.clip(centre_x - side / 2 + DRIFT_PX * np.sin(phase), 0, width - side))
            y0 = int(np.clip(centre_y - side / 2 + DRIFT_PX * np.cos(phase), 0, height - side))
            frame[y0:y0 + side, x0:x0 + side] = tile
        brightness = 1.0 + 0.15 * np.sin(2.0 * np.pi * seconds / 20.0)
        return cv2.convertScaleAbs(frame, alpha=brightness), count


def write_gallery_periodically(gallery_config, fingerprint, embedding_size, visitor, period_s,
                               revisions, stop):
    """
    Enrol, then remove, the visitor in the configured gallery every ``period_s`` seconds.

    Runs in its own process, as the enrolment tool does; puts each new revision on the
    ``revisions`` queue (the reload request) until ``stop`` is set.
    """
    from face_id_ros.core.gallery import Gallery
    enrolled = False
    while not stop.wait(period_s):
        with Gallery.from_config(gallery_config, fingerprint, embedding_size,
                                 create=False) as gallery:
            if enrolled:
                revision = gallery.remove_patient(VISITOR_ID)
            else:
                revision = gallery.add_templates(VISITOR_ID, visitor, ['soak visitor'], [1.0])
        enrolled = not enrolled
        revisions.put(revision)


class _Recorder:
    """Per-frame rows, per-second memory and reload counts, written as they come."""

    def __init__(self, out, started):
        self.started = started
        self._frames_file = open(out / 'frames.csv', 'w', newline='')
        self._seconds_file = open(out / 'seconds.csv', 'w', newline='')
        self._frames = csv.writer(self._frames_file)
        self._seconds = csv.writer(self._seconds_file)
        self._frames.writerow(FRAME_COLUMNS)
        self._seconds.writerow(SECOND_COLUMNS)
        self.frames = self.dropped = self.reloads = self.reload_failures = 0
        self.revision = 0
        self.reload_ms = []

    def frame(self, shown, result, latency_ms):
        confirmed = sum(face.status == 'confirmed' for face in result.faces)
        embedded = sum(face.fresh for face in result.faces)
        self._frames.writerow((f'{time.perf_counter() - self.started:.3f}', shown,
                               len(result.faces), confirmed, embedded, f'{latency_ms:.3f}',
                               result.gallery_revision))
        self.frames += 1

    def second(self, now):
        resident, anonymous = memory_mib()
        self._seconds.writerow((f'{now - self.started:.1f}', f'{resident:.2f}',
                                f'{anonymous:.2f}', self.frames, self.dropped, self.reloads,
                                self.revision))
        self._seconds_file.flush()
        self._frames_file.flush()

    def close(self):
        self._frames_file.close()
        self._seconds_file.close()


def soak(config, settings, out, photos=None, progress=True):
    """
    Run the soak described in the module docstring; return its summary.

    ``config`` is the PipelineConfig (its gallery path is replaced by ``out``/gallery.db,
    made fresh with one patient per photo); ``photos`` are BGR images with one face each
    (the sample portrait when None). Raises FaceIdError on bad settings.
    """
    from face_id_ros.core.frame_worker import FrameWorker
    from face_id_ros.core.gallery import Gallery
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.core.ros_messages import rosbags_typestore
    from face_id_ros.evaluation.samples import sample_portrait
    if settings.mode not in MODES:
        raise FaceIdError(f'soak mode must be one of {MODES}, got {settings.mode!r}')
    if settings.minutes <= 0 or settings.fps <= 0 or settings.max_faces < 1:
        raise FaceIdError('soak minutes and fps must be positive and max_faces at least 1')
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gallery_path = out / 'gallery.db'
    for stale in out.glob('gallery.db*'):
        stale.unlink()
    # The soak's throw-away gallery holds sample and LFW faces, no patient: no key needed.
    pipeline = Pipeline(config.replace(gallery={'path': str(gallery_path), 'encryption': 'off'}))
    tiles = face_tiles(pipeline.detector, photos or [sample_portrait()], settings.tile_side)
    schedule = SceneSchedule(tiles, settings)
    patients, visitor = _people(pipeline, tiles, settings.max_faces)
    with Gallery.from_config(pipeline.config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        for index, embedding in enumerate(patients):
            gallery.add_templates(f'P-{index + 1:04d}', embedding, ['soak tile'], [1.0])
    typestore = rosbags_typestore()
    worker = FrameWorker(pipeline, typestore.types)
    first = worker.reload_gallery()
    print(f'soak: {settings.mode} mode, {settings.minutes:g} min at {settings.fps:g} fps, '
          f'0-{settings.max_faces} faces of {len(tiles)} people ({len(patients)} enrolled), '
          f'gallery write every {settings.reload_every_s:g} s, out {out}/')
    context = multiprocessing.get_context('spawn')
    revisions, stop = context.Queue(), context.Event()
    writer = context.Process(
        target=write_gallery_periodically, name='soak-gallery-writer',
        args=(pipeline.config.gallery, pipeline.embedder.fingerprint,
              pipeline.embedder.embedding_size, visitor, settings.reload_every_s, revisions,
              stop), daemon=True)
    recorder = _Recorder(out, time.perf_counter())
    recorder.revision = first.revision
    writer.start()
    reloader = threading.Thread(target=_reload_on_request,
                                args=(worker, revisions, stop, recorder),
                                name='soak-reloader', daemon=True)
    reloader.start()
    try:
        run = _run_node if settings.mode == 'node' else _run_pipeline
        run(worker, schedule, settings, recorder, typestore, progress)
    finally:
        stop.set()
        writer.join(10.0)
        reloader.join(10.0)
        recorder.close()
    summary = summarise(out, settings, recorder)
    print_summary(summary, out)
    return summary


def _people(pipeline, tiles, max_faces):
    """Embed the tiles; return (patients' embeddings, the visitor's embedding)."""
    embeddings = [pipeline.describe(tile).embeddings[:1] for tile in tiles]
    embeddings = [item for item in embeddings if len(item)]
    if len(embeddings) > max_faces:  # one person more than fit a frame is the visitor
        return embeddings[:-1], embeddings[-1]
    # Too few people for a visitor of their own: one nobody resembles, from a fixed seed.
    unit = np.random.default_rng(0).normal(size=(1, pipeline.embedder.embedding_size))
    return embeddings, unit / np.linalg.norm(unit)


def _reload_on_request(worker, revisions, stop, recorder):
    """Swap in each revision the writer announces, as ``~/reload_gallery`` would."""
    while not stop.is_set():
        try:
            revisions.get(timeout=0.5)
        except queue.Empty:
            continue
        started = time.perf_counter()
        try:
            loaded = worker.reload_gallery()
        except FaceIdError:  # the node keeps its snapshot and says so; count it here
            recorder.reload_failures += 1
            continue
        recorder.reload_ms.append((time.perf_counter() - started) * 1000.0)
        recorder.reloads += 1
        recorder.revision = loaded.revision


def _run_pipeline(worker, schedule, settings, recorder, typestore, progress):
    """Process frames in this thread at the camera's pace; a late frame's tick is dropped."""
    from tqdm import tqdm
    started, duration = recorder.started, settings.minutes * 60.0
    last_tick, next_second = -1, 1.0
    with tqdm(total=int(duration), desc='soak', unit='s', disable=not progress,
              mininterval=5.0) as bar:
        while (now := time.perf_counter() - started) < duration:
            tick = int(now * settings.fps)
            if tick == last_tick:
                time.sleep((tick + 1) / settings.fps - now)
                continue
            recorder.dropped += max(0, tick - last_tick - 1)
            last_tick = tick
            image, shown = schedule.frame(tick / settings.fps)
            began = time.perf_counter()
            result = worker.pipeline.process(image, tick / settings.fps)
            recorder.frame(shown, result, (time.perf_counter() - began) * 1000.0)
            if now >= next_second:
                recorder.second(time.perf_counter())
                bar.update(1)
                next_second += 1.0


def _run_node(worker, schedule, settings, recorder, typestore, progress):
    """Offer messages from a camera thread to the newest-frame slot; run them in a worker."""
    from tqdm import tqdm
    from face_id_ros.core.image_codec import encode_image
    from face_id_ros.core.newest_frame import NewestFrameSlot
    from face_id_ros.core.ros_messages import stamp_seconds
    slot, duration = NewestFrameSlot(), settings.minutes * 60.0
    failures = []

    def work():
        while (item := slot.take()) is not None:
            msg, shown = item
            try:
                processed = worker.process(msg)
            except Exception as error:  # as the node, a failing frame is counted, not fatal
                failures.append(repr(error))
                continue
            latency_ms = (time.time() - stamp_seconds(msg.header.stamp)) * 1000.0
            recorder.frame(shown, processed.result, latency_ms)

    thread = threading.Thread(target=work, name='soak-worker', daemon=True)
    thread.start()
    image_type = typestore.types['sensor_msgs/msg/Image']
    header_type = typestore.types['std_msgs/msg/Header']
    time_type = typestore.types['builtin_interfaces/msg/Time']
    started, tick, next_second = recorder.started, 0, 1.0
    try:
        with tqdm(total=int(duration), desc='soak', unit='s', disable=not progress,
                  mininterval=5.0) as bar:
            while (now := time.perf_counter() - started) < duration:
                time.sleep(max(0.0, tick / settings.fps - now))
                image, shown = schedule.frame(tick / settings.fps)
                seconds, nanoseconds = divmod(time.time_ns(), 10**9)
                header = header_type(stamp=time_type(sec=seconds, nanosec=nanoseconds),
                                     frame_id='soak_camera')
                message = image_type(header=header, **encode_image(image))
                # The truth rides along with the message, as a bag's labels do.
                recorder.dropped += int(slot.offer((message, shown)))
                tick += 1
                if now >= next_second:
                    recorder.second(time.perf_counter())
                    bar.update(1)
                    next_second += 1.0
    finally:
        slot.close()
        thread.join(10.0)
    if failures:
        print(f'warning: {len(failures)} frames failed, first: {failures[0]}')


def summarise(out, settings, recorder):
    """Per-minute memory and latency from the CSV files; the goal checks; the plot."""
    from face_id_ros.evaluation import plots
    frames = _read_csv(out / 'frames.csv')
    seconds = _read_csv(out / 'seconds.csv')
    rows = _minute_rows(frames, seconds, settings.minutes)
    with open(out / 'minutes.csv', 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ['minute'])
        writer.writeheader()
        writer.writerows(rows)
    summary = {'mode': settings.mode, 'minutes': settings.minutes, 'fps': settings.fps,
               'max_faces': settings.max_faces, 'frames': recorder.frames,
               'dropped': recorder.dropped, 'gallery_reloads': recorder.reloads,
               'gallery_reload_failures': recorder.reload_failures,
               'gallery_reload_ms_median': _median(recorder.reload_ms),
               'latency_ms_p50': _percentile(frames.get('latency_ms'), 50),
               'latency_ms_p99': _percentile(frames.get('latency_ms'), 99),
               'latency_ms_p50_by_faces_shown': {
                   int(shown): _percentile(frames['latency_ms'][frames['faces_shown'] == shown],
                                           50)
                   for shown in np.unique(frames['faces_shown'])},
               'embedded_per_frame_by_faces_shown': {
                   int(shown): round(float(frames['embedded'][frames['faces_shown'] == shown]
                                           .mean()), 3)
                   for shown in np.unique(frames['faces_shown'])},
               **_goal_checks(seconds, rows, settings)}
    if rows:
        plots.plot_soak(seconds['t_s'] / 60.0, seconds['rss_mib'], seconds['anon_mib'],
                        [row['minute'] + 0.5 for row in rows],
                        [row['latency_ms_p50'] for row in rows],
                        [row['latency_ms_p99'] for row in rows], out / 'soak.png',
                        f'soak ({settings.mode} mode): {settings.fps:g} fps, '
                        f'0-{settings.max_faces} faces, gallery write every '
                        f'{settings.reload_every_s:g} s')
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def _read_csv(path):
    """Return a CSV of numbers as {column: float array}."""
    with open(path, newline='') as stream:
        reader = csv.reader(stream)
        header = next(reader)
        values = np.array([[float(item) for item in row] for row in reader], np.float64)
    values = values.reshape(-1, len(header))
    return {name: values[:, index] for index, name in enumerate(header)}


def _minute_rows(frames, seconds, minutes):
    """One row per minute of a ``minutes`` run: frames, faces, latency, resident memory."""
    count = int(np.ceil(minutes))
    frame_minute = np.clip(frames['t_s'] // 60, 0, count - 1)
    memory_minute = np.clip(seconds['t_s'] // 60, 0, count - 1)
    rows = []
    for minute in range(count):
        in_minute = frame_minute == minute
        if not in_minute.any():
            continue
        memory = seconds['anon_mib'][memory_minute == minute]
        latency = frames['latency_ms'][in_minute]
        rows.append({'minute': minute, 'frames': int(in_minute.sum()),
                     'faces_found_mean': round(float(frames['faces_found'][in_minute].mean()),
                                               3),
                     'confirmed_mean': round(float(frames['confirmed'][in_minute].mean()), 3),
                     'embedded_mean': round(float(frames['embedded'][in_minute].mean()), 3),
                     'latency_ms_p50': round(float(np.percentile(latency, 50)), 3),
                     'latency_ms_p99': round(float(np.percentile(latency, 99)), 3),
                     'latency_ms_max': round(float(latency.max()), 3),
                     'anon_mib_median': round(float(np.median(memory)), 2)
                     if len(memory) else None})
    return rows


def _goal_checks(seconds, rows, settings):
    """Memory growth from the end of the warm-up to the end; last vs first minute's p99."""
    checks = {}
    warm = seconds['t_s'] >= settings.warmup_minutes * 60.0
    if warm.any():
        anonymous = seconds['anon_mib']
        growth = float(anonymous[-1] - anonymous[warm][0])
        checks.update(anon_mib_after_warmup=float(anonymous[warm][0]),
                      anon_mib_end=float(anonymous[-1]),
                      rss_mib_after_warmup=float(seconds['rss_mib'][warm][0]),
                      rss_mib_end=float(seconds['rss_mib'][-1]),
                      memory_growth_mib=round(growth, 2),
                      memory_goal_met=growth < RSS_GROWTH_GOAL_MIB)
    if len(rows) >= 2:
        ratio = rows[-1]['latency_ms_p99'] / rows[0]['latency_ms_p99']
        checks.update(p99_first_minute_ms=rows[0]['latency_ms_p99'],
                      p99_last_minute_ms=rows[-1]['latency_ms_p99'],
                      p99_ratio=round(ratio, 3), p99_goal_met=ratio <= P99_RATIO_GOAL)
    return checks


def _median(values):
    return round(float(np.median(values)), 3) if len(values) else None


def _percentile(values, percent):
    return round(float(np.percentile(values, percent)), 3) if values is not None and len(
        values) else None


def print_summary(summary, out):
    """Print the soak's figures and its goal checks."""
    print(f'soak {summary["mode"]}: {summary["frames"]} frames processed, '
          f'{summary["dropped"]} dropped, latency p50 {summary["latency_ms_p50"]} ms, '
          f'p99 {summary["latency_ms_p99"]} ms; {summary["gallery_reloads"]} gallery '
          f'reloads (median {summary["gallery_reload_ms_median"]} ms, '
          f'{summary["gallery_reload_failures"]} failed)')
    print('  faces shown:            ' + ''.join(
        f'{shown:>8}' for shown in summary['latency_ms_p50_by_faces_shown']))
    print('  latency p50 (ms):       ' + ''.join(
        f'{value:8.2f}' for value in summary['latency_ms_p50_by_faces_shown'].values()))
    print('  faces embedded a frame: ' + ''.join(
        f'{value:8.2f}' for value in summary['embedded_per_frame_by_faces_shown'].values()))
    if 'memory_growth_mib' in summary:
        verdict = 'met' if summary['memory_goal_met'] else 'NOT met'
        print(f'  anonymous resident memory {summary["anon_mib_after_warmup"]:.1f} MiB after '
              f'the warm-up, {summary["anon_mib_end"]:.1f} MiB at the end: growth '
              f'{summary["memory_growth_mib"]:+.2f} MiB (goal < {RSS_GROWTH_GOAL_MIB:g}: '
              f'{verdict}); resident total {summary["rss_mib_after_warmup"]:.1f} -> '
              f'{summary["rss_mib_end"]:.1f} MiB')
    if 'p99_ratio' in summary:
        verdict = 'met' if summary['p99_goal_met'] else 'NOT met'
        print(f'  p99 latency first minute {summary["p99_first_minute_ms"]:.2f} ms, last '
              f'minute {summary["p99_last_minute_ms"]:.2f} ms: x{summary["p99_ratio"]:.2f} '
              f'(goal <= x{P99_RATIO_GOAL:g}: {verdict})')
    else:
        print('  p99 check needs two whole minutes')
    print(f'  frames.csv, seconds.csv, minutes.csv, soak.png, summary.json in {out}/')
