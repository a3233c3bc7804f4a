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
A synthetic, reproducible ward round as a rosbag2, with labels (``face-id make-ward-bag``).

Each visit is a few seconds of one person walking up to the robot's camera: one photo
(never one used for enrolment) pasted with a feathered head-and-shoulders mask onto a blurred,
dimmed ward, growing from a 90 px to a 220 px face (BlazeFace short range finds every face
from about 90 px in 640x480, 60% of them at 60 px), drifting and swaying, rolling a few
degrees, under changing light, with motion blur on some frames, a hand or cup hiding part of
the face for a while, and sensor noise. Empty frames separate the visits; strangers visit
too. A share of the visits (``masked_share``, patients and strangers alike) wears a face mask,
painted on the photo at the detected face's landmarks (evaluation.synthetic_masks) before the
photo is pasted, so it follows the face through every frame of the visit; the labels say
which visits were masked. Everything is drawn from one seed, so a benchmark bag can be
rebuilt exactly.

Bags are written with ``rosbags`` and their ``metadata.yaml`` rewritten in version 5, the
newest that Humble's ``ros2 bag play`` reads (Jazzy reads it too).
"""

import dataclasses
from dataclasses import dataclass, fields
import os
from pathlib import Path

import cv2
from face_id_ros.core.errors import ConfigError, FaceIdError
from face_id_ros.core.image_files import read_image
from face_id_ros.evaluation.labels import Interval, NOBODY, STRANGER
from face_id_ros.evaluation.synthetic_masks import paint_mask_on_face
import numpy as np
import yaml

# Newest rosbag2 metadata version Humble reads: v6+ fields are ignored there, but v9 writes
# QoS profiles as a YAML list where Humble expects a string, so v5 is what Humble writes.
HUMBLE_METADATA_VERSION = 5
# rosbags writes bag format 8 or 9; 8 keeps QoS profiles as a string, as Humble expects.
ROSBAGS_WRITER_VERSION = 8
# Frame 0 of every synthetic bag: 2026-01-01T00:00:00Z, so reruns give identical stamps.
FIRST_STAMP_NS = 1_767_225_600 * 10**9
# BlazeFace box width over photo width in LFW (median of 150 photos: 0.42): the fallback
# when the detector finds no face in a photo.
PHOTO_FACE_FRACTION = 0.42
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'


@dataclass(frozen=True)
class WardRecipe:
    """How a synthetic ward round looks: frame rate and size, visit pacing, faces, format."""

    fps: float = 15.0
    width: int = 640
    height: int = 480
    visit_seconds: tuple = (3.0, 5.0)
    gap_seconds: tuple = (1.0, 2.0)
    face_width: tuple = (90.0, 220.0)
    encoding: str = 'jpeg'
    storage: str = 'sqlite3'
    topic: str = ''
    frame_id: str = 'camera_color_optical_frame'
    jpeg_quality: int = 90
    masked_share: float = 0.0  # of the patient visits and of the strangers': masks on
    seed: int = 0

    def __post_init__(self):
        """Refuse values that cannot make a bag, saying which and why."""
        if not 1.0 <= self.fps <= 240.0:
            raise ConfigError(f'fps must be within 1..240, got {self.fps}')
        if self.width < 64 or self.height < 64:
            raise ConfigError(f'frame size {self.width}x{self.height} is too small')
        for name in ('visit_seconds', 'gap_seconds', 'face_width'):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(f'{name} must be a (low, high) pair with 0 < low <= high, '
                                  f'got {getattr(self, name)}')
        if self.encoding not in ('bgr8', 'jpeg'):
            raise ConfigError(f'encoding must be bgr8 or jpeg, got {self.encoding!r}')
        if self.storage not in ('sqlite3', 'mcap'):
            raise ConfigError(f'storage must be sqlite3 or mcap, got {self.storage!r}')
        if not 0.0 <= self.masked_share <= 1.0:
            raise ConfigError(f'masked_share must be within 0..1, got {self.masked_share}')

    @classmethod
    def from_dict(cls, mapping, source='recipe'):
        """Build from a mapping (e.g. a YAML section), refusing unknown keys."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(mapping or {}) - known)
        if unknown:
            raise ConfigError(f'{source}: unknown key(s) {unknown}; known: {sorted(known)}')
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in (mapping or {}).items()}
        return cls(**values)

    @property
    def camera_topic(self):
        """Return the camera topic; compressed frames follow image_transport's naming."""
        if self.topic:
            return self.topic
        return '/camera/image_raw' + ('/compressed' if self.encoding == 'jpeg' else '')

    @property
    def msgtype(self):
        """Return the ROS message type of the frames."""
        return IMAGE_TYPE if self.encoding == 'bgr8' else COMPRESSED_TYPE


