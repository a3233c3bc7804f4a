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

"""Fuzz targets of models: face_id metadata JSON and ONNX model files."""

import json
from pathlib import Path
import re

from face_id_ros.core.errors import FaceIdError
from face_id_ros.evaluation.fuzz.mutation import mutate_bytes, write_case_file
import numpy as np


JSON_VALUES = (0, 1, -1, 2, 16, 112, 128, 10 ** 30, 10 ** 400, 1.5, -0.0, float('nan'),
               float('inf'), -float('inf'), True, False, None, '', 'x', 'NCHW', 'NHWC', 'RGB',
               'BGR', '112', [], [112], [112, 112], [112, 112, 3], [16, 16], [15, 200],
               [100000, 100000], [[1, 2]] * 5, [[0, 0]] * 5, [[1, 2, 3]] * 5, ['a', 'b', 'c'],
               [1, 2, 3], [0, 0, 0], [1, -1, 1], [None] * 3, {'a': 1}, [[1, 2]] * 4,
               [[float('nan'), 1]] * 5, [1e400, 1, 1], 'x' * 10000)


def metadata_seeds():
    """Return the shipped model's ``face_id`` metadata and a tiny model's, as JSON text."""
    from face_id_ros.core.model_metadata import METADATA_KEY, ModelMetadata
    import onnxruntime
    from face_id_ros.core.resources import package_share_file
    session = onnxruntime.InferenceSession(
        str(package_share_file('models/face_embedder.onnx')),
        providers=['CPUExecutionProvider'])
    shipped = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    tiny = ModelMetadata(name='tiny', version='0', embedding_size=16, layout='NHWC',
                         channel_order='BGR').to_json()
    return [shipped.encode(), tiny.encode()]


def build_metadata_seeds(workdir):
    """Seeds of the metadata target."""
    return metadata_seeds()


def generate_metadata(rng, seeds):
    """Return mutated ``face_id`` metadata text: lying values, missing keys, not JSON."""
    seed = rng.choice(seeds)
    mode = rng.randrange(8)
    if mode < 5:
        payload = json.loads(seed)
        for _ in range(1 + int(rng.expovariate(1.0))):
            operation = rng.randrange(6)
            key = rng.choice(sorted(payload)) if isinstance(payload, dict) and payload else None
            if key is None:
                break
            if operation < 3:
                payload[key] = rng.choice(JSON_VALUES)
            elif operation == 3:
                del payload[key]
            elif operation == 4:
                payload[rng.choice(('format_version', 'extra', 'unknown', '', 'template'))] = \
                    rng.choice(JSON_VALUES)
            else:
                payload = rng.choice(([payload], 'x', None, 1, [], payload))
        return json.dumps(payload).encode()
    if mode == 5:
        return mutate_bytes(rng, seed, seeds)
    if mode == 6:
        return rng.choice((b'', b'null', b'[]', b'"x"', b'1', b'{', b'[' * 100000,
                           b'{"a":' * 50000, b'NaN', b'\xff\xfe', b'{"format_version": 1}'))
    text = seed.decode()
    tokens = list(re.finditer(r'-?[0-9.]+(e-?[0-9]+)?|"[A-Za-z]+"', text))
    match = rng.choice(tokens)
    value = rng.choice(('NaN', 'Infinity', '-Infinity', '1e999', '9' * 5000, 'null', '"7"',
                        '[]', '{}', 'true', '-0', '0', '1e-999', '[1,[2,[3]]]'))
    return (text[:match.start()] + value + text[match.end():]).encode()


def run_metadata(case, workdir):
    """Parse metadata and use each field as the runtime does (embedder, alignment)."""
    from face_id_ros.core.model_metadata import ModelMetadata
    metadata = ModelMetadata.from_json(case.decode('utf-8', 'replace'), source='fuzz')
    use_metadata(metadata)
    return metadata.name


def use_metadata(metadata):
    """Do with metadata what OnnxEmbedder and the pipeline do; raise if a field is unusable."""
    from face_id_ros.core.alignment import detector_template
    from face_id_ros.core.detection import FIVE_POINTS, FOUR_POINTS
    size = int(metadata.embedding_size)
    assert 2 <= size, size
    width, height = (int(side) for side in metadata.input_size)
    assert 16 <= width <= 4096 and 16 <= height <= 4096, metadata.input_size
    mean = np.asarray(metadata.mean, np.float32)
    inverse_std = 1.0 / np.asarray(metadata.std, np.float32)
    assert mean.shape == (3,) and np.all(np.isfinite(mean)), metadata.mean
    assert inverse_std.shape == (3,) and np.all(np.isfinite(inverse_std)), metadata.std
    assert metadata.layout in ('NCHW', 'NHWC') and metadata.channel_order in ('RGB', 'BGR')
    threshold = float(metadata.cosine_threshold)
    assert -1.0 <= threshold <= 1.0, threshold
    if metadata.masked_cosine_threshold is not None:
        masked = float(metadata.masked_cosine_threshold)
        assert threshold <= masked <= 1.0, masked
    for landmark_set in (FIVE_POINTS, FOUR_POINTS):
        points = detector_template(landmark_set, metadata.template)
        assert np.all(np.isfinite(points)), metadata.template


TINY_METADATA = {'name': 'tiny', 'version': '0', 'embedding_size': 16, 'cosine_threshold': 0.9}


