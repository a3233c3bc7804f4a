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

"""Face embedding with onnxruntime, preprocessing read from the model file's metadata."""

import hashlib
import os

from face_id_ros.core.errors import ModelError
from face_id_ros.core.model_metadata import METADATA_KEY, ModelMetadata
import numpy as np
import onnxruntime


def model_fingerprint(path):
    """Return the SHA-256 of the model file: galleries record it to refuse other models."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class OnnxEmbedder:
    """
    Embeds aligned face crops (BGR uint8) in one batch; returns L2-normalised rows.

    A model whose metadata names a ``mask_output`` also gives each face's probability of
    wearing a mask (``embed_and_mask``); any other model gives NaN there: unknown.
    """

    def __init__(self, path, threads=1, flip_sum=False):
        """Open the model, read and validate its ``face_id`` metadata; raise ModelError."""
        path = os.path.expanduser(str(path))
        if not os.path.isfile(path):
            raise ModelError(f'embedder model not found: {path}')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                path, options, providers=['CPUExecutionProvider'])
        except Exception as error:  # onnxruntime raises several private types
            raise ModelError(f'cannot load embedder {path}: {error}')
        try:
            stored = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        except Exception as error:  # e.g. metadata that is not UTF-8 (UnicodeDecodeError)
            raise ModelError(f'cannot read the metadata of embedder {path}: {error}')
        if stored is None:
            raise ModelError(
                f'{path} has no {METADATA_KEY!r} metadata (input size, channel order, '
                'normalisation, template); add it with `face-id model stamp`')
        self.metadata = ModelMetadata.from_json(stored, source=path)
        self.path = path
        self.fingerprint = model_fingerprint(path)
        self.flip_sum = flip_sum
        self._output_names = self._checked_outputs(path)
        model_input = self._checked_input(path)
        self._input_name = model_input.name
        # Some third-party exports fix the batch at 1: run those one face at a time.
        self._fixed_single_batch = model_input.shape[0] == 1
        channels = [2, 1, 0] if self.metadata.channel_order == 'RGB' else [0, 1, 2]
        self._channels = np.array(channels)
        self._mean = np.asarray(self.metadata.mean, np.float32)
        self._inverse_std = 1.0 / np.asarray(self.metadata.std, np.float32)

    def _checked_input(self, path):
        """Return the one float image input, refused unless its shape agrees with metadata."""
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f'{path}: the model has {len(inputs)} inputs '
                             f'{[item.name for item in inputs]}; an embedder takes one batch '
                             'of face crops')
        model_input = inputs[0]
        width, height = self.input_size
        expected = ((None, 3, height, width) if self.metadata.layout == 'NCHW'
                    else (None, height, width, 3))
        shape = tuple(model_input.shape)
        # Symbolic dimensions (strings, None) are free; whole numbers must agree.
        lying = len(shape) != 4 or any(
            isinstance(actual, int) and want is not None and actual != want
            for actual, want in zip(shape, expected))
        if lying or model_input.type != 'tensor(float)':
            raise ModelError(
                f'{path}: the model input {model_input.name!r} is {model_input.type} of shape '
                f'{list(shape)}, but its metadata says {self.metadata.layout} float crops of '
                f'{width}x{height}: {list(expected)}')
        embedding = self._session.get_outputs()[0]
        size = embedding.shape[-1] if len(embedding.shape) else None
        if isinstance(size, int) and size != self.embedding_size:
            raise ModelError(f'{path}: the model gives {size}-d embeddings, its metadata says '
                             f'{self.embedding_size}')
        return model_input

    def _checked_outputs(self, path):
        """Return the outputs to run: the embedding first, then the mask output if declared."""
        names = [output.name for output in self._session.get_outputs()]
        mask_output = self.metadata.mask_output
        if mask_output and mask_output not in names[1:]:
            raise ModelError(f'{path}: metadata names the mask output {mask_output!r}, the '
                             f'model has the outputs {names}')
        return [names[0]] + ([mask_output] if mask_output else [])

    @property
    def has_mask_output(self):
        """Whether the model says, per face, if a mask is worn."""
        return len(self._output_names) == 2

    @property
    def embedding_size(self):
        """Length of one embedding."""
        return int(self.metadata.embedding_size)

    @property
    def input_size(self):
        """Crop size ``(width, height)`` the model expects."""
        return tuple(int(side) for side in self.metadata.input_size)

    def embed(self, crops):
        """Embed a batch of aligned BGR crops ``(N, H, W, 3)``; return ``(N, D)`` float32."""
        return self.embed_and_mask(crops)[0]

    def embed_and_mask(self, crops):
        """
        Return ``(N, D)`` unit embeddings and ``(N,)`` mask probabilities of aligned crops.

        The probabilities are NaN when the model has no mask output. With ``flip_sum`` both
        come from the crop and its mirror image (summed embeddings, mean probability).
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[0] == 0:
            return np.zeros((0, self.embedding_size), np.float32), np.zeros(0, np.float32)
        width, height = self.input_size
        if crops.shape[1:] != (height, width, 3):
            raise ModelError(f'crops have shape {crops.shape[1:]}, the model wants '
                             f'{(height, width, 3)}')
        batch = self._prepare(crops)
        if self.flip_sum:
            batch = np.concatenate([batch, batch[..., ::-1] if self._nchw else
                                    batch[:, :, ::-1]])
        try:
            output, masks = self._run(batch)
        except ValueError as error:  # outputs of another batch size than the input's
            raise ModelError(f'{self.path}: model outputs do not fit the batch: {error}')
        if self.flip_sum:
            output = output[:len(crops)] + output[len(crops):]
            masks = (masks[:len(crops)] + masks[len(crops):]) / 2
        if output.shape[1] != self.embedding_size:
            raise ModelError(f'model gave {output.shape[1]}-d embeddings, its metadata says '
                             f'{self.embedding_size}')
        if not np.all(np.isfinite(output)):
            raise ModelError(f'{self.path}: model gave embeddings that are not finite numbers '
                             '(NaN or infinity); the model file is damaged')
        norms = np.linalg.norm(output, axis=1, keepdims=True)
        return output / np.maximum(norms, 1e-12), masks

    def _run(self, batch):
        """Return the raw embeddings ``(N, D)`` and mask probabilities ``(N,)`` (or NaN)."""
        try:
            if self._fixed_single_batch:
                runs = [self._session.run(self._output_names,
                                          {self._input_name: batch[index:index + 1]})
                        for index in range(len(batch))]
                outputs = [np.concatenate(parts) for parts in zip(*runs)]
            else:
                outputs = self._session.run(self._output_names, {self._input_name: batch})
        except Exception as error:  # onnxruntime raises several private types
            raise ModelError(f'embedder {self.path} failed on a batch of '
                             f'{list(batch.shape)}: {error}')
        embeddings = outputs[0].reshape(len(batch), -1).astype(np.float32)
        if len(outputs) == 1:
            return embeddings, np.full(len(batch), np.nan, np.float32)
        return embeddings, outputs[1].reshape(len(batch)).astype(np.float32)

    @property
    def _nchw(self):
        return self.metadata.layout == 'NCHW'

    def _prepare(self, crops):
        batch = (crops[..., self._channels].astype(np.float32) - self._mean) * self._inverse_std
        if self._nchw:
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)