@dataclass(frozen=True)
class Visit:
    """One person in front of the camera: a patient id or ``stranger``, their photo, a mask."""

    subject: str
    photo: str
    masked: bool = False


def plan_visits(patients, strangers, visits_per_patient, seed, masked_share=0.0):
    """
    Return the visits of a round in a seeded random order.

    ``patients`` maps patient ids to photos that were not used for enrolment; each patient
    visits ``visits_per_patient`` times, with a different photo while there are any.
    ``strangers`` maps names to photos; each stranger visits once. ``masked_share`` of the
    patient visits and the same share of the stranger visits (rounded) wear a mask; the
    visits, their photos and their order are those of the same round without masks.
    """
    random = np.random.default_rng([seed, 1])
    visits = []
    for patient_id, photos in sorted(patients.items()):
        order = random.permutation(len(photos))
        visits += [Visit(patient_id, photos[order[index % len(photos)]])
                   for index in range(visits_per_patient)]
    visits += [Visit(STRANGER, photos[random.integers(len(photos))])
               for _, photos in sorted(strangers.items())]
    visits = [visits[index] for index in random.permutation(len(visits))]
    return _put_masks_on(visits, masked_share, np.random.default_rng([seed, 4]))


def _put_masks_on(visits, share, random):
    """Mask ``share`` of the patient visits and of the stranger visits, drawn at random."""
    chosen = set()
    for is_stranger in (False, True):
        group = [index for index, visit in enumerate(visits)
                 if (visit.subject == STRANGER) == is_stranger]
        chosen.update(random.permutation(group)[:round(share * len(group))].tolist())
    return [dataclasses.replace(visit, masked=index in chosen)
            for index, visit in enumerate(visits)]