def tiny_model_proto(embedding_size=16, input_shape=('batch', 3, 112, 112), layout='NCHW',
                     seed=0):
    """Return a small real ONNX embedder: average pooling, then a random projection."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    from face_id_ros.core.model_metadata import attach_metadata, ModelMetadata
    weights = np.random.default_rng(seed).normal(size=(147, embedding_size)).astype(np.float32)
    nodes = []
    source = 'input'
    if layout == 'NHWC':
        nodes.append(helper.make_node('Transpose', ['input'], ['nchw'], perm=[0, 3, 1, 2]))
        source = 'nchw'
    nodes += [helper.make_node('AveragePool', [source], ['pooled'], kernel_shape=[16, 16],
                               strides=[16, 16]),
              helper.make_node('Flatten', ['pooled'], ['flat']),
              helper.make_node('MatMul', ['flat', 'weights'], ['embedding'])]
    graph = helper.make_graph(
        nodes, 'tiny_embedder',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info('embedding', TensorProto.FLOAT,
                                       [input_shape[0], embedding_size])],
        [numpy_helper.from_array(weights, 'weights')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    attach_metadata(model, ModelMetadata(layout=layout, **TINY_METADATA))
    onnx.checker.check_model(model)
    return model


def build_model_seeds(workdir):
    """Real model files: tiny embedders (NCHW, NHWC, fixed batch) and the shipped model."""
    from face_id_ros.core.resources import package_share_file
    try:
        seeds = [tiny_model_proto().SerializeToString(),
                 tiny_model_proto(input_shape=('batch', 112, 112, 3),
                                  layout='NHWC').SerializeToString(),
                 tiny_model_proto(input_shape=(1, 3, 112, 112)).SerializeToString()]
    except ImportError:  # onnx (the test extra) is absent: mutate the shipped model only
        seeds = []
    return {'models': seeds + [Path(package_share_file('models/face_embedder.onnx'))
                               .read_bytes()],
            'metadata': metadata_seeds()}


def generate_model(rng, seeds):
    """Return mutated model file bytes: lying metadata, lying graph, or damaged protobuf."""
    models = seeds['models']
    # The shipped model costs ~40 ms a session; pick it for one input in ten.
    seed = models[-1] if len(models) == 1 or rng.random() < 0.1 else rng.choice(models[:-1])
    mode = rng.randrange(10)
    if mode >= 7 or len(models) == 1:
        return mutate_bytes(rng, seed, max_ops=3)
    import onnx
    from face_id_ros.core.model_metadata import METADATA_KEY
    model = onnx.load_from_string(seed)
    if mode < 4:  # lying or broken metadata
        entries = [entry for entry in model.metadata_props if entry.key == METADATA_KEY]
        choice = rng.randrange(6)
        if choice == 0:
            for entry in entries:
                model.metadata_props.remove(entry)
        elif choice == 1:
            entry = model.metadata_props.add()
            entry.key = METADATA_KEY
            entry.value = generate_metadata(rng, seeds['metadata']).decode('utf-8', 'replace')
        else:
            payload = json.loads(entries[0].value)
            key = rng.choice(('embedding_size', 'input_size', 'layout', 'channel_order',
                              'template', 'mean', 'std', 'format_version', 'cosine_threshold'))
            payload[key] = rng.choice(JSON_VALUES + (8, 32, 64, 256, 512, [96, 96], [112, 96],
                                                     [224, 224], 'NHWC', 'NCHW'))
            entries[0].value = json.dumps(payload)
        data = model.SerializeToString()
        if rng.random() < 0.1:  # metadata text that is not UTF-8
            data = data.replace(b'"format_version"', b'"format_\xff\xfeion"')
        return data
    if mode < 6:  # a graph whose shapes or types lie
        graph_input = model.graph.input[0].type.tensor_type
        choice = rng.randrange(7)
        if choice == 0:
            dimension = graph_input.shape.dim[rng.randrange(len(graph_input.shape.dim))]
            dimension.dim_value = rng.choice((1, 2, 3, 16, 96, 111, 224, 10 ** 6))
        elif choice == 1:
            graph_input.elem_type = rng.choice((onnx.TensorProto.FLOAT16,
                                                onnx.TensorProto.UINT8,
                                                onnx.TensorProto.DOUBLE,
                                                onnx.TensorProto.STRING))
        elif choice == 2:
            extra = model.graph.input.add()
            extra.CopyFrom(model.graph.input[0])
            extra.name = 'second'
        elif choice == 3:
            model.ir_version = rng.choice((99, 0, 3))
        elif choice == 4:
            model.opset_import[0].version = rng.choice((99, 1, 5))
        elif choice == 5:
            del graph_input.shape.dim[rng.randrange(len(graph_input.shape.dim))]
        else:
            output = model.graph.output[0].type.tensor_type
            output.shape.dim[-1].dim_value = rng.choice((1, 8, 17, 128))
        return model.SerializeToString()
    return mutate_bytes(rng, seed, max_ops=2)  # damaged protobuf, realistic few flips


def run_model(case, workdir):
    """Open a model file as the node does and embed a batch of crops of the size it states."""
    from face_id_ros.core.embedding import OnnxEmbedder
    from face_id_ros.core.errors import ModelError
    path = write_case_file(workdir, 'model.onnx', case)
    try:
        embedder = OnnxEmbedder(path, flip_sum=len(case) % 2 == 1)
        use_metadata(embedder.metadata)
        width, height = embedder.input_size
        crops = np.zeros((2, height, width, 3), np.uint8)
        crops[1] = 200
        embeddings = embedder.embed(crops)
        assert embeddings.shape == (2, embedder.embedding_size), embeddings.shape
        assert embeddings.dtype == np.float32 and np.all(np.isfinite(embeddings))
        assert embedder.embed(crops[:0]).shape == (0, embedder.embedding_size)
    except FaceIdError as error:
        if not isinstance(error, ModelError):  # the documented type of a model file's errors
            raise AssertionError(f'model file refused with {type(error).__name__}, '
                                 f'not ModelError: {error}')
        raise
    return embeddings.shape
