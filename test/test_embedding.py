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

from conftest import build_tiny_embedder
import cv2
from face_id_ros.core.embedding import model_fingerprint, OnnxEmbedder
from face_id_ros.core.errors import ModelError
import numpy as np
import pytest


@pytest.fixture
def crops(portrait):
    """Three different 112x112 BGR crops of a real photo."""
    return np.stack([cv2.resize(portrait[y:y + 300, 100:400], (112, 112))
                     for y in (0, 100, 200)])


def raw_outputs(crops, weights_seed=0, size=16):
    """Recompute the tiny model by hand: RGB, (x-127.5)/127.5, 16x16 means, projection."""
    weights = np.random.default_rng(weights_seed).normal(size=(147, size)).astype(np.float32)
    rgb = (crops[..., ::-1].astype(np.float32) - 127.5) / 127.5
    pooled = rgb.reshape(len(crops), 7, 16, 7, 16, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)
    return pooled.reshape(len(crops), -1) @ weights


def expected_embeddings(crops):
    raw = raw_outputs(crops)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_embeddings_follow_the_metadata_preprocessing_and_are_unit_length(tiny_model, crops):
    embedder = OnnxEmbedder(tiny_model)
    embeddings = embedder.embed(crops)
    assert embeddings.shape == (3, 16) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, expected_embeddings(crops), atol=1e-4)


def test_a_fixed_batch_of_one_model_gives_the_same_embeddings(tmp_path, tiny_model, crops):
    single = OnnxEmbedder(build_tiny_embedder(tmp_path / 'single.onnx', batch=1))
    np.testing.assert_allclose(single.embed(crops), OnnxEmbedder(tiny_model).embed(crops),
                               atol=1e-6)


def test_flip_sum_adds_the_mirrored_face_before_normalising(tiny_model, crops):
    embeddings = OnnxEmbedder(tiny_model, flip_sum=True).embed(crops)
    both = raw_outputs(crops) + raw_outputs(crops[:, :, ::-1])
    np.testing.assert_allclose(embeddings, both / np.linalg.norm(both, axis=1, keepdims=True),
                               atol=1e-4)


def test_a_model_without_metadata_is_refused_with_the_fix(tmp_path):
    path = build_tiny_embedder(tmp_path / 'bare.onnx', metadata=False)
    with pytest.raises(ModelError, match='face-id model stamp'):
        OnnxEmbedder(path)


def test_missing_and_corrupt_model_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match='not found'):
        OnnxEmbedder(tmp_path / 'nothing.onnx')
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'not a model')
    with pytest.raises(ModelError, match='cannot load embedder'):
        OnnxEmbedder(corrupt)


def test_wrong_crop_size_and_empty_batches(tiny_model):
    embedder = OnnxEmbedder(tiny_model)
    with pytest.raises(ModelError, match='crops have shape'):
        embedder.embed(np.zeros((1, 100, 100, 3), np.uint8))
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 16)


def test_fingerprint_is_the_file_hash_and_differs_between_models(tmp_path, tiny_model):
    other = build_tiny_embedder(tmp_path / 'other.onnx', seed=1)
    assert OnnxEmbedder(tiny_model).fingerprint == model_fingerprint(tiny_model)
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    assert len(model_fingerprint(other)) == 64
