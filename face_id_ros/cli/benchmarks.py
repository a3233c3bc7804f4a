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
``face-id eval-pairs``, ``eval-openset``, ``calibrate-*``, ``bench``, ``soak``, ``gallery-*``.

Each prints numbers.
"""

from face_id_ros.cli.options import add_common_options, load_config
from face_id_ros.core.errors import FaceIdError
from face_id_ros.evaluation import benchmarks


def add_commands(commands):
    """Register the evaluation and benchmark sub-commands."""
    parser = commands.add_parser('eval-pairs', help='LFW View 2 verification (10 folds)')
    parser.add_argument('--lfw', required=True, help='folder with pairs.txt and images/')
    parser.add_argument('--flip-sum', action='store_true', help='embed mirrored faces too')
    parser.add_argument('--masked', action='store_true',
                        help='paint a synthetic mask on the second photo of every pair')
    parser.add_argument('--rep155-cropped', action='store_true',
                        help="embed each pair's second photo from its REP-155 cropped image "
                        '(128x128 of the box), re-aligned with the landmarks, as the REP-155 '
                        'identifier does; also scores pairs with both photos so')
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
        'swap-benchmark', help='a confirmed patient, then a stranger in the same place: is '
                               'the stranger ever named (pipeline, /patient_id, gate)?')
    parser.add_argument('--lfw', required=True, help='folder with images/<person>/')
    parser.add_argument('--patients', type=int, default=5)
    parser.add_argument('--enrol-photos', type=int, default=3)
    parser.add_argument('--strangers', type=int, default=400)
    parser.add_argument('--patient-frames', type=int, default=3,
                        help="frames of the patient's enrolment photo before the swap")
    parser.add_argument('--stranger-frames', type=int, default=3)
    parser.add_argument('--fps', type=float, default=15.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='swap_benchmark', help='folder for the report')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_swap_benchmark)

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
        help='cosine thresholds (bare and masked templates) at a target false-accept rate, '
        'from pairs of different people')
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
    parser.add_argument('--photos', help='identity folders (e.g. LFW images/): tile one photo '
                                         'of each of --faces people instead of the portrait')
    parser.add_argument('--enrol', action='store_true',
                        help='enrol every person shown, so their tracks become confirmed')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_bench)

    parser = commands.add_parser(
        'soak', help='hours of paced frames with 0-N faces and gallery reloads: memory, '
                     'latency p50/p99, CSV and plot')
    parser.add_argument('--mode', default='pipeline', choices=('pipeline', 'node'),
                        help="pipeline: Pipeline.process; node: the node's worker path "
                             '(newest-frame slot, decode, pipeline, /patient_id message)')
    parser.add_argument('--minutes', type=float, default=60.0)
    parser.add_argument('--fps', type=float, default=30.0, help='camera frame rate')
    parser.add_argument('--max-faces', type=int, default=5,
                        help='scenes cycle through 0, 1, ... this many faces')
    parser.add_argument('--size', default='640x480', help='frame size WIDTHxHEIGHT')
    parser.add_argument('--tile-side', type=int, default=200,
                        help='pixels of each face tile (the face is ~55%% of it)')
    parser.add_argument('--photos', help='identity folders (e.g. LFW images/) to take one '
                                         'photo per person from; default: the sample portrait')
    parser.add_argument('--people', type=int, default=8,
                        help='people taken from --photos (one of them is the visitor)')
    parser.add_argument('--reload-every-s', type=float, default=10.0,
                        help='seconds between gallery writes (each asks for a reload)')
    parser.add_argument('--warmup-minutes', type=float, default=1.0,
                        help='memory growth is measured from the end of the warm-up')
    parser.add_argument('--out', default='.cache/soak', help='folder for CSVs, plot, summary')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_soak)

    parser = commands.add_parser(
        'gallery-crash', help='SIGKILL a gallery writer at random moments and check the file '
                              'after each kill; then enrol from two processes at once')
    parser.add_argument('--kills', type=int, default=500)
    parser.add_argument('--rounds', type=int, default=20,
                        help='rounds of two processes enrolling at the same moment')
    parser.add_argument('--max-delay-ms', type=float, default=250.0,
                        help='a kill comes at a uniform random delay up to this after the '
                             "writer's first write began")
    parser.add_argument('--encryption', choices=('required', 'off'), default='required')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='.cache/gallery_crash',
                        help='folder for the two galleries (made afresh) and summary.json')
    parser.set_defaults(handler=run_gallery_crash)

    parser = commands.add_parser(
        'gallery-sync-bench',
        help='robots following a PostgreSQL gallery while desks enrol and erase, through a '
             'server restart and robot kills (a throw-away server on loopback); then a '
             "10,000-patient gallery's sync, snapshot load and match time")
    parser.add_argument('--robots', type=int, default=20,
                        help='robot processes (0: only the load measurement)')
    parser.add_argument('--desks', type=int, default=2, help='desk processes per phase')
    parser.add_argument('--patients', type=int, default=1000,
                        help='patients enrolled in the steady phase (about half erased)')
    parser.add_argument('--fault-patients', type=int, default=300,
                        help='patients enrolled while the server restarts and robots die')
    parser.add_argument('--robot-kills', type=int, default=3)
    parser.add_argument('--poll-s', type=float, default=1.0,
                        help="robots' poll period when no notification comes")
    parser.add_argument('--desk-interval-ms', type=float, default=20.0,
                        help='pause after each enrolment at a desk')
    parser.add_argument('--load-patients', type=int, default=10000,
                        help='patients of the load measurement (0: skip it)')
    parser.add_argument('--load-templates', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='.cache/gallery_sync_bench',
                        help="folder for the robots' caches and summary.json")
    parser.set_defaults(handler=run_gallery_sync_bench)


def run_eval_pairs(args):
    """LFW View 2: threshold on 9 folds, score the 10th; cosine and Euclidean."""
    benchmarks.eval_pairs(load_config(args), args.lfw, args.out, args.flip_sum, args.masked,
                          args.rep155_cropped)
    return 0


def run_eval_openset(args):
    """Enrol some LFW people, then identify their other photos and strangers' photos."""
    benchmarks.eval_openset(load_config(args), args.lfw, args.out, args.patients,
                            args.enrol_photos, args.min_photos, args.strangers, args.seed)
    return 0


