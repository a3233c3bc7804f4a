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
Training data: pack face folders into one array, cache teacher embeddings, augment batches.

``pack_faces`` reads identity-folder datasets (``<dataset>/<identity>/<image>``, labelled)
and flat folders of faces (``<dataset>/<image>``, label -1) into ``<pack>.images.npy``
(``(N, S, S, 3)`` uint8 RGB, memory-mappable) and ``<pack>.json`` (labels, identity names,
source files). The faces are expected aligned like the shared train sets: the ArcFace
112x112 crop inside a 128x128 canvas with an 8 px margin. ``teacher_targets`` caches a
teacher's flip-sum embeddings of the centre crops in ``<pack>.teacher.npy``. ``Augmenter``
turns a batch of packed faces into network input.

``python -m face_id_ros.training.prepare --recipe config/training/X.yaml`` does both steps
for the recipe's ``data`` section (relative paths are relative to the working directory).
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import json
import os
from pathlib import Path

import cv2
from face_id_ros.core.config import build_stage, setting
from face_id_ros.core.errors import ConfigError, ImageDecodeError
from face_id_ros.core.image_files import IMAGE_SUFFIXES, read_image
import numpy as np
import onnxruntime
import torch
from torch.nn import functional
from tqdm import tqdm

CANVAS_SIZE = 128
CROP_SIZE = 112
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# The runtime contract (ModelMetadata defaults): RGB, (pixel - 127.5) / 127.5.
INPUT_MEAN = 127.5
INPUT_STD = 127.5


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section of a training recipe."""

    folders: tuple = setting(
        ('../shared/data/train/celeba299', '../shared/data/train/utkface',
         '../shared/data/train/rmfd_masked'),
        'Face folders: images in identity sub-folders are labelled, loose images are not.')
    pack: str = setting('.cache/train_pack', 'Pack path prefix written by pack_faces.')
    teacher: str = setting('../shared/data/models/teacher_mobilefacenet/mobilefacenet.onnx',
                           'Teacher ONNX for distillation targets; empty for none.')
    teacher_weights: str = setting(
        '../shared/data/models/teacher_mobilefacenet/mobilefacenet.pt',
        "The teacher's PyTorch state_dict, run on the fly for exact-view targets.")
    teacher_mean: tuple = setting(IMAGENET_MEAN, 'Teacher input mean per RGB channel (0-255).')
    teacher_std: tuple = setting(IMAGENET_STD, 'Teacher input std per RGB channel (0-255).')
    val_fraction: float = setting(0.02, 'Share of faces held out to track teacher agreement.',
                                  0.0, 0.5)

    @classmethod
    def from_dict(cls, mapping, source='data'):
        """Build and validate from a mapping; lists become tuples."""
        mapping = {key: tuple(value) if isinstance(value, list) else value
                   for key, value in (mapping or {}).items()}
        config = build_stage(cls, mapping, source)
        if not all(isinstance(item, str) for item in config.folders):
            raise ConfigError(f'{source}.folders: expected a list of folder paths')
        for name in ('teacher_mean', 'teacher_std'):
            if len(getattr(config, name)) != 3:
                raise ConfigError(f'{source}.{name}: expected 3 values (R, G, B)')
        return config

    @property
    def teacher_targets(self):
        """Path of the cached teacher embeddings of the pack."""
        return f'{self.pack}.teacher.npy'


@dataclass(frozen=True)
class FacePack:
    """Packed faces: ``images`` (N, S, S, 3) uint8 RGB, ``labels`` (-1: unlabelled)."""

    images: np.ndarray
    labels: np.ndarray
    identities: tuple
    files: tuple


def list_faces(folder):
    """Return ``[(path, identity or None)]``; identities are ``<folder name>/<sub-folder>``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f'face folder {folder} does not exist')
    faces = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            faces += [(image, f'{folder.name}/{path.name}') for image in sorted(path.iterdir())
                      if image.suffix.lower() in IMAGE_SUFFIXES]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            faces.append((path, None))
    return faces


