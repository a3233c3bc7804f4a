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

from face_id_ros.core.errors import ModelError

METADATA_KEY = 'face_id'
FORMAT_VERSION = 1

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
        if payload.pop('format_version', None) != FORMAT_VERSION:
            raise ModelError(f'{source}: face_id metadata format_version is not '
                             f'{FORMAT_VERSION}')
        try:
            metadata = cls(**{key: _as_tuple(value) for key, value in payload.items()})
        except TypeError as error:
            raise ModelError(f'{source}: face_id metadata has wrong fields ({error})')
        metadata.validate(source)
        return metadata

    def validate(self, source='model'):
        """Raise ModelError unless every field is usable by the runtime."""
        problems = []
        if self.layout not in ('NCHW', 'NHWC'):
            problems.append(f'layout {self.layout!r} is not NCHW or NHWC')
        if self.channel_order not in ('RGB', 'BGR'):
            problems.append(f'channel_order {self.channel_order!r} is not RGB or BGR')
        if len(self.input_size) != 2 or min(self.input_size) < 16:
            problems.append(f'input_size {self.input_size!r} is not (width, height) >= 16')
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append('mean and std need 3 values each, std > 0')
        if len(self.template) != 5 or any(len(point) != 2 for point in self.template):
            problems.append('template needs 5 (x, y) landmark points')
        if int(self.embedding_size) < 2:
            problems.append(f'embedding_size {self.embedding_size!r} is too small')
        if not -1.0 <= float(self.cosine_threshold) <= 1.0:
            problems.append(f'cosine_threshold {self.cosine_threshold!r} is not in [-1, 1]')
        if not 0.0 <= float(self.mask_threshold) <= 1.0:
            problems.append(f'mask_threshold {self.mask_threshold!r} is not in [0, 1]')
        if not isinstance(self.mask_output, str):
            problems.append(f'mask_output {self.mask_output!r} is not an output name')
        if problems:
            raise ModelError(f'{source}: ' + '; '.join(problems))


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
