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

"""The options every pipeline command shares, and the config and pipeline they select."""

from face_id_ros.core.config import PipelineConfig
from face_id_ros.core.resources import package_share_file


def add_common_options(parser, gallery=True):
    """Add the options every pipeline command shares: config file, model, detector, gallery."""
    parser.add_argument('--config', help='YAML config (default: the shipped config/face_id.yaml)')
    parser.add_argument('--model', help='embedder ONNX (default: the shipped model)')
    parser.add_argument('--detector', choices=('blazeface', 'yunet'), help='detector backend')
    parser.add_argument('--yunet-model', help='YuNet ONNX path (with --detector yunet)')
    parser.add_argument('--threads', type=int, help='onnxruntime threads')
    if gallery:
        parser.add_argument('--gallery', help='SQLite gallery file (default: from the config)')
        parser.add_argument('--gallery-url',
                            help="the hospital's PostgreSQL gallery, postgresql://... (default: "
                                 'gallery.url of the config; the password comes from PGPASSFILE)')
        parser.add_argument('--operator', help='who the audit trail names for writes to a '
                                               'server gallery (default: the login name)')


def read_config(path=None):
    """Read a pipeline config file (default: the shipped config/face_id.yaml)."""
    return PipelineConfig.from_yaml(path or package_share_file('config/face_id.yaml'))


def load_config(args):
    """Read the config file and apply the command-line overrides."""
    config = read_config(args.config)
    overrides = {
        'detector': {'backend': args.detector, 'yunet_model': args.yunet_model},
        'embedder': {'model': args.model, 'threads': args.threads},
        'gallery': {'path': getattr(args, 'gallery', None),
                    'url': getattr(args, 'gallery_url', None),
                    'operator': getattr(args, 'operator', None)},
    }
    overrides = {stage: {key: value for key, value in values.items() if value is not None}
                 for stage, values in overrides.items()}
    return config.replace(**overrides)


def open_pipeline(args, create_gallery=False):
    """Build the pipeline and open its gallery (refused if made by another model)."""
    from face_id_ros.core.galleries import open_gallery
    from face_id_ros.core.pipeline import Pipeline
    config = load_config(args)
    pipeline = Pipeline(config)
    gallery = open_gallery(config.gallery, pipeline.embedder.fingerprint,
                           pipeline.embedder.embedding_size, create=create_gallery)
    pipeline.set_gallery(gallery.snapshot())
    return pipeline, gallery