def make_ward_bag(bag_path, visits, recipe, progress=True, frame_hook=None):
    """
    Write the ward round as a rosbag2 at ``bag_path``; return its label intervals.

    Frames are ``recipe.fps`` apart from FIRST_STAMP_NS; each interval runs from half a frame
    before its first frame to half a frame before the next interval's, so every frame falls
    clearly inside one interval. A masked visit whose photo shows no face the detector finds
    cannot be masked: it is shown unmasked and its interval says so. ``frame_hook(writer,
    stamp_ns, message)``, when given, writes more topics for each camera message
    (``--rep155``).
    """
    from tqdm import tqdm
    from face_id_ros.core.config import DetectorConfig
    from face_id_ros.core.detection import make_detector
    if not visits:
        raise FaceIdError('a ward round needs at least one visit')
    random = np.random.default_rng([recipe.seed, 2])
    size = (recipe.width, recipe.height)
    background = ward_background(size, random)
    noise = SensorNoise(size, random)
    detector = make_detector(DetectorConfig(min_score=0.5, min_face_size=16))
    try:  # every photo is read before the bag is created, so a bad one leaves no bag
        cutouts = {visit.photo: load_cutout(visit.photo, detector) for visit in visits}
    finally:
        detector.close()
    segments = [(NOBODY, None, _frames(recipe.gap_seconds, recipe.fps, random))]
    for visit in visits:
        segments.append((visit.subject, visit, _frames(recipe.visit_seconds, recipe.fps,
                                                       random)))
        segments.append((NOBODY, None, _frames(recipe.gap_seconds, recipe.fps, random)))
    total = sum(count for _, _, count in segments)
    intervals, first = [], 0
    with BagWriter(bag_path, recipe.storage) as writer, \
            tqdm(total=total, desc='make-ward-bag', unit='frame', disable=not progress) as bar:
        connection = writer.add_connection(recipe.camera_topic, recipe.msgtype)
        for index, (subject, visit, count) in enumerate(segments):
            scene_random = np.random.default_rng([recipe.seed, 3, index])
            cutout = cutouts[visit.photo] if visit else None
            if visit and visit.masked and cutout.face:
                cutout = masked_cutout(cutout, np.random.default_rng([recipe.seed, 4, index]))
            scene = (VisitScene(cutout, size, recipe, noise, scene_random)
                     if visit else EmptyScene(size, noise, scene_random))
            for frame_index in range(count):
                frame = scene.render(background, frame_index / max(count - 1, 1))
                stamp_ns = FIRST_STAMP_NS + round((first + frame_index) * 1e9 / recipe.fps)
                message = image_message(writer.typestore, frame, stamp_ns, recipe)
                writer.write(connection, stamp_ns, message)
                if frame_hook:
                    frame_hook(writer, stamp_ns, message)
                bar.update()
            intervals.append(Interval(max(0.0, (first - 0.5) / recipe.fps),
                                      (first + count - 0.5) / recipe.fps, subject,
                                      bool(cutout and cutout.masked)))
            first += count
    return intervals


def masks_worn(visits, intervals):
    """Say how many visits wear a mask, and how many could not (no face found to paint on)."""
    planned = sum(visit.masked for visit in visits)
    worn = sum(interval.masked for interval in intervals)
    return f'{worn} masked' + (f', {planned - worn} unmasked for want of a detected face'
                               if planned > worn else '')


def image_message(typestore, frame, stamp_ns, recipe):
    """Build the Image (bgr8) or CompressedImage (jpeg) message of one frame."""
    from face_id_ros.core.image_codec import encode_compressed, encode_image
    header = make_header(typestore, stamp_ns, recipe.frame_id)
    if recipe.encoding == 'bgr8':
        return typestore.types[IMAGE_TYPE](header=header, **encode_image(frame))
    return typestore.types[COMPRESSED_TYPE](
        header=header, **encode_compressed(frame, 'jpeg', recipe.jpeg_quality))


def make_header(typestore, stamp_ns, frame_id):
    """Build a std_msgs/Header stamped ``stamp_ns`` nanoseconds since the epoch."""
    seconds, nanoseconds = divmod(int(stamp_ns), 10**9)
    return typestore.types['std_msgs/msg/Header'](
        stamp=typestore.types['builtin_interfaces/msg/Time'](sec=seconds, nanosec=nanoseconds),
        frame_id=frame_id)


class BagWriter:
    """A rosbag2 writer (sqlite3 or mcap) whose metadata Humble and Jazzy both read."""

    def __init__(self, path, storage='sqlite3'):
        """Prepare to write a new bag folder at ``path``; refuse an existing one."""
        from rosbags.rosbag2 import StoragePlugin, Writer
        from face_id_ros.core.ros_messages import rosbags_typestore
        self.path = Path(path)
        if self.path.exists():
            raise FaceIdError(f'{self.path} exists already; remove it or choose another path')
        plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}[storage]
        self.typestore = rosbags_typestore()
        self._writer = Writer(self.path, version=ROSBAGS_WRITER_VERSION, storage_plugin=plugin)

    def __enter__(self):
        """Create the bag folder and its storage file."""
        self._writer.__enter__()
        return self

    def __exit__(self, *exc_info):
        """Close the bag (or abort it on an error) and rewrite its metadata for Humble."""
        self._writer.__exit__(*exc_info)
        if exc_info[0] is None:
            write_humble_metadata(self.path)
        return False

    def add_connection(self, topic, msgtype):
        """Register a topic; its message definition comes from the typestore."""
        return self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write(self, connection, stamp_ns, message):
        """Serialise ``message`` as CDR and write it at receive time ``stamp_ns``."""
        self._writer.write(connection, int(stamp_ns),
                           self.typestore.serialize_cdr(message, connection.msgtype))


