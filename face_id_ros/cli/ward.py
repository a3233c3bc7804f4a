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

"""``face-id make-ward-bag``, ``eval-bag`` and ``ward-benchmark``: ward rounds as rosbag2."""

import argparse
import contextlib
from pathlib import Path

from face_id_ros.cli.options import add_common_options, load_config, open_pipeline, read_config
from face_id_ros.core.image_files import identity_folders
from face_id_ros.evaluation import bag_eval, ward_benchmark, wardbag
from face_id_ros.evaluation.labels import save_labels


def add_commands(commands):
    """Register ``make-ward-bag``, ``eval-bag`` and ``ward-benchmark``."""
    parser = commands.add_parser(
        'make-ward-bag', help='synthesise a labelled ward-round rosbag2 from face photos')
    parser.add_argument('photos', help='folder of <patient id>/<photos> (not the enrolment '
                        'photos)')
    parser.add_argument('--out', required=True, help='bag folder to create')
    parser.add_argument('--labels', help='labels YAML to write (default: <out>.labels.yaml)')
    parser.add_argument('--strangers', help='folder of <name>/<photos> of people not enrolled')
    parser.add_argument('--visits-per-patient', type=int, default=1)
    parser.add_argument('--config', help='YAML config whose gallery.id_pattern the patient '
                        'folders must match (default: the shipped config/face_id.yaml); with '
                        '--rep155 its detector and tracker make the faces')
    parser.add_argument('--rep155', action='store_true',
                        help='also write the REP-155 face topics (/humans/faces/...) our '
                        'detector and tracker publish for each frame')
    add_recipe_arguments(parser)
    parser.set_defaults(handler=run_make_ward_bag)

    parser = commands.add_parser(
        'eval-bag', help='replay a rosbag2 through the pipeline and score it against labels')
    parser.add_argument('bag', help='rosbag2 folder (sqlite3 or mcap) or storage file')
    parser.add_argument('--labels', required=True,
                        help='labels YAML (see face_id_ros.evaluation.labels)')
    parser.add_argument('--topic', help='camera topic (default: the only image topic)')
    parser.add_argument('--pace', choices=bag_eval.PACES, default='fast',
                        help="fast: every frame; recorded: the node's newest-frame policy")
    parser.add_argument('--workers', type=int, default=1,
                        help='fast pace: describe frames in this many processes')
    parser.add_argument('--rep155', choices=('cropped', 'aligned'),
                        help="replay the bag's REP-155 face topics through the REP-155 "
                        'identifier instead of the camera, embedding the cropped faces '
                        '(re-aligned) or the aligned ones')
    parser.add_argument('--out', default='eval_bag', help='folder for report, plots and bag')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    add_common_options(parser)
    parser.set_defaults(handler=run_eval_bag)

    parser = commands.add_parser(
        'ward-benchmark', help='enrol LFW people, synthesise a ward round, evaluate both paces')
    parser.add_argument('--lfw', required=True, help='folder with images/<person>/')
    parser.add_argument('--recipe', help='benchmark recipe YAML (default: the shipped '
                        'config/ward_benchmark.yaml)')
    parser.add_argument('--patients', type=int)
    parser.add_argument('--enrol-photos', type=int)
    parser.add_argument('--visits-per-patient', type=int)
    parser.add_argument('--strangers', type=int)
    parser.add_argument('--workers', type=int, help='fast pace: describing processes')
    parser.add_argument('--enrol-masked-templates', action=argparse.BooleanOptionalAction,
                        help='also enrol each patient with synthetic masks painted on the '
                        'enrolment photos (default: as the recipe says; auto: when visits are '
                        'masked)')
    parser.add_argument('--rep155', action='store_true',
                        help='also write REP-155 face topics in the round and score the '
                        'REP-155 identifier on them')
    parser.add_argument('--out', default='ward_benchmark', help='folder for every output')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    add_recipe_arguments(parser)
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_ward_benchmark)


def add_recipe_arguments(parser):
    """Add the ``make-ward-bag`` arguments (also the recipe overrides of ward-benchmark)."""
    parser.add_argument('--fps', type=float, help='frame rate (default 15)')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), help='default sqlite3')
    parser.add_argument('--encoding', choices=('bgr8', 'jpeg'),
                        help='bgr8: sensor_msgs/Image; jpeg: CompressedImage (default)')
    parser.add_argument('--topic', help='camera topic (default /camera/image_raw, '
                        '+/compressed for jpeg)')
    parser.add_argument('--masked-share', type=float, help='share of the patient visits, and '
                        'of the stranger visits, that wear a synthetic face mask (default 0)')
    parser.add_argument('--seed', type=int, help='random seed (default 0)')


def recipe_from_args(args, mapping=None):
    """Return the WardRecipe of a recipe mapping with the command-line values applied."""
    values = dict(mapping or {})
    for name in ('fps', 'storage', 'encoding', 'topic', 'masked_share', 'seed'):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    return wardbag.WardRecipe.from_dict(values)


def run_make_ward_bag(args):
    """Write a synthetic ward round of the photo folders as a bag, and its labels."""
    patients = identity_folders(args.photos)
    wardbag.check_patient_folders(patients, read_config(args.config).gallery.id_pattern,
                                  args.photos)
    strangers = identity_folders(args.strangers) if args.strangers else {}
    recipe = recipe_from_args(args)
    visits = wardbag.plan_visits(patients, strangers, args.visits_per_patient, recipe.seed,
                                 recipe.masked_share)
    from face_id_ros.evaluation.rep155_bag import Rep155Recorder
    with Rep155Recorder(read_config(args.config), recipe.seed) if args.rep155 \
            else contextlib.nullcontext() as recorder:
        intervals = wardbag.make_ward_bag(args.out, visits, recipe, frame_hook=recorder)
    labels = args.labels or f'{Path(args.out)}.labels.yaml'
    save_labels(labels, intervals)
    print(f'wrote {args.out}: {len(visits)} visits ({len(strangers)} by strangers, '
          f'{wardbag.masks_worn(visits, intervals)}), {recipe.storage}, {recipe.msgtype} on '
          f'{recipe.camera_topic} at {recipe.fps:g} frames/s'
          + (', REP-155 face topics' if args.rep155 else '') + f'; labels {labels}')
    return 0


def run_eval_bag(args):
    """Replay a bag, print the scores, write the report, plots and ``/patient_id`` bag."""
    pipeline, gallery = open_pipeline(args)
    if args.rep155:
        from face_id_ros.evaluation.rep155_bag import eval_rep155_bag
        eval_rep155_bag(pipeline, args.bag, args.labels, args.out, args.rep155,
                        not args.quiet)
        return 0
    bag_eval.eval_bag(pipeline, gallery.patient_ids(), args.bag, args.labels, args.out,
                      args.topic, args.pace, args.workers, not args.quiet)
    return 0


def run_ward_benchmark(args):
    """Enrol, synthesise, replay at both paces; print and save the numbers."""
    recipe = ward_benchmark.load_recipe(args.recipe)
    settings = {name: getattr(args, name) if getattr(args, name) is not None else recipe[name]
                for name in ward_benchmark.SETTINGS}
    bag_recipe = recipe_from_args(args, recipe.get('bag'))
    settings['enrol_masked_templates'] = (recipe['enrol_masked_templates']
                                          if args.enrol_masked_templates is None
                                          else args.enrol_masked_templates)
    ward_benchmark.run_ward_benchmark(load_config(args), args.lfw, settings, bag_recipe,
                                      args.out, not args.quiet, args.rep155)
    return 0
