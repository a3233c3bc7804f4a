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
The model-file contract: what an embedder ONNX says about how to use it.

The training export writes these keys into the ONNX ``metadata_props``; the runtime reads
them back (onnxruntime's ``custom_metadata_map``), so nothing about preprocessing is
hard-coded and a retrained or third-party ArcFace-style model drops in. ``face-id model
stamp`` writes them into a third-party model that lacks them.
"""

from dataclasses import asdict, dataclass, field
import json
import math
import numbers

from face_id_ros.core.config import short_repr
from face_id_ros.core.errors import ModelError
import numpy as np

METADATA_KEY = 'face_id'
FORMAT_VERSION = 1
# Sides of the crop and lengths of the embedding the runtime accepts; beyond, the metadata
# is taken to lie (a crop of 100000x100000 pixels would be 30 GB).
INPUT_SIDE_RANGE = (16, 4096)
EMBEDDING_SIZE_RANGE = (2, 65536)

# ArcFace 112x112 template (insightface): subject's right eye (image left), left eye,
# nose tip, right mouth corner, left mouth corner; pixels of the 112x112 crop.
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


@dataclass(frozen=True)
class ModelMetadata:
    """
    How to feed an embedder and read its output; stored as JSON under one ONNX key.

    ``mean`` and ``std`` are per channel, in 0-255 pixel units, in ``channel_order``:
    the network sees ``(pixel - mean) / std``. ``template`` holds the 5 ArcFace landmark
    positions in pixels of the ``input_size`` crop. Thresholds are the recommended
    open-set operating points for the cosine similarity of L2-normalised embeddings.
    ``mask_output`` names a second ONNX output holding each face's mask probability, and
    ``mask_threshold`` the probability from which a face counts as masked; a model without
    one (``''``, e.g. a third-party ArcFace export) reports masks as unknown.
    ``masked_cosine_threshold`` is the operating point for a face against a *masked*
    template: masked faces of different people lie closer together than bare ones, so the
    bare threshold would name masked strangers. A model without one (None) never names
    anyone from a masked template.
    """

    name: str
    version: str
    embedding_size: int
    input_size: tuple = (112, 112)
    layout: str = 'NCHW'
    channel_order: str = 'RGB'
    mean: tuple = (127.5, 127.5, 127.5)
    std: tuple = (127.5, 127.5, 127.5)
    template: tuple = ARCFACE_TEMPLATE_112
    cosine_threshold: float = 0.5
    training_data: str = ''
    licence: str = ''
    mask_output: str = ''
    mask_threshold: float = 0.5
    masked_cosine_threshold: float = None
    extra: dict = field(default_factory=dict)

    def to_json(self):
        """Serialise for the ONNX ``metadata_props`` entry ``face_id``."""
        payload = asdict(self)
        payload['format_version'] = FORMAT_VERSION
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text, source='model'):
        """Parse and validate the ``face_id`` entry; raise ModelError with the reason."""
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as error:
            raise ModelError(f'{source}: face_id metadata is not valid JSON ({error})')
        except RecursionError:
            raise ModelError(f'{source}: face_id metadata is nested too deeply')
        if not isinstance(payload, dict):
            raise ModelError(f'{source}: face_id metadata is not a JSON object, but '
                             f'{short_repr(payload)}')
        if payload.pop('format_version', None) != FORMAT_VERSION:
            raise ModelError(f'{source}: face_id metadata format_version is not '
                             f'{FORMAT_VERSION}')
        try:
            metadata = cls(**{key: _as_tuple(value) for key, value in payload.items()})
        except TypeError as error:
            raise ModelError(f'{source}: face_id metadata has wrong fields ({error})')
        except RecursionError:
            raise ModelError(f'{source}: face_id metadata is nested too deeply')
        metadata.validate(source)
        return metadata

    def validate(self, source='model'):
        """Raise ModelError unless every field is usable by the runtime (types included)."""
        problems = []
        low, high = INPUT_SIDE_RANGE
        smallest, largest = EMBEDDING_SIZE_RANGE
        for name in ('name', 'version', 'training_data', 'licence', 'mask_output'):
            if not isinstance(getattr(self, name), str):
                problems.append(f'{name} {short_repr(getattr(self, name))} is not text')
        if not isinstance(self.layout, str) or self.layout not in ('NCHW', 'NHWC'):
            problems.append(f'layout {short_repr(self.layout)} is not NCHW or NHWC')
        if not isinstance(self.channel_order, str) or self.channel_order not in ('RGB', 'BGR'):
            problems.append(f'channel_order {short_repr(self.channel_order)} is not RGB or BGR')
        if not (_numbers(self.input_size, 2, whole=True)
                and all(low <= side <= high for side in self.input_size)):
            problems.append(f'input_size {short_repr(self.input_size)} is not (width, height), '
                            f'whole numbers within {low}..{high}')
        if not (_numbers(self.mean, 3) and _numbers(self.std, 3) and min(self.std) > 0
                and _float32_finite(self.mean, self.std, [1.0 / value for value in self.std])):
            problems.append('mean and std need 3 finite numbers each (as float32, which the '
                            'runtime computes in), std > 0')
        if not (_is_sequence(self.template) and len(self.template) == 5
                and all(_numbers(point, 2) for point in self.template)
                and len({tuple(point) for point in self.template}) > 1):
            problems.append('template needs 5 (x, y) landmark points, finite and not all one')
        if not (_whole(self.embedding_size) and smallest <= self.embedding_size <= largest):
            problems.append(f'embedding_size {short_repr(self.embedding_size)} is not a whole '
                            f'number within {smallest}..{largest}')
        if not (_numbers((self.cosine_threshold,), 1)
                and -1.0 <= self.cosine_threshold <= 1.0):
            problems.append(f'cosine_threshold {short_repr(self.cosine_threshold)} is not in '
                            '[-1, 1]')
        if not (_numbers((self.mask_threshold,), 1) and 0.0 <= self.mask_threshold <= 1.0):
            problems.append(f'mask_threshold {short_repr(self.mask_threshold)} is not in [0, 1]')
        if self.masked_cosine_threshold is not None and not (
                _numbers((self.masked_cosine_threshold,), 1)
                and _numbers((self.cosine_threshold,), 1)
                and self.cosine_threshold <= self.masked_cosine_threshold <= 1.0):
            problems.append(f'masked_cosine_threshold {short_repr(self.masked_cosine_threshold)}'
                            ' is neither null nor in [cosine_threshold, 1]')
        if not isinstance(self.extra, dict):
            problems.append(f'extra {short_repr(self.extra)} is not a mapping')
        if problems:
            raise ModelError(f'{source}: ' + '; '.join(problems))


def _whole(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _float32_finite(*groups):
    """Tell whether every value stays finite as a float32 (8.9e63 does not: it is inf)."""
    with np.errstate(over='ignore'):
        return all(np.all(np.isfinite(np.asarray(values, np.float64).astype(np.float32)))
                   for values in groups)


def _is_sequence(value):
    return isinstance(value, (tuple, list))


def _numbers(values, count, whole=False):
    """Tell whether ``values`` is a sequence of ``count`` finite real numbers (whole ones)."""
    if not _is_sequence(values) or len(values) != count:
        return False
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if whole and not _whole(value):
            return False
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an integer too large for a float
            return False
    return True


def _as_tuple(value):
    """JSON gives lists; the dataclass is frozen and compares by tuples."""
    if isinstance(value, list):
        return tuple(_as_tuple(item) for item in value)
    return value


def attach_metadata(model_proto, metadata):
    """Store ``metadata`` in an ``onnx.ModelProto``, replacing an earlier ``face_id`` entry."""
    metadata.validate()
    for entry in list(model_proto.metadata_props):
        if entry.key == METADATA_KEY:
            model_proto.metadata_props.remove(entry)
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    return model_proto