def write_humble_metadata(bag_path):
    """
    Rewrite a bag's ``metadata.yaml`` in version 5, with exactly the keys Humble reads.

    Dropped: the topics' type hashes (v7), custom data (v6) and ROS distro (v8), which
    Humble does not know; the storage file itself is unchanged.
    """
    path = Path(bag_path) / 'metadata.yaml'
    info = yaml.safe_load(path.read_text(encoding='utf-8'))['rosbag2_bagfile_information']
    topics = [{'topic_metadata': {key: entry['topic_metadata'][key] for key in
                                  ('name', 'type', 'serialization_format',
                                   'offered_qos_profiles')},
               'message_count': entry['message_count']}
              for entry in info['topics_with_message_count']]
    humble = {'version': HUMBLE_METADATA_VERSION,
              'storage_identifier': info['storage_identifier'],
              'duration': info['duration'], 'starting_time': info['starting_time'],
              'message_count': info['message_count'], 'topics_with_message_count': topics,
              'compression_format': info['compression_format'],
              'compression_mode': info['compression_mode'],
              'relative_file_paths': info['relative_file_paths'], 'files': info['files']}
    temporary = path.with_suffix('.yaml.tmp')
    temporary.write_text(yaml.safe_dump({'rosbag2_bagfile_information': humble},
                                        sort_keys=False), encoding='utf-8')
    os.replace(temporary, path)


# Scenes ---------------------------------------------------------------------------------------

def ward_background(size, random):
    """Draw a dim, out-of-focus ward: wall and floor, a window, a door and a bed (float32)."""
    width, height = size
    wall = random.uniform([150, 165, 165], [200, 210, 215])
    horizon = int(height * random.uniform(0.62, 0.72))
    image = np.empty((height, width, 3), np.float32)
    shade = np.linspace(0.85, 1.0, horizon, dtype=np.float32)[:, None, None]
    image[:horizon] = wall * shade
    image[horizon:] = wall * random.uniform(0.45, 0.6)
    rooms = ((0.05, 0.1, 0.3, 0.4, (235, 235, 225)),     # window
             (0.72, 0.15, 0.86, 0.7, (60, 95, 125)),      # door
             (0.45, 0.58, 1.0, 0.88, (205, 190, 180)),    # bed
             (0.0, 0.55, 0.12, 0.8, (120, 130, 140)))     # bedside cabinet
    for x1, y1, x2, y2, colour in rooms:
        jitter = random.uniform(-0.03, 0.03, 4)
        left, top = int((x1 + jitter[0]) * width), int((y1 + jitter[1]) * height)
        right, bottom = int((x2 + jitter[2]) * width), int((y2 + jitter[3]) * height)
        image[max(top, 0):bottom, max(left, 0):right] = colour
    image = cv2.GaussianBlur(image, (0, 0), 6)
    return image * random.uniform(0.7, 0.85)


@dataclass
class Cutout:
    """
    A photo ready to paste: pixels, feathered head-and-shoulders alpha, face centre, width.

    ``face`` is the detected Face in the photo's pixels (None when none was found, so the
    photo cannot be masked); ``masked`` whether a mask is painted on the pixels.
    """

    pixels: np.ndarray
    alpha: np.ndarray
    centre: tuple
    face_width: float
    face: object = None
    masked: bool = False


