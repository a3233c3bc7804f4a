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
Coverage-guided fuzzing of the same targets with atheris (libFuzzer), where it installs.

``python -m face_id_ros.evaluation.fuzz_atheris TARGET CORPUS [libFuzzer options]`` fills an
empty CORPUS folder with the target's real seeds, instruments the package and PyYAML, and
lets libFuzzer mutate bytes guided by the Python coverage they reach; a FaceIdError ends an
input as expected, anything else stops the run with the input saved (``crash-*``), e.g.
``-max_total_time=600 -timeout=10 -rss_limit_mb=3000``. It complements ``face-id fuzz``
(structure-aware, counted, any Python): atheris wheels exist for some Python versions only,
and coverage of native code (OpenCV, onnxruntime, SQLite) is not seen.
"""

from pathlib import Path
import sys
import tempfile

import numpy as np


def _raw_image(data, atheris, images):
    provider = atheris.FuzzedDataProvider(data)
    encodings = images.RAW_ENCODINGS + images.OTHER_ENCODINGS
    return {'height': provider.ConsumeIntInRange(0, 70000),
            'width': provider.ConsumeIntInRange(0, 70000),
            'step': provider.ConsumeIntInRange(0, 1 << 20),
            'encoding': encodings[provider.ConsumeIntInRange(0, len(encodings) - 1)],
            'is_bigendian': provider.ConsumeIntInRange(0, 2),
            'data': np.frombuffer(provider.ConsumeBytes(1 << 16), np.uint8)}


ADAPTERS = {
    'raw_image': _raw_image,
    'compressed_image': lambda data, atheris, images: {'format': 'jpeg', 'data': data},
    'image_file': lambda data, atheris, images: data,
    'labels_yaml': lambda data, atheris, images: data,
    'config_yaml': lambda data, atheris, images: data,
    'model_metadata': lambda data, atheris, images: data,
    'gallery_file': lambda data, atheris, images: {
        'data': data, 'create': False, 'keyed': False, 'wal': None},
    'model_file': lambda data, atheris, images: data,
}


def seed_bytes(name, campaign, workdir):
    """Return the target's seeds as byte strings (raw images: none, atheris starts empty)."""
    seeds = campaign.TARGETS[name].build_seeds(workdir)
    if name == 'compressed_image':
        return [np.asarray(seed['data'], np.uint8).tobytes() for seed in seeds]
    if name == 'gallery_file':
        return [seed['data'] for seed in seeds]
    if name == 'model_file':
        return seeds['models']
    if name == 'raw_image':
        return []
    return list(seeds)


def main(argv=None):
    """Run libFuzzer on one target: ``TARGET CORPUS [libFuzzer options]``."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 3 or argv[1] not in ADAPTERS:
        print(f'usage: {argv[0]} TARGET CORPUS [libFuzzer options]; TARGET: '
              f'{", ".join(ADAPTERS)}', file=sys.stderr)
        return 2
    import atheris
    name, corpus = argv.pop(1), Path(argv[1])
    with atheris.instrument_imports(include=['face_id_ros', 'yaml', 'json']):
        # The targets import these lazily; imported here, they are instrumented.
        import face_id_ros.core.embedding  # noqa: F401
        import face_id_ros.core.gallery  # noqa: F401
        import face_id_ros.core.image_codec  # noqa: F401
        from face_id_ros.core.errors import FaceIdError
        from face_id_ros.evaluation.fuzz import campaign, images
        import face_id_ros.evaluation.labels  # noqa: F401
    workdir = tempfile.mkdtemp(prefix='face_id_atheris_')
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for index, data in enumerate(seed_bytes(name, campaign, workdir)):
            (corpus / f'seed-{index}').write_bytes(data)
    target, adapter = campaign.TARGETS[name], ADAPTERS[name]

    def one_input(data):
        try:
            target.execute(adapter(data, atheris, images), workdir)
        except FaceIdError:
            pass

    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == '__main__':
    sys.exit(main())
