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

"""``face-id eval-pairs``, ``eval-openset``, ``calibrate-*``, ``bench``: numbers to reproduce."""

from face_id_ros.cli.options import add_common_options, load_config
from face_id_ros.core.errors import FaceIdError
from face_id_ros.evaluation import benchmarks


def add_commands(commands):
    """Register the evaluation and benchmark sub-commands."""
    parser = commands.add_parser('eval-pairs', help='LFW View 2 verification (10 folds)')
    parser.add_argument('--lfw', required=True, help='folder with pairs.txt and images/')
    parser.add_argument('--flip-sum', action='store_true', help='embed mirrored faces too')
    parser.add_argument('--out', default='eval_pairs', help='folder for the report and plots')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_eval_pairs)

    parser = commands.add_parser(
        'eval-openset', help='open-set identification check on LFW people (enrolled/strangers)')
    parser.add_argument('--lfw', required=True, help='folder with images/<person>/')
    parser.add_argument('--patients', type=int, default=20)
    parser.add_argument('--enrol-photos', type=int, default=3)
    parser.add_argument('--min-photos', type=int, default=6)
    parser.add_argument('--strangers', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='eval_openset', help='folder for the report')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_eval_openset)

    parser = commands.add_parser(
        'calibrate-landmarks',
        help='where the detector puts its landmarks on faces already aligned to the template')
    parser.add_argument('faces', help='folder of aligned face canvases (searched recursively)')
    parser.add_argument('--margin', type=int, default=8,
                        help='pixels between the canvas edge and the 112x112 ArcFace crop')
    parser.add_argument('--limit', type=int, default=1500, help='use every n-th photo, at most')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_calibrate_landmarks)

    parser = commands.add_parser(
        'calibrate-threshold',
        help='cosine threshold at a target false-accept rate, from pairs of different people')
    parser.add_argument('model', help='embedder ONNX')
    parser.add_argument('faces', help='aligned face canvases in one sub-folder per person')
    parser.add_argument('--count', type=int, default=4000, help='faces sampled, at most')
    parser.add_argument('--far', type=float, default=1e-5, help='target pair false-accept rate')
    parser.add_argument('--margin', type=int, default=8, help='canvas margin around the crop')
    parser.add_argument('--seed', type=int, default=0)
    parser.set_defaults(handler=run_calibrate_threshold)

    parser = commands.add_parser('bench', help='per-stage latency, frame rate and memory')
    parser.add_argument('--size', default='640x480', help='frame size WIDTHxHEIGHT')
    parser.add_argument('--faces', type=int, default=1, help='faces per frame')
    parser.add_argument('--face-width', type=int, default=300,
                        help='width in pixels of each pasted portrait (face ~40%% of it)')
    parser.add_argument('--encoding', default='bgr8', choices=('bgr8', 'jpeg'),
                        help='camera message encoding to decode')
    parser.add_argument('--frames', type=int, default=300)
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_bench)


def run_eval_pairs(args):
    """LFW View 2: threshold on 9 folds, score the 10th; cosine and Euclidean."""
    benchmarks.eval_pairs(load_config(args), args.lfw, args.out, args.flip_sum)
    return 0


def run_eval_openset(args):
    """Enrol some LFW people, then identify their other photos and strangers' photos."""
    benchmarks.eval_openset(load_config(args), args.lfw, args.out, args.patients,
                            args.enrol_photos, args.min_photos, args.strangers, args.seed)
    return 0


def run_calibrate_landmarks(args):
    """Print the median landmark positions, in ArcFace-112 pixels, over aligned faces."""
    benchmarks.calibrate_landmarks(args.faces, args.detector or 'blazeface',
                                   args.yunet_model or '', args.margin, args.limit)
    return 0


def run_calibrate_threshold(args):
    """Print the cosine threshold that accepts ``--far`` of pairs of different people."""
    benchmarks.calibrate_threshold(args.model, args.faces, args.count, args.far, args.margin,
                                   args.seed)
    return 0


def run_bench(args):
    """Time every stage on synthetic frames of the sample portrait; print median and p95."""
    try:
        size = tuple(int(side) for side in args.size.lower().split('x'))
    except ValueError:
        raise FaceIdError(f'--size {args.size!r} is not WIDTHxHEIGHT')
    benchmarks.bench(load_config(args), size, args.faces, args.face_width, args.encoding,
                     args.frames)
    return 0