def masked_cutout(cutout, random):
    """Return the cutout with a synthetic mask painted on its face (``random`` draws it)."""
    pixels = paint_mask_on_face(cutout.pixels, cutout.face, random)
    return dataclasses.replace(cutout, pixels=pixels, masked=True)


def load_cutout(path, detector):
    """Read a photo and find its face (the detector's box, else the photo's middle)."""
    image = read_image(path)
    height, width = image.shape[:2]
    pad = max(height, width) // 4  # context around a tight crop, as a camera frame has
    faces = detector.detect(cv2.copyMakeBorder(image, pad, pad, pad, pad,
                                               cv2.BORDER_REPLICATE))
    if faces:
        middle = np.array([width, height], np.float32) / 2 + pad
        face = min(faces, key=lambda item: np.linalg.norm(
            (item.box[:2] + item.box[2:]) / 2 - middle))
        centre = tuple(float(value) - pad for value in (face.box[:2] + face.box[2:]) / 2)
        face_width = float(face.box[2] - face.box[0])
        face = dataclasses.replace(face, box=face.box - pad, landmarks=face.landmarks - pad)
    else:
        centre, face_width = (width / 2, height / 2), PHOTO_FACE_FRACTION * width
        face = None
    alpha = np.zeros((height, width), np.float32)
    cv2.ellipse(alpha, (int(centre[0]), int(centre[1] + 0.25 * face_width)),
                (int(0.95 * face_width), int(1.45 * face_width)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.12 * face_width)
    return Cutout(image, alpha, centre, face_width, face)


class EmptyScene:
    """Nobody in view: the ward under slowly changing light, with sensor noise."""

    def __init__(self, size, noise, random):
        """Draw this stretch's light and noise level."""
        self.noise, self.random = noise, random
        self.light = Lighting(size, random)
        self.sigma = random.uniform(2.0, 5.0)

    def render(self, background, progress):
        """Return the BGR frame at ``progress`` (0 to 1) through the stretch."""
        return self.noise.add(background * self.light.gain(progress), self.sigma, self.random)


class VisitScene:
    """One person approaching and moving in front of the camera."""

    def __init__(self, cutout, size, recipe, noise, random):
        """Draw this visit's path, sway, roll, light, blur and occlusion."""
        self.cutout, self.size, self.noise, self.random = cutout, size, noise, random
        width, height = size
        low, high = recipe.face_width
        self.widths = (random.uniform(low, low + 0.2 * (high - low)),
                       random.uniform(high - 0.3 * (high - low), high))
        self.xs = random.uniform(0.3, 0.7, 2) * width
        self.ys = random.uniform(0.38, 0.5, 2) * height
        self.sway = random.uniform(5, 25), random.uniform(0.5, 1.5), random.uniform(0, 6.3)
        self.roll = random.uniform(3, 12), random.uniform(0.3, 1.0), random.uniform(0, 6.3)
        self.light = Lighting(size, random)
        self.sigma = random.uniform(2.0, 6.0)
        self.blur_chance = random.uniform(0.05, 0.25)
        start = random.uniform(0.1, 0.7)
        self.occlusion = ((start, start + random.uniform(0.15, 0.3), random.integers(2))
                          if random.random() < 0.5 else None)

    def render(self, background, progress):
        """Return the BGR frame at ``progress`` (0 to 1) through the visit."""
        approach = progress * progress * (3 - 2 * progress)  # smooth start and stop
        face_width = self.widths[0] + approach * (self.widths[1] - self.widths[0])
        amplitude, cycles, phase = self.sway
        x = self.xs[0] + approach * (self.xs[1] - self.xs[0]) + amplitude * np.sin(
            2 * np.pi * cycles * progress + phase)
        y = self.ys[0] + approach * (self.ys[1] - self.ys[0])
        amplitude, cycles, phase = self.roll
        angle = amplitude * np.sin(2 * np.pi * cycles * progress + phase)
        cutout = self.cutout
        matrix = cv2.getRotationMatrix2D(cutout.centre, angle, face_width / cutout.face_width)
        matrix[:, 2] += (x - cutout.centre[0], y - cutout.centre[1])
        person = cv2.warpAffine(cutout.pixels, matrix, self.size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(cutout.alpha, matrix, self.size, flags=cv2.INTER_LINEAR)
        alpha = alpha[..., None]
        frame = background * (1.0 - alpha) + person.astype(np.float32) * alpha
        if self.occlusion and self.occlusion[0] <= progress <= self.occlusion[1]:
            occlude(frame, (x, y), face_width, self.occlusion[2])
        frame *= self.light.gain(progress)
        if self.random.random() < self.blur_chance:
            frame = motion_blur(frame, self.random)
        return self.noise.add(frame, self.sigma, self.random)


class Lighting:
    """Room light that drifts in brightness and falls off to one side."""

    def __init__(self, size, random):
        """Draw the base level, its drift and the side light's slope."""
        width, _ = size
        self.base = random.uniform(0.65, 1.15)
        self.drift = random.uniform(0.0, 0.2), random.uniform(0.2, 1.0), random.uniform(0, 6.3)
        slope = random.uniform(-0.35, 0.35)
        self.side = (1.0 + slope * (np.arange(width, dtype=np.float32) / width - 0.5))
        self.side = self.side[None, :, None]

    def gain(self, progress):
        """Return the light level at ``progress``, one factor per column: shape (1, W, 1)."""
        amplitude, cycles, phase = self.drift
        level = self.base + amplitude * np.sin(2 * np.pi * cycles * progress + phase)
        return self.side * np.float32(level)


def occlude(frame, centre, face_width, kind):
    """Hide part of the face: a hand over the mouth and chin (0) or a cup at one cheek (1)."""
    x, y = centre
    if kind == 0:
        middle, axes, colour = (x, y + 0.35 * face_width), (0.45, 0.22), (120, 150, 200)
    else:
        middle, axes, colour = (x + 0.38 * face_width, y + 0.1 * face_width), (0.2, 0.3), \
            (230, 230, 235)
    cv2.ellipse(frame, (int(middle[0]), int(middle[1])),
                (int(axes[0] * face_width), int(axes[1] * face_width)), 0, 0, 360, colour, -1)


def motion_blur(frame, random):
    """Smear the frame along a random direction, as a camera or head moving in exposure."""
    length = int(random.integers(5, 14))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2),
                                       random.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(frame, -1, kernel / max(kernel.sum(), 1e-6))


class SensorNoise:
    """Gaussian sensor noise, cut at a random offset from one larger field per bag (cheap)."""

    MARGIN = 64

    def __init__(self, size, random):
        """Draw the unit-variance noise field once."""
        width, height = size
        self.field = random.standard_normal((height + self.MARGIN, width + self.MARGIN, 3),
                                            dtype=np.float32)

    def add(self, frame, sigma, random):
        """Return ``frame`` plus noise of standard deviation ``sigma``, as BGR uint8."""
        height, width = frame.shape[:2]
        top, left = random.integers(self.MARGIN, size=2)
        noise = self.field[top:top + height, left:left + width]
        return np.clip(frame + noise * np.float32(sigma), 0, 255).astype(np.uint8)


def _frames(seconds, fps, random):
    return max(1, round(random.uniform(*seconds) * fps))


def check_patient_folders(patients, pattern, source):
    """Refuse photo folders that are not named by a patient id matching ``pattern``."""
    import re
    misnamed = [name for name in patients if not re.fullmatch(pattern, name)]
    if misnamed:
        raise FaceIdError(f'{source}: folders {misnamed} are not patient ids matching '
                          f'{pattern!r}; name each folder by the pseudonymous id it was '
                          'enrolled under')
