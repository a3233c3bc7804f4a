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

"""Shared pytest fixtures."""

import itertools
from pathlib import Path
import re

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Each server test gets a database of its own on the session's throw-away server.
DATABASE_NUMBERS = itertools.count()

# No test module may skip at import time: where ROS 2 is, launch_testing's pytest plugin
# imports every test module while collecting and lets such a skip escape, which drops the
# whole test folder (colcon test: 0 tests, exit 0). Skip inside the tests, with a marker
# (test_test_suite.py checks).


@pytest.fixture
def package_root():
    """Return the package's source folder, the one holding package.xml."""
    return PACKAGE_ROOT


@pytest.fixture
def lint_paths():
    """List the Python sources the ament linters check, leaving out .venv/, runs/ and the like."""
    candidates = (PACKAGE_ROOT / name
                  for name in ('face_id_ros', 'launch', 'test', '.ci', 'setup.py'))
    return [str(path) for path in candidates if path.exists()]


SHARED_DATA = PACKAGE_ROOT.parent / 'shared' / 'data'
TEACHER_ONNX = SHARED_DATA / 'models' / 'teacher_mobilefacenet' / 'mobilefacenet.onnx'
YUNET_ONNX = SHARED_DATA / 'models' / 'yunet' / 'yunet_s_640_640.onnx'
LFW_DIR = SHARED_DATA / 'eval' / 'lfw'


def build_tiny_embedder(path, embedding_size=16, batch=None, metadata=True, seed=0):
    """
    Write a small real ONNX embedder: 16x16 average pooling, then a fixed random projection.

    It is no face model, but it is a real onnxruntime session for plumbing tests.
    """
    import numpy as np
    import onnx
    from onnx import helper, TensorProto

    from face_id_ros.core.model_metadata import attach_metadata, ModelMetadata
    weights = np.random.default_rng(seed).normal(size=(147, embedding_size)).astype(np.float32)
    batch_dim = batch if batch is not None else 'batch'
    graph = helper.make_graph(
        [helper.make_node('AveragePool', ['input'], ['pooled'], kernel_shape=[16, 16],
                          strides=[16, 16]),
         helper.make_node('Flatten', ['pooled'], ['flat']),
         helper.make_node('MatMul', ['flat', 'weights'], ['embedding'])],
        'tiny_embedder',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, [batch_dim, 3, 112, 112])],
        [helper.make_tensor_value_info('embedding', TensorProto.FLOAT,
                                       [batch_dim, embedding_size])],
        [onnx.numpy_helper.from_array(weights, 'weights')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    if metadata:
        attach_metadata(model, ModelMetadata(name='tiny-test', version='0',
                                             embedding_size=embedding_size,
                                             cosine_threshold=0.9))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory):
    """Return the path of a tiny real ONNX embedder with face_id metadata."""
    return build_tiny_embedder(tmp_path_factory.mktemp('models') / 'tiny.onnx')


@pytest.fixture(scope='session')
def teacher_model(tmp_path_factory):
    """Return the shared MobileFaceNet teacher stamped with metadata; skip when absent."""
    if not TEACHER_ONNX.is_file():
        pytest.skip('../shared/data teacher model is absent')
    from face_id_ros.cli.parser import main
    target = tmp_path_factory.mktemp('teacher') / 'teacher.onnx'
    status = main(['model', 'stamp', str(TEACHER_ONNX), str(target), '--name', 'teacher',
                   '--version', 'test', '--embedding-size', '128',
                   '--mean', '123.675', '116.28', '103.53', '--std', '58.395', '57.12',
                   '57.375', '--cosine-threshold', '0.4'])
    assert status == 0
    return target


@pytest.fixture(scope='session')
def portrait():
    """Return the sample portrait that ships with matplotlib (BGR)."""
    from face_id_ros.evaluation.samples import sample_portrait
    return sample_portrait()


@pytest.fixture(scope='session')
def postgres_cluster():
    """Start a throw-away PostgreSQL server on loopback for the session; skip without one."""
    from face_id_ros.evaluation.postgres_cluster import missing_reason, ThrowAwayCluster
    reason = missing_reason()
    if reason:
        pytest.skip(f'no PostgreSQL server to test against: {reason}')
    cluster = ThrowAwayCluster()
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@pytest.fixture
def server_url(postgres_cluster, request):
    """Return the URL of a new, empty database on the session's server (one per test)."""
    name = 'g_' + re.sub(r'[^a-z0-9]', '_', request.node.name.lower())[:50]
    return postgres_cluster.new_database(f'{name}_{next(DATABASE_NUMBERS)}')
