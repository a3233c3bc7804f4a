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

"""``face-id fuzz``: every input a stranger controls, mutated from real ones, counted."""

import sys

from face_id_ros.evaluation.fuzz import campaign


def add_commands(commands):
    """Register ``fuzz``."""
    names = ', '.join(name for name, target in campaign.TARGETS.items() if not target.hidden)
    parser = commands.add_parser(
        'fuzz', help='fuzz the image decoders and the file loaders: every input must end in '
        'a result or a FaceIdError (no other exception, hang, crash or memory blow-up)')
    parser.add_argument('--inputs', type=int, default=1_000_000,
                        help='inputs in all, shared among the targets (default 1,000,000)')
    parser.add_argument('--seed', type=int, default=0,
                        help='input i of a target is a function of (seed, target, i)')
    parser.add_argument('--out', default='.cache/fuzz',
                        help='folder for report.json, report.txt and cases/ (default %(default)s)')
    parser.add_argument('--targets', help=f'comma-separated targets (default all: {names})')
    parser.add_argument('--jobs', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument('--deadline', type=float, default=10.0,
                        help='seconds after which one input is a hang (default %(default)s)')
    parser.add_argument('--memory-mb', type=int, default=3072,
                        help='address space a worker may take beyond its start (RLIMIT_AS)')
    parser.add_argument('--memory-jump-mb', type=int, default=1024,
                        help='an input raising the peak RSS by more is a memory blow-up')
    parser.add_argument('--model-inputs', type=int,
                        help='inputs of model_file, a session each (default: 1%% of --inputs, '
                             'at most 3,000)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    parser.add_argument('--replay', metavar='CASE',
                        help='run one saved case (out/cases/*.pickle) here and print the outcome')
    parser.set_defaults(handler=run_fuzz)


def run_fuzz(args):
    """Run a campaign and print its table; exit 1 on any finding."""
    if args.replay:
        outcome, seconds, text = campaign.replay(args.replay)
        print(f'{args.replay}: {outcome} in {seconds:.3f} s')
        if text:
            print(text, end='')
        return 1 if outcome == 'unexpected' else 0
    targets = [name.strip() for name in args.targets.split(',')] if args.targets else None
    report = campaign.run_campaign(
        args.inputs, seed=args.seed, out=args.out, targets=targets, jobs=args.jobs,
        deadline_s=args.deadline, memory_mb=args.memory_mb,
        memory_jump_mb=args.memory_jump_mb, model_inputs=args.model_inputs,
        progress=not args.quiet)
    print(report.table())
    print(f'report: {args.out}/report.json')
    sys.stdout.flush()
    return 1 if report.failures else 0