def read_face(path, size=CANVAS_SIZE):
    """Read one image as RGB uint8, resized to ``size`` x ``size`` when it is not."""
    try:
        image = read_image(path)
    except ImageDecodeError as error:
        raise ImageDecodeError(f'{error}; delete or replace the file') from None
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def pack_faces(folders, out_path, image_size=CANVAS_SIZE, workers=2):
    """
    Pack every face of ``folders`` into ``<out_path>.images.npy`` + ``<out_path>.json``.

    Return the number of faces. Files are written under temporary names and renamed when
    complete, so an interrupted run leaves no half pack.
    """
    faces = [face for folder in folders for face in list_faces(folder)]
    if not faces:
        raise ConfigError(f'no images found in {list(folders)}')
    identities = sorted({name for _, name in faces if name is not None})
    index = {name: number for number, name in enumerate(identities)}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    images_path = f'{out_path}.images.npy'
    images = np.lib.format.open_memmap(f'{images_path}.tmp', 'w+', np.uint8,
                                       (len(faces), image_size, image_size, 3))
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda face: read_face(face[0], image_size), faces)
        for number, image in enumerate(tqdm(decoded, total=len(faces), desc='pack faces')):
            images[number] = image
    images.flush()
    del images
    os.replace(f'{images_path}.tmp', images_path)
    description = {
        'image_size': image_size,
        'folders': [str(folder) for folder in folders],
        'identities': identities,
        'labels': [index[name] if name is not None else -1 for _, name in faces],
        'files': [str(path) for path, _ in faces],
    }
    _write_atomic(f'{out_path}.json', json.dumps(description).encode())
    return len(faces)


def load_pack(path):
    """Open a pack written by ``pack_faces`` (images memory-mapped)."""
    try:
        with open(f'{path}.json', encoding='utf-8') as stream:
            description = json.load(stream)
        images = np.load(f'{path}.images.npy', mmap_mode='r')
    except OSError as error:
        raise ConfigError(f'cannot open face pack {path}: {error}; run '
                          f'python -m face_id_ros.training.prepare first')
    labels = np.asarray(description['labels'], np.int64)
    if len(labels) != len(images):
        raise ConfigError(f'face pack {path}: {len(images)} images but {len(labels)} labels')
    return FacePack(images, labels, tuple(description['identities']),
                    tuple(description['files']))


def centre_crop(images, size=CROP_SIZE):
    """Return the centre ``size`` x ``size`` crop of ``(N, H, W, C)`` images."""
    top = (images.shape[1] - size) // 2
    left = (images.shape[2] - size) // 2
    return images[:, top:top + size, left:left + size]


def to_network_input(images):
    """Turn ``(N, H, W, 3)`` RGB pixels (uint8 or float) into normalised NCHW float."""
    return (images.permute(0, 3, 1, 2).float() - INPUT_MEAN) / INPUT_STD


def resize_input(faces, input_size):
    """
    Scale normalised NCHW 112 px crops to a net's ``input_size`` (antialiased bilinear).

    A net with a smaller input sees the whole ArcFace crop, smaller: the runtime aligns
    its faces to the template scaled by the same factor (the model file says so).
    """
    if faces.shape[-1] == input_size:
        return faces
    return functional.interpolate(faces, size=(input_size, input_size), mode='bilinear',
                                  align_corners=False, antialias=True)


def network_faces(images, input_size=CROP_SIZE):
    """Return the normalised NCHW network input of packed faces' centre crops."""
    crops = np.ascontiguousarray(centre_crop(images))
    return resize_input(to_network_input(torch.from_numpy(crops)), input_size)


