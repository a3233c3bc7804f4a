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
Fuzzing in the suite: found inputs, property tests and a short run of the runner.

Each input the fuzzer found has a regression test of that exact input; the property tests
use hypothesis with a fixed, derandomised profile; the runner itself runs a short campaign.

The long run is a command: ``face-id fuzz --inputs 1000000 --seed 0 --out .cache/fuzz``.
"""

import json
import math
from pathlib import Path
import sqlite3
import time
from types import SimpleNamespace

import cv2
from face_id_ros.cli.parser import main
from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.embedding import OnnxEmbedder
from face_id_ros.core.errors import ConfigError, FaceIdError, GalleryError, ModelError
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.image_codec import decode_compressed_image, decode_image
from face_id_ros.core.model_metadata import METADATA_KEY, ModelMetadata
from face_id_ros.evaluation.fuzz import campaign, galleries, images, models, yaml_files
from face_id_ros.evaluation.labels import load_labels
import numpy as np
import pytest

try:
    from hypothesis import given, HealthCheck, settings, strategies as st
except ImportError:  # the test extra is not installed: the property tests skip
    given = settings = st = None

needs_hypothesis = pytest.mark.skipif(given is None, reason='needs hypothesis (test extra)')


def property_test(strategies, max_examples=300):
    """
    Make a hypothesis test with a fixed, derandomised profile: CI runs the same examples.

    ``strategies`` is a function returning the keyword strategies, called only where
    hypothesis is installed; elsewhere the test is skipped.
    """
    def decorate(test):
        if given is None:
            return needs_hypothesis(test)
        profile = settings(derandomize=True, database=None, deadline=None,
                           max_examples=max_examples, suppress_health_check=list(HealthCheck))
        return profile(given(**strategies())(test))
    return decorate


FINGERPRINT = 'a' * 64


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode('utf-8'))
    return path


# -- Regression tests: each input the fuzzer found, refused with the documented type -----------

# 79 bytes whose IDAT chunk states 4,278,124,286 bytes (compressed_image, seed 0, input 701):
# OpenCV 4.11 took 4.2 GB and 8 s to refuse it; the decoder now refuses it before OpenCV.
PNG_STATING_4_GB = (
    b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x02\x08B\x00\x00\xfe'
    b'\x00\x00\x80\x00\xfe\xfe\xfe\xfe\xfeDAT\x08\x1dc\x8cv\x0b\x105\xf0`\x16\xe5f}\xf2\xec'
    b'\x11\x00\x16m\x04Tr{o\x0f\x00\x00\x00\x00IEND\xaeB`\x82')


def test_a_png_chunk_longer_than_the_data_is_refused_before_opencv_allocates_it():
    started = time.monotonic()
    with pytest.raises(FaceIdError, match='corrupt PNG: chunk .* states 4278124286 bytes'):
        decode_compressed_image(SimpleNamespace(format='png', data=PNG_STATING_4_GB))
    assert time.monotonic() - started < 0.5


# A valid IHDR, then IEND, then 27 bytes whose first four state a 2.5 GB chunk
# (compressed_image, seed 7, input 1041): OpenCV 4.11 read past IEND, took 2.5 GB and 3 s.
PNG_WITH_A_CHUNK_AFTER_IEND = (
    b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x03\x00\x00\x00\x05\x10\x00\x00\x00'
    b'\x00\xf5\x8a\xd5=\x00\x00\x00\x00IEND\xaeB`\x82\x97\xa5\xf1\xa1\xbeB1\xabp0\x07\xa9'
    b'\xb5>\xbe\x80@@@@@@@@@j(')


def test_bytes_after_a_png_iend_never_reach_opencv():
    started = time.monotonic()
    with pytest.raises(FaceIdError, match='corrupt PNG: no IDAT chunk'):
        decode_compressed_image(SimpleNamespace(format='png', data=PNG_WITH_A_CHUNK_AFTER_IEND))
    assert time.monotonic() - started < 0.5


def test_an_animated_png_is_refused(portrait):
    # The exact input (compressed_image, seed 0, input 49534): the seed 16-bit grey PNG of a
    # 52x40 cut of the portrait with this acTL chunk after IHDR. OpenCV 4.11's APNG reader
    # returned a uint16 picture, mostly black; the decoder promises 8-bit BGR frames.
    gray = cv2.cvtColor(np.ascontiguousarray(portrait[100:140, 150:202]), cv2.COLOR_BGR2GRAY)
    png = cv2.imencode('.png', gray.astype(np.uint16) * 257)[1].tobytes()
    chunks, _ = images.png_chunks(png)
    data = (png[:8] + images.png_chunk(*chunks[0])
            + images.png_chunk(b'acTL', b'\xc4\xd9\x8c\xf9\xcc\x9f\xe7R')
            + b''.join(images.png_chunk(kind, body) for kind, body in chunks[1:]))
    assert len(data) == 2468
    with pytest.raises(FaceIdError, match='animated PNG'):
        decode_compressed_image(SimpleNamespace(format='png', data=data))
    # The same picture without acTL decodes to 8-bit BGR, its grey levels' high bytes.
    decoded = decode_compressed_image(SimpleNamespace(format='png', data=png))
    images.check_picture(decoded, 40, 52)
    np.testing.assert_array_equal(decoded, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


def test_a_png_cut_before_iend_is_refused_and_a_whole_one_still_decodes():
    png = cv2.imencode('.png', np.full((6, 4, 3), 77, np.uint8))[1].tobytes()
    with pytest.raises(FaceIdError, match='ends before the IEND'):
        decode_compressed_image(SimpleNamespace(format='png', data=png[:-12]))
    decoded = decode_compressed_image(SimpleNamespace(format='png', data=png + b'junk'))
    assert decoded.shape == (6, 4, 3) and decoded[0, 0, 0] == 77


def test_absurd_raw_header_with_ten_bytes_is_refused_quickly():
    msg = SimpleNamespace(height=60000, width=60000, step=180000, encoding='bgr8',
                          is_bigendian=0, data=bytes(10))
    started = time.monotonic()
    with pytest.raises(FaceIdError, match='MAX_PIXELS'):
        decode_image(msg)
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize('text, reason', [
    ('1: a\nb: c\n', 'unknown section'),  # keys of two types could not be sorted
    ('detector: {1: 2, x: 3}\n', 'unknown key'),
    ('detector: {min_face_size: .inf}\n', 'finite'),  # int(inf): OverflowError
    ('detector: {min_face_size: .nan}\n', 'finite'),  # int(nan): ValueError
    ('detector: {min_score: .nan}\n', 'finite'),  # was accepted: NaN passes every range check
    ('detector: {min_score: ' + '9' * 400 + '}\n', 'out of range'),  # float(): OverflowError
    ('detector: {min_score: ' + '9' * 5000 + '}\n', 'cannot construct'),  # no int past 4300
    ('detector: {backend: !!int x}\n', 'cannot construct'),  # PyYAML's ValueError
    ('detector: {backend: !!timestamp x}\n', 'cannot construct'),  # PyYAML's AttributeError
    ('[' * 2000 + ']' * 2000, 'nests'),  # took seconds, then RecursionError
    ('a: ' + '[' * 400 + ']' * 400, 'nests'),
    ('gallery: {id_pattern: "(("}\n', 'not a regular expression'),  # was accepted
])
def test_config_files_the_fuzzer_found_are_config_errors(tmp_path, text, reason):
    with pytest.raises(ConfigError, match=reason):
        PipelineConfig.from_yaml(write(tmp_path, 'config.yaml', text))


def test_config_that_is_not_utf8_or_too_large_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match='not UTF-8'):
        PipelineConfig.from_yaml(write(tmp_path, 'bad.yaml', b'detector: {backend: \xff\xfe}\n'))
    with pytest.raises(ConfigError, match='larger than'):
        PipelineConfig.from_yaml(write(tmp_path, 'big.yaml', b'# x\n' * 300000))


def billion_laughs(width=9, depth=8):
    """Return a flow list of anchors, each level nine aliases of the one before: 9^8 lols."""
    levels = [f'&a0 [{", ".join(["lol"] * width)}]']
    levels += [f'&a{level} [{", ".join([f"*a{level - 1}"] * width)}]'
               for level in range(1, depth + 1)]
    return '[' + ', '.join(levels) + ']'


@pytest.mark.parametrize('text', [
    'detector: {min_score: %s}\n',  # check_value: expected a number, got {value!r}
    'detector: %s\n',  # build_stage: expected a mapping, got {mapping!r}
    'intervals: [{start: 0, end: 1, subject: %s}]\n',  # _interval: subject {subject!r}
    'intervals: [%s]\n',  # _interval: expected the keys, got {repr(item)}
])
def test_a_billion_laughs_is_refused_quickly_with_a_short_message(tmp_path, text):
    # 9^8 = 43 million references in 400 bytes: putting their repr in the message took
    # minutes and gigabytes.
    path = write(tmp_path, 'laughs.yaml', text % billion_laughs())
    started = time.monotonic()
    with pytest.raises(FaceIdError) as raised:
        if text.startswith('detector'):
            PipelineConfig.from_yaml(path)
        else:
            load_labels(path)
    assert time.monotonic() - started < 2.0
    assert len(str(raised.value)) < 1000


@pytest.mark.parametrize('text, reason', [
    ('1: a\nintervals: []\n', 'one key "intervals"'),  # TypeError sorting int and str keys
    ('intervals: [{1: 0, end: 1, subject: nobody}]\n', 'expected the keys'),
    ('intervals: [{~: 0, end: 1, subject: nobody}]\n', 'expected the keys'),
    ('intervals: [{start: ' + '9' * 400 + ', end: 1, subject: nobody}]\n', 'finite'),
    (b'intervals: [{start: 0, end: 1, subject: \xff}]\n', 'not UTF-8'),
])
def test_labels_files_the_fuzzer_found_are_face_id_errors(tmp_path, text, reason):
    with pytest.raises(FaceIdError, match=reason):
        load_labels(write(tmp_path, 'labels.yaml', text))


def metadata_json(**changes):
    payload = json.loads(ModelMetadata(name='m', version='1', embedding_size=16).to_json())
    payload.update(changes)
    return json.dumps(payload)


@pytest.mark.parametrize('text, reason', [
    ('[1]', 'not a JSON object'),  # list.pop(key, None): TypeError
    ('"x"', 'not a JSON object'),  # AttributeError
    ('null', 'not a JSON object'),
    ('[' * 100000, 'nested too deeply'),  # RecursionError
    (metadata_json(embedding_size='abc'), 'embedding_size'),  # int('abc'): ValueError
    (metadata_json(embedding_size=16.5), 'embedding_size'),  # was taken as 16
    (metadata_json(embedding_size=10 ** 30), 'embedding_size'),
    (metadata_json(input_size=5), 'input_size'),  # len(5): TypeError
    (metadata_json(input_size=[100000, 100000]), 'input_size'),  # was accepted: 30 GB crops
    (metadata_json(input_size=['a', 'b']), 'input_size'),
    (metadata_json(std=[float('nan'), 1, 1]), 'std'),  # was accepted: NaN embeddings
    (metadata_json(mean=[-float('inf'), 1, 1]), 'mean'),  # was accepted
    (metadata_json(mean=['NCHW', 1, 1]), 'mean'),  # float('NCHW'): ValueError, later
    # Found by atheris (coverage-guided): finite, but inf as the runtime's float32.
    (metadata_json(mean=[127.5, 127.5, float('8' * 61 + '127.5')]), 'float32'),
    (metadata_json(std=[127.5, 127.5, 1e-300]), 'float32'),  # 1 / std: inf as float32
    (metadata_json(template=[1, 2, 3, 4, 5]), 'template'),  # len(1): TypeError
    (metadata_json(template=[[1, 2]] * 4 + [[1, None]]), 'template'),  # alignment TypeError
    (metadata_json(template=[[1, 2]] * 5), 'template'),  # degenerate
    (metadata_json(cosine_threshold=None), 'cosine_threshold'),  # float(None): TypeError
    (metadata_json(cosine_threshold=[0.5]), 'cosine_threshold'),
    # Below the bare threshold it would name masked strangers the bare one refuses.
    (metadata_json(cosine_threshold=0.5, masked_cosine_threshold=0.4), 'masked_cosine'),
    (metadata_json(masked_cosine_threshold='0.7'), 'masked_cosine'),
    (metadata_json(masked_cosine_threshold=float('nan')), 'masked_cosine'),
    (metadata_json(layout=['NCHW']), 'layout'),
    (metadata_json(name=7), 'name'),
])
def test_metadata_the_fuzzer_found_is_a_model_error(text, reason):
    with pytest.raises(ModelError, match=reason):
        ModelMetadata.from_json(text, source='fuzz')


@pytest.fixture(scope='module')
def tiny_proto():
    pytest.importorskip('onnx')  # in a test, not at import: see conftest.py
    return models.tiny_model_proto()


def save_model(tmp_path, model, name='model.onnx'):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString() if hasattr(model, 'SerializeToString')
                     else model)
    return path


def test_metadata_that_is_not_utf8_is_a_model_error(tmp_path, tiny_proto):
    data = tiny_proto.SerializeToString().replace(b'"format_version"', b'"format_\xff\xfeion"')
    with pytest.raises(ModelError, match='metadata'):
        OnnxEmbedder(save_model(tmp_path, data))


def lying_model(proto, change):
    import onnx
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    change(model)
    return model


def set_metadata(**changes):
    def change(model):
        entry = next(item for item in model.metadata_props if item.key == METADATA_KEY)
        payload = json.loads(entry.value)
        payload.update(changes)
        entry.value = json.dumps(payload)
    return change


def second_input(model):
    extra = model.graph.input.add()
    extra.CopyFrom(model.graph.input[0])
    extra.name = 'second'


@pytest.mark.parametrize('change, reason', [
    (set_metadata(input_size=[96, 96]), 'metadata says NCHW float crops of 96x96'),
    (set_metadata(layout='NHWC'), 'metadata says NHWC'),
    (set_metadata(embedding_size=128), 'gives 16-d embeddings, its metadata says 128'),
    (second_input, '2 inputs'),  # session.run: ValueError, missing input
    (set_metadata(input_size=[112, 96]), 'of shape'),  # InvalidArgument on the first batch
])
def test_models_whose_metadata_or_graph_lie_are_model_errors_at_load(tmp_path, tiny_proto,
                                                                     change, reason):
    with pytest.raises(ModelError, match=reason):
        OnnxEmbedder(save_model(tmp_path, lying_model(tiny_proto, change)))


def test_a_model_failing_on_a_batch_or_giving_nan_is_a_model_error(tmp_path, tiny_proto):
    from onnx import numpy_helper

    def batch_of_one(model):
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2

    embedder = OnnxEmbedder(save_model(tmp_path, lying_model(tiny_proto, batch_of_one)))
    with pytest.raises(ModelError, match='failed on a batch'):
        embedder.embed(np.zeros((3, 112, 112, 3), np.uint8))

    def nan_weights(model):
        weights = numpy_helper.to_array(model.graph.initializer[0]).copy()
        weights[0, 0] = np.nan
        model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, 'weights'))

    embedder = OnnxEmbedder(save_model(tmp_path, lying_model(tiny_proto, nan_weights), 'n.onnx'))
    with pytest.raises(ModelError, match='not finite'):
        embedder.embed(np.full((2, 112, 112, 3), 9, np.uint8))


def damaged_gallery(tmp_path, statement, parameters=()):
    path = tmp_path / 'gallery.db'
    with Gallery.open(path, FINGERPRINT, 4, create=True) as gallery:
        gallery.add_templates('P-0001', np.eye(4)[:2], ['a', 'b'], [0.9, 0.9])
    with sqlite3.connect(str(path)) as db:
        db.execute(statement, parameters)
    return path


@pytest.mark.parametrize('statement, parameters', [
    ('UPDATE templates SET embedding = ?', (0.5,)),  # np.frombuffer(float): TypeError
    ('UPDATE templates SET embedding = ?', ('text',)),
    ('UPDATE templates SET embedding = ?', (b'\x00' * 3,)),  # not a multiple of 4: ValueError
    ('UPDATE templates SET patient_id = CAST(? AS BLOB) WHERE rowid = 1', (b'P-0001',)),
    ('UPDATE templates SET patient_id = CAST(? AS TEXT)', (b'\xff\xfe',)),  # not UTF-8
])
def test_gallery_cells_the_fuzzer_found_are_gallery_errors(tmp_path, statement, parameters):
    path = damaged_gallery(tmp_path, statement, parameters)
    with pytest.raises(GalleryError):
        with Gallery.open(path, FINGERPRINT, 4, create=False) as gallery:
            gallery.snapshot()
            gallery.list_patients()
            gallery.info()


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize('blob', [2 ** 31, 'text', b'short', 7.5])
def test_an_encrypted_gallery_cell_of_another_type_is_a_gallery_error(tmp_path, blob):
    # bytes(2 ** 31) allocated 2 GB before the decryption could fail.
    before = peak_rss_mb()
    key = galleries.gallery_key()
    path = tmp_path / 'keyed.db'
    with Gallery.open(path, FINGERPRINT, 4, create=True, key=key) as gallery:
        gallery.add_templates('P-0001', np.eye(4)[:1], ['a'], [0.9])
    with sqlite3.connect(str(path)) as db:
        db.execute('UPDATE templates SET embedding = ?', (blob,))
    with Gallery.open(path, FINGERPRINT, 4, create=False, key=key) as gallery:
        with pytest.raises(GalleryError, match='does not authenticate'):
            gallery.snapshot()
    assert peak_rss_mb() - before < 500


# -- Property tests (hypothesis, derandomised) ------------------------------------------------

def raw_image_strategies():
    dimension = st.one_of(st.integers(-3, 70000), st.sampled_from([2 ** 31, 2 ** 32, 2 ** 64]),
                          st.floats(), st.none(), st.text(max_size=3))
    return {'height': dimension, 'width': dimension, 'step': dimension,
            'encoding': st.one_of(st.sampled_from(images.RAW_ENCODINGS
                                                  + images.OTHER_ENCODINGS),
                                  st.text(max_size=8)),
            'big_endian': st.one_of(st.integers(-1, 300), st.none()),
            'data': st.one_of(st.binary(max_size=4096),
                              st.lists(st.integers(-1, 256), max_size=64))}


@property_test(raw_image_strategies)
def test_any_raw_image_decodes_or_is_refused(height, width, step, encoding, big_endian, data):
    msg = SimpleNamespace(height=height, width=width, step=step, encoding=encoding,
                          is_bigendian=big_endian, data=data)
    try:
        bgr = decode_image(msg)
    except FaceIdError:
        return
    images.check_picture(bgr, height, width)


@pytest.fixture(scope='module')
def compressed_seeds(tmp_path_factory):
    return [np.asarray(seed['data'], np.uint8).tobytes()
            for seed in images.build_compressed_seeds(tmp_path_factory.mktemp('seeds'))]


@property_test(lambda: {
    'choice': st.integers(0, 10 ** 6), 'cut': st.integers(0, 10 ** 6),
    'edits': st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=8),
    'insert': st.binary(max_size=32)})
def test_any_mutated_real_jpeg_or_png_decodes_or_is_refused(compressed_seeds, choice, cut,
                                                            edits, insert):
    payload = bytearray(compressed_seeds[choice % len(compressed_seeds)])
    for position, value in edits:
        payload[position % len(payload)] = value
    position = cut % (len(payload) + 1)
    payload[position:position] = insert
    try:
        bgr = decode_compressed_image(SimpleNamespace(format='jpeg', data=bytes(payload)))
    except FaceIdError:
        return
    images.check_picture(bgr)


def yaml_values():
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                       st.text(max_size=12), st.sampled_from(['P-0001', 'nobody', 'stranger']))
    keys = st.one_of(st.text(max_size=8), st.integers(), st.none(),
                     st.sampled_from(['start', 'end', 'subject', 'intervals', 'detector',
                                      'min_score', 'window']))
    return st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
        max_leaves=20)


@property_test(lambda: {'value': yaml_values()})
def test_any_yaml_document_is_a_labels_file_or_a_face_id_error(tmp_path_factory, value):
    import yaml
    path = tmp_path_factory.mktemp('labels') / 'labels.yaml'
    path.write_text(yaml.safe_dump({'intervals': value} if isinstance(value, list) else value))
    try:
        intervals = load_labels(path)
    except FaceIdError:
        return
    assert all(math.isfinite(item.start) and item.end > item.start for item in intervals)


@property_test(lambda: {'value': yaml_values(), 'stage': st.sampled_from(
    ['detector', 'matcher', 'tracker', 'gallery', 'quality', 'embedder', 'x'])})
def test_any_yaml_document_is_a_config_or_a_config_error(tmp_path_factory, value, stage):
    import yaml
    path = tmp_path_factory.mktemp('config') / 'config.yaml'
    path.write_text(yaml.safe_dump({stage: value} if isinstance(value, dict) else value))
    try:
        config = PipelineConfig.from_yaml(path)
    except ConfigError:
        return
    yaml_files.check_config(config)


METADATA_KEYS = ('embedding_size', 'input_size', 'layout', 'channel_order', 'mean', 'std',
                 'template', 'cosine_threshold', 'masked_cosine_threshold', 'mask_threshold',
                 'mask_output', 'name', 'format_version', 'extra')


def metadata_changes():
    values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
        lambda children: st.one_of(st.lists(children, max_size=6),
                                   st.dictionaries(st.text(max_size=6), children, max_size=4)),
        max_leaves=12)
    return {'changes': st.dictionaries(st.sampled_from(METADATA_KEYS), values, max_size=3)}


@property_test(metadata_changes)
def test_any_metadata_is_usable_or_a_model_error(changes):
    try:
        metadata = ModelMetadata.from_json(metadata_json(**changes), source='property')
    except ModelError:
        return
    models.use_metadata(metadata)


@pytest.fixture(scope='module')
def gallery_seed(tmp_path_factory):
    return galleries.build_gallery_seeds(tmp_path_factory.mktemp('gallery'))[0]['data']


def gallery_mutations():
    return {'cut': st.integers(0, 10 ** 6),
            'flips': st.lists(st.integers(0, 10 ** 7), max_size=6)}


@property_test(gallery_mutations, max_examples=150)
def test_any_truncated_or_flipped_gallery_opens_or_is_a_gallery_error(
        tmp_path_factory, gallery_seed, cut, flips):
    data = bytearray(gallery_seed[:cut % (len(gallery_seed) + 1)])
    for flip in flips:
        if data:
            data[(flip // 8) % len(data)] ^= 1 << (flip % 8)
    case = {'data': bytes(data), 'create': False, 'keyed': False, 'wal': None}
    try:
        galleries.run_gallery(case, tmp_path_factory.mktemp('open'))
    except GalleryError:
        return


# -- The runner ---------------------------------------------------------------------------


def test_a_short_campaign_over_every_target_finds_nothing(tmp_path):
    report = campaign.run_campaign(700, seed=0, out=tmp_path, jobs=2, model_inputs=20)
    assert set(report.counts) == {'raw_image', 'compressed_image', 'image_file', 'labels_yaml',
                                  'config_yaml', 'model_metadata', 'gallery_file', 'model_file'}
    assert report.inputs == 700 and report.counts['model_file'] == {
        outcome: count for outcome, count in report.counts['model_file'].items() if count}
    assert sum(report.counts['model_file'].values()) == 20
    assert report.failures == 0, report.table()
    for counts in report.counts.values():
        assert counts.get('refused', 0) > 0  # mutated inputs get refused...
    assert sum(counts.get('result', 0) for counts in report.counts.values()) > 50  # ...not all
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['inputs'] == 700 and saved['failures'] == 0


def test_the_runner_counts_each_outcome_saves_the_cases_and_replays_them(tmp_path):
    # Input 7 of every ten raises KeyError, 8 takes 300 MB, 9 sleeps past the deadline;
    # input 19 never ends (the parent kills its worker) and input 29 aborts its worker.
    report = campaign.run_campaign(40, seed=0, out=tmp_path, targets=['selftest'], jobs=2,
                                   deadline_s=1.0, memory_jump_mb=100, stall_s=8.0)
    assert report.counts['selftest'] == {'result': 24, 'refused': 4, 'unexpected': 4,
                                         'memory': 4, 'hang': 3, 'crash': 1}
    assert report.failures == 12
    found = {(index, outcome) for _, index, outcome, _ in report.findings}
    assert {(19, 'hang'), (29, 'crash'), (9, 'hang'), (8, 'memory'), (7, 'unexpected')} <= found
    assert main(['fuzz', '--replay', str(tmp_path / 'cases' / 'selftest-7.pickle')]) == 1
    assert campaign.replay(tmp_path / 'cases' / 'selftest-9.pickle')[0] == 'result'


def test_inputs_are_a_function_of_seed_target_and_index(tmp_path):
    seeds = campaign.Seeds(tmp_path)
    for name in ('raw_image', 'image_file', 'labels_yaml', 'model_metadata'):
        target = campaign.TARGETS[name]
        first, again, other = ([campaign.dump_case(campaign.make_case(
            target, seeds[name], seed, index, tmp_path)) for index in range(20)]
            for seed in (3, 3, 4))
        assert first == again and first != other


def test_the_plan_caps_model_files_and_shares_the_rest():
    counts = campaign.plan(1_000_000)
    assert sum(counts.values()) == 1_000_000 and counts['model_file'] == 3000
    assert counts['raw_image'] > counts['compressed_image'] > counts['gallery_file']
    assert counts['image_file'] > counts['gallery_file']
    assert campaign.plan(500, ['model_file']) == {'model_file': 500}
    with pytest.raises(FaceIdError, match='unknown fuzz target'):
        campaign.plan(10, ['nope'])


def test_face_id_fuzz_prints_the_table_and_exits_0(tmp_path, capsys):
    assert main(['fuzz', '--inputs', '120', '--model-inputs', '3', '--out', str(tmp_path),
                 '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'FaceIdError' in out and 'unexpected' in out and '120 inputs' in out
    assert Path(tmp_path / 'report.txt').read_text().startswith('target')


def test_image_files_are_a_target_and_every_mutation_ends_in_a_picture_or_a_refusal(tmp_path):
    # The files `face-id identify` and `enroll` read were no target, so the fuzzer missed
    # that they bypassed the guarded decoder (issue 20).
    report = campaign.run_campaign(300, seed=0, out=tmp_path, targets=['image_file'])
    counts = report.counts['image_file']
    assert report.failures == 0 and sum(counts.values()) == 300
    assert counts['result'] > 0 and counts['refused'] > 0
