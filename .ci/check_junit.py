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
Fail a CI run whose JUnit XML shows too few tests passed, or a required test module skipped.

``colcon test`` exits 0 when pytest collects nothing (the whole test folder dropped, say),
so the ROS CI reads the JUnit XML that colcon has pytest write
(``build/face_id_ros/pytest.xml``) and fails when fewer than ``--min-passed`` tests passed,
when any test failed, or when a module named by ``--require`` (the launch tests) has no test
in the file or has one that did not pass. Standard library only: it runs before anything is
installed.
"""

import argparse
from dataclasses import dataclass
import sys
import xml.etree.ElementTree as ElementTree

OUTCOMES = ('passed', 'failed', 'skipped')


@dataclass(frozen=True)
class CaseResult:
    """One ``<testcase>``: its dotted classname, name and outcome (passed, failed, skipped)."""

    classname: str
    name: str
    outcome: str

    def in_module(self, module):
        """Return True for a test of ``module`` (``test_launch_nursing``), by its classname."""
        return module in self.classname.split('.') or self.name == module


def read_testcases(path):
    """Return the CaseResults of a JUnit XML file (pytest's, with or without <testsuites>)."""
    cases = []
    for element in ElementTree.parse(path).getroot().iter('testcase'):
        children = {child.tag for child in element}
        if children & {'failure', 'error'}:
            outcome = 'failed'
        elif 'skipped' in children:
            outcome = 'skipped'
        else:
            outcome = 'passed'
        cases.append(CaseResult(element.get('classname', ''), element.get('name', ''), outcome))
    return cases


def problems(cases, min_passed, required):
    """Return what is wrong with these results, one sentence each; empty when all is well."""
    counts = {outcome: sum(case.outcome == outcome for case in cases) for outcome in OUTCOMES}
    found = []
    if counts['passed'] < min_passed:
        found.append(f'only {counts["passed"]} tests passed, at least {min_passed} expected')
    if counts['failed']:
        failed = [f'{case.classname}::{case.name}' for case in cases if case.outcome == 'failed']
        found.append(f'{counts["failed"]} tests failed or errored: ' + ', '.join(failed[:10]))
    for module in required:
        mine = [case for case in cases if case.in_module(module)]
        if not mine:
            found.append(f'{module}: no test in the results (not collected)')
        for case in mine:
            if case.outcome != 'passed':
                found.append(f'{module}: {case.name} {case.outcome}')
    return found


def main(argv=None):
    """Check the file; print the counts and any problem; return 0 when all is well, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('junit_xml', help='JUnit XML file, e.g. build/face_id_ros/pytest.xml')
    parser.add_argument('--min-passed', type=int, required=True,
                        help='fewest tests that must have passed')
    parser.add_argument('--require', nargs='+', default=[], metavar='MODULE',
                        help='test modules whose every test must have run and passed')
    args = parser.parse_args(argv)
    try:
        cases = read_testcases(args.junit_xml)
    except (OSError, ElementTree.ParseError) as error:
        print(f'{args.junit_xml}: cannot read the test results: {error}', file=sys.stderr)
        return 1
    counts = ', '.join(f'{sum(case.outcome == outcome for case in cases)} {outcome}'
                       for outcome in OUTCOMES)
    print(f'{args.junit_xml}: {len(cases)} tests: {counts} '
          f'(at least {args.min_passed} must pass)')
    found = problems(cases, args.min_passed, args.require)
    for problem in found:
        print(f'{args.junit_xml}: {problem}', file=sys.stderr)
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