def teacher_targets(pack_path, teacher_onnx, out_path, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    batch_size=64, threads=2):
    """
    Cache the teacher's L2-normalised flip-sum embeddings of every pack face's centre crop.

    The teacher sees ``(pixel - mean) / std`` of RGB NCHW crops at its input size. A fixed
    batch dimension (the shared MobileFaceNet has 1) is honoured by feeding that many faces
    per run. Writes ``out_path`` (``(N, D)`` float32 .npy) and returns the array.
    """
    pack = load_pack(pack_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(teacher_onnx), options,
                                           providers=['CPUExecutionProvider'])
    model_input = session.get_inputs()[0]
    batch_dim, _, height, _ = model_input.shape
    step = batch_dim if isinstance(batch_dim, int) else batch_size
    size = height if isinstance(height, int) else CROP_SIZE
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)

    def embed(faces):
        batch = ((faces.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)
        return session.run(None, {model_input.name: np.ascontiguousarray(batch)})[0]

    targets = None
    for start in tqdm(range(0, len(pack.images), step), desc='teacher targets'):
        faces = centre_crop(pack.images[start:start + step], size)
        embeddings = embed(faces) + embed(faces[:, :, ::-1])
        if targets is None:
            targets = np.empty((len(pack.images), embeddings.shape[1]), np.float32)
        targets[start:start + step] = embeddings / np.linalg.norm(embeddings, axis=1,
                                                                  keepdims=True)
    with open(f'{out_path}.tmp', 'wb') as stream:
        np.save(stream, targets)
    os.replace(f'{out_path}.tmp', out_path)
    return targets


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment`` section of a training recipe: probabilities and strengths."""

    max_shift: int = setting(8, 'Largest offset (pixels) of the random crop from the centre.',
                             0, 64)
    flip: float = setting(0.5, 'Probability of a horizontal flip.', 0.0, 1.0)
    color: float = setting(0.5, 'Probability of brightness, contrast and colour jitter.',
                           0.0, 1.0)
    brightness: float = setting(0.3, 'Largest relative brightness change.', 0.0, 1.0)
    contrast: float = setting(0.3, 'Largest relative contrast change.', 0.0, 1.0)
    saturation: float = setting(0.4, 'Largest relative saturation change.', 0.0, 1.0)
    channel_gain: float = setting(0.1, 'Largest per-channel gain change (colour cast).',
                                  0.0, 1.0)
    low_light: float = setting(0.1, 'Probability of a dark, noisy picture.', 0.0, 1.0)
    blur: float = setting(0.1, 'Probability of a gaussian blur (sigma 0.6-1.6 px).',
                          0.0, 1.0)
    mask: float = setting(0.15, 'Probability of a synthetic medical mask on the lower face.',
                          0.0, 1.0)
    smear_top: float = setting(
        0.0, 'Probability of replicating one row over the top of the face, as UTKFace '
        'canvases are padded, so that a smeared forehead tells nothing of where a face came '
        'from.', 0.0, 1.0)
    turn: float = setting(0.0, 'Probability of a head turn: in-plane rotation, a perspective '
                          'warp that mimics a yaw of the head, and a scale change.', 0.0, 1.0)
    max_roll: float = setting(15.0, 'Largest in-plane rotation of a turn (degrees).',
                              0.0, 90.0)
    max_yaw: float = setting(0.35, 'Largest perspective strength of a turn (0.35 shortens '
                             'the far side of the face by about a third).', 0.0, 0.9)
    max_zoom: float = setting(0.1, 'Largest relative scale change of a turn.', 0.0, 0.5)
    mix: float = setting(0.0, 'Probability of mixing a face with another of the batch (only '
                         'for exact-view targets: the teacher embeds the mixed picture; mixed '
                         'faces leave the margin loss).', 0.0, 1.0)
    cutmix: float = setting(0.5, 'Share of mixes that paste a rectangle of the other face '
                            '(cutmix); the rest blend both (mixup).', 0.0, 1.0)

    @classmethod
    def from_dict(cls, mapping, source='augment'):
        """Build and validate from a mapping; raise ConfigError naming the bad key."""
        return build_stage(cls, mapping, source)


# Synthetic mask colours (RGB): surgical blue, white, surgical green, black.
MASK_COLOURS = ((175, 205, 230), (232, 234, 236), (180, 215, 195), (45, 45, 50))
# Low light: brightness scale and sensor-noise sigma (grey levels) ranges.
LOW_LIGHT_SCALE = (0.2, 0.6)
LOW_LIGHT_NOISE = (2.0, 10.0)
BLUR_SIGMA = (0.6, 1.6)
BLUR_RADIUS = 3
# Mixup weight of the second face, and the side range of a cutmix rectangle (share of the crop).
MIX_WEIGHT = (0.2, 0.5)
CUTMIX_SIDE = (0.3, 0.6)
# Canvas row down to which a smeared top reaches: UTKFace's replicated bands end at rows
# 27-37 of the 128 px canvas (10th-90th percentile of 400 faces).
SMEAR_CANVAS_ROWS = (24, 40)


class Augmenter:
    """
    Random augmentation of a batch of packed faces, producing network input.

    Order: random 112 px crop (in the canvas margin), smeared top, synthetic mask, head turn,
    mix with another face, flip, colour jitter, low light with noise, blur, scaling to the
    net's input size; each but the crop and the scaling touches only the faces its
    probability picks.
    All randomness comes from one ``torch.Generator`` (``generator``), so a run is
    reproducible and resumable.
    """

    def __init__(self, config, input_size=CROP_SIZE, seed=0):
        """Keep the config; seed the generator; crops are scaled to ``input_size`` last."""
        self.config = config
        self.crop_size = CROP_SIZE
        self.input_size = input_size
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images):
        """Augment ``(N, H, W, 3)`` uint8 RGB faces; return normalised ``(N, 3, S, S)``."""
        return self.views(images)[0]

    def views(self, images, clean=False):
        """
        Return ``(inputs, mixed)``: the augmented faces and which were mixed with another.

        With ``clean``, return ``(inputs, mixed, clean_inputs)``: the clean inputs are the same
        views (crop, turn, mix, flip) without what the runtime must see through (mask,
        smeared top, colour, low light, blur).
        """
        config = self.config
        faces, offsets = self._crop(images)
        faces = faces.permute(0, 3, 1, 2).float()
        bare = faces.clone() if clean else faces[:, :0]
        faces = self._apply(faces, config.smear_top, self._smear_top, offsets)
        faces = self._apply(faces, config.mask, self._mask, offsets)
        # The moves below treat every channel alike, so a clean half moves with its view; the
        # copy also makes both paths compute on the same contiguous layout, bit for bit.
        faces = torch.cat([faces, bare], 1)
        if config.turn:
            faces = self._apply(faces, config.turn, self._turn)
        mixed = torch.zeros(len(faces), dtype=torch.bool, device=faces.device)
        if config.mix and len(faces) > 1:
            faces, mixed = self._mix(faces)
        faces = self._apply(faces, config.flip, lambda picked: picked.flip(3))
        faces, bare = (faces[:, :3].contiguous(), faces[:, 3:]) if clean else (faces, None)
        faces = self._apply(faces, config.color, self._color)
        faces = self._apply(faces, config.low_light, self._low_light)
        faces = self._apply(faces, config.blur, self._blur)
        if not clean:
            return self._inputs(faces), mixed
        return self._inputs(faces), mixed, self._inputs(bare)

    def _inputs(self, faces):
        """Return network inputs of 0-255 faces."""
        return resize_input((faces.clamp(0, 255) - INPUT_MEAN) / INPUT_STD, self.input_size)

    def _apply(self, faces, probability, transform, *extra):
        """Transform the faces picked with ``probability`` (and their rows of ``extra``)."""
        chosen = (torch.rand(len(faces), generator=self.generator) < probability).to(
            faces.device)
        if chosen.any():
            faces[chosen] = transform(faces[chosen], *(item[chosen] for item in extra))
        return faces

    def _uniform(self, low, high, shape, like):
        values = torch.rand(shape, generator=self.generator)
        return (low + (high - low) * values).to(like.device)

    def _crop(self, images):
        """Crop ``crop_size`` at a random offset of at most ``max_shift`` from the centre."""
        count, height = len(images), images.shape[1]
        centre = (height - self.crop_size) // 2
        shift = min(self.config.max_shift, centre)
        offsets = torch.randint(centre - shift, centre + shift + 1, (count, 2),
                                generator=self.generator).to(images.device)
        span = torch.arange(self.crop_size, device=images.device)
        rows = (offsets[:, 0:1] + span)[:, :, None]
        columns = (offsets[:, 1:2] + span)[:, None, :]
        batch = torch.arange(count, device=images.device)[:, None, None]
        return images[batch, rows, columns], offsets - centre

    def _smear_top(self, faces, offsets):
        """Replace the rows above a random depth with copies of the row at that depth."""
        count, channels, size, width = faces.shape
        margin = (CANVAS_SIZE - CROP_SIZE) // 2
        depth = self._uniform(*SMEAR_CANVAS_ROWS, (count, 1), faces) - margin - offsets[:, :1]
        depth = (depth * size / CROP_SIZE).round().long().clamp(0, size - 1)
        source_rows = torch.maximum(torch.arange(size, device=faces.device)[None], depth)
        index = source_rows[:, None, :, None].expand(count, channels, size, width)
        return faces.gather(2, index)

    def _mask(self, faces, offsets):
        """Paint a pleated medical mask from the nose over mouth and chin."""
        count, size = len(faces), self.crop_size
        scale = size / CROP_SIZE
        span = torch.arange(size, device=faces.device, dtype=torch.float32)
        rows = span[None, :, None] - offsets[:, 0, None, None]
        columns = span[None, None, :] - offsets[:, 1, None, None]
        top = self._uniform(54, 66, (count, 1, 1), faces) * scale
        across = (columns - 56 * scale) / (40 * scale)
        inside = ((rows >= top + 10 * scale * across ** 2)
                  & (across.abs() <= 1 - 0.015 * (rows - 96 * scale).clamp_min(0) / scale))
        colour_index = torch.randint(len(MASK_COLOURS), (count,), generator=self.generator)
        colours = torch.tensor(MASK_COLOURS, dtype=torch.float32)[colour_index]
        pleats = 1 - 0.07 * ((rows / (6 * scale)).floor() % 2)
        paint = colours.to(faces.device)[:, :, None, None] * pleats[:, None]
        return torch.where(inside[:, None], paint, faces)

    def _turn(self, faces):
        """
        Turn the head: roll in the image plane, a perspective warp for yaw, a zoom.

        The warp divides by ``1 + yaw * x``, shortening the side the head turns away from, as
        a face turned by some 20-30 degrees looks to a camera; edges repeat the border pixels.
        """
        config, count = self.config, len(faces)
        roll = torch.deg2rad(self._uniform(-config.max_roll, config.max_roll, (count, 1, 1),
                                           faces))
        yaw = self._uniform(-config.max_yaw, config.max_yaw, (count, 1, 1), faces)
        zoom = self._uniform(1 - config.max_zoom, 1 + config.max_zoom, (count, 1, 1), faces)
        span = torch.linspace(-1, 1, faces.shape[-1], device=faces.device)
        rows, columns = span[None, :, None], span[None, None, :]
        x = (columns * torch.cos(roll) - rows * torch.sin(roll)) * zoom
        y = (columns * torch.sin(roll) + rows * torch.cos(roll)) * zoom
        depth = 1 + yaw * x
        grid = torch.stack([x / depth, y / depth], dim=-1)
        return functional.grid_sample(faces, grid, mode='bilinear', padding_mode='border',
                                      align_corners=True)

    def _mix(self, faces):
        """Mix the picked faces with others of the batch: cutmix rectangles or mixup blends."""
        count, size = len(faces), faces.shape[-1]
        picked = (torch.rand(count, generator=self.generator) < self.config.mix).to(
            faces.device)
        partners = (torch.arange(count) + torch.randint(1, count, (count,),
                                                        generator=self.generator)) % count
        others = faces[partners.to(faces.device)]
        cut = (torch.rand(count, generator=self.generator) < self.config.cutmix).to(
            faces.device)
        sides = (self._uniform(*CUTMIX_SIDE, (count, 2), faces) * size).long()
        corners = (self._uniform(0, 1, (count, 2), faces) * (size - sides)).long()
        span = torch.arange(size, device=faces.device)[None, :]
        within = (span >= corners[:, :, None]) & (span < (corners + sides)[:, :, None])
        inside = within[:, 0, :, None] & within[:, 1, None, :]
        weight = self._uniform(*MIX_WEIGHT, (count, 1, 1), faces)
        weight = torch.where(cut[:, None, None], inside.float(), weight)
        weight = weight * picked[:, None, None]
        return faces + (others - faces) * weight[:, None], picked

    def _color(self, faces):
        """Jitter brightness, contrast, saturation and per-channel gain."""
        config, count = self.config, len(faces)
        brightness = self._uniform(1 - config.brightness, 1 + config.brightness,
                                   (count, 1, 1, 1), faces)
        contrast = self._uniform(1 - config.contrast, 1 + config.contrast,
                                 (count, 1, 1, 1), faces)
        saturation = self._uniform(1 - config.saturation, 1 + config.saturation,
                                   (count, 1, 1, 1), faces)
        gain = self._uniform(1 - config.channel_gain, 1 + config.channel_gain,
                             (count, 3, 1, 1), faces)
        faces = faces * brightness * gain
        mean = faces.mean((1, 2, 3), keepdim=True)
        faces = (faces - mean) * contrast + mean
        luma = torch.tensor([0.299, 0.587, 0.114], device=faces.device)[None, :, None, None]
        grey = (faces * luma).sum(1, keepdim=True)
        return grey + (faces - grey) * saturation

    def _low_light(self, faces):
        """Darken and add sensor noise, as a dim ward at night gives."""
        count = len(faces)
        scale = self._uniform(*LOW_LIGHT_SCALE, (count, 1, 1, 1), faces)
        sigma = self._uniform(*LOW_LIGHT_NOISE, (count, 1, 1, 1), faces)
        noise = torch.randn(faces.shape, generator=self.generator).to(faces.device)
        return faces * scale + noise * sigma

    def _blur(self, faces):
        """Blur with a separable gaussian of random sigma per face."""
        count, channels, height, width = faces.shape
        sigma = self._uniform(*BLUR_SIGMA, (count, 1), faces)
        taps = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, device=faces.device,
                            dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
        planes = functional.pad(faces.reshape(1, count * channels, height, width),
                                (BLUR_RADIUS,) * 4, mode='reflect')
        planes = functional.conv2d(planes, kernel[:, None, None, :], groups=count * channels)
        planes = functional.conv2d(planes, kernel[:, None, :, None], groups=count * channels)
        return planes.reshape(count, channels, height, width)


def _write_atomic(path, payload):
    """Write bytes to ``path`` through a temporary file and a rename."""
    with open(f'{path}.tmp', 'wb') as stream:
        stream.write(payload)
    os.replace(f'{path}.tmp', path)


def held_out_indices(count, seed, fraction):
    """Return the sorted indices of the faces that a run with ``seed`` keeps out of training."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:int(round(count * fraction))])


def export_held_out(pack_path, indices, out_dir):
    """
    Write held-out pack faces as PNG canvases: ``labelled/<identity>/`` and ``unlabelled/``.

    ``face-id calibrate-threshold MODEL DIR/labelled`` then measures impostor scores on
    faces the model never trained on. Returns the count written to each kind.
    """
    pack = load_pack(pack_path)
    counts = {'labelled': 0, 'unlabelled': 0}
    for index in indices:
        label = int(pack.labels[index])
        kind = 'labelled' if label >= 0 else 'unlabelled'
        folder = Path(out_dir) / kind
        if label >= 0:
            folder /= pack.identities[label].replace('/', '_')
        folder.mkdir(parents=True, exist_ok=True)
        image = cv2.cvtColor(np.asarray(pack.images[index]), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(folder / f'{index:06d}.png'), image):
            raise ConfigError(f'cannot write {folder}')
        counts[kind] += 1
    return counts