def run_swap_benchmark(args):
    """Swap confirmed patients for strangers in the same place; exit 1 if one is named."""
    from face_id_ros.evaluation.swap_benchmark import swap_benchmark
    report = swap_benchmark(load_config(args), args.lfw, args.out, args.patients,
                            args.enrol_photos, args.strangers, args.patient_frames,
                            args.stranger_frames, args.fps, args.seed)
    return 1 if report['failures'] else 0


def run_calibrate_landmarks(args):
    """Print the median landmark positions, in ArcFace-112 pixels, over aligned faces."""
    benchmarks.calibrate_landmarks(args.faces, args.detector or 'blazeface',
                                   args.yunet_model or '', args.margin, args.limit)
    return 0


def run_calibrate_threshold(args):
    """Print the cosine thresholds that accept ``--far`` of pairs of different people."""
    benchmarks.calibrate_threshold(args.model, args.faces, args.count, args.far, args.margin,
                                   args.seed)
    return 0


def parse_size(text):
    """Return ``WIDTHxHEIGHT`` as (width, height); raise FaceIdError otherwise."""
    try:
        width, height = (int(side) for side in text.lower().split('x'))
    except ValueError:
        raise FaceIdError(f'--size {text!r} is not WIDTHxHEIGHT')
    return width, height


def run_soak(args):
    """Soak the pipeline or the node's worker path; print the memory and latency checks."""
    from face_id_ros.evaluation.soak import people_photos, soak, SoakSettings
    settings = SoakSettings(args.minutes, args.fps, args.max_faces, parse_size(args.size),
                            args.tile_side, args.reload_every_s, args.warmup_minutes,
                            args.mode)
    photos = people_photos(args.photos, args.people) if args.photos else None
    summary = soak(load_config(args), settings, args.out, photos)
    met = summary.get('memory_goal_met', True) and summary.get('p99_goal_met', True)
    return 0 if met else 1


def run_bench(args):
    """Time every stage on synthetic frames of real faces; print median and p95."""
    from face_id_ros.evaluation.soak import people_photos
    photos = people_photos(args.photos, args.faces) if args.photos else None
    benchmarks.bench(load_config(args), parse_size(args.size), args.faces, args.face_width,
                     args.encoding, args.frames, photos, args.enrol)
    return 0


def run_gallery_sync_bench(args):
    """Run the fleet and load measurements; print the summary lines; exit 1 on a problem."""
    import json
    from pathlib import Path
    from face_id_ros.evaluation.gallery_sync_bench import (
        load_bench_process, load_summary_line, summary_line, sync_bench)
    if min(args.desks, args.patients, args.load_templates) < 1 or args.robots < 0:
        raise FaceIdError('--desks, --patients and --load-templates must be positive, '
                          '--robots not negative')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    if args.robots:
        summary = sync_bench(str(out), args.robots, args.desks, args.patients,
                             args.fault_patients, args.robot_kills, args.seed, args.poll_s,
                             args.desk_interval_ms / 1000.0)
    if args.load_patients:
        summary['load'] = load_bench_process(str(out), args.load_patients,
                                             args.load_templates)
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if args.robots:
        print(summary_line(summary))
    if args.load_patients:
        print(load_summary_line(summary['load']))
    failed = args.robots and (
        summary['lost'] or summary['duplicated'] or summary['resurrected']
        or summary['corrupt_caches'] or summary['snapshots_not_a_server_revision']
        or summary['caches_at_final_revision'] != summary['robots'])
    return 1 if failed else 0


def run_gallery_crash(args):
    """Run the crash and concurrency checks; print the summary; exit 1 on any problem."""
    import json
    from pathlib import Path
    from face_id_ros.evaluation.gallery_crash import concurrent_enrolment, crash_test, verdict
    if args.kills < 1 or args.rounds < 0 or args.max_delay_ms < 0:
        raise FaceIdError('--kills must be positive, --rounds and --max-delay-ms not negative')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob('crash.db*'), *out.glob('concurrent.db*')]:
        stale.unlink()
    encrypted = args.encryption == 'required'
    summary = {'crash': crash_test(out / 'crash.db', args.kills, args.seed,
                                   args.max_delay_ms / 1000, encrypted),
               'concurrent': concurrent_enrolment(out / 'concurrent.db', args.rounds,
                                                  encrypted)}
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    passed, line = verdict(summary)
    print(line)
    return 0 if passed else 1
