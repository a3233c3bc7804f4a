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

"""The test suite itself: it survives launch_testing's collection, and CI sees it run."""

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap

from conftest import PACKAGE_ROOT
import pytest


def ci_script(name):
    """Import one of the .ci/ scripts as a module."""
    spec = importlib.util.spec_from_file_location(name, PACKAGE_ROOT / '.ci' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env():
    """Return this environment without colcon's PYTEST_ADDOPTS (its --junit-xml is colcon's)."""
    return {key: value for key, value in os.environ.items() if key != 'PYTEST_ADDOPTS'}


def test_every_test_module_imports_without_torch_or_ros():
    # What launch_testing's pytest plugin does while collecting, in a ROS CI without torch:
    # import each test module, tolerating only a SyntaxError. A skip at import would drop
    # the whole folder, so every module must import cleanly.
    script = textwrap.dedent("""
        import importlib, pathlib, sys
        sys.modules['torch'] = None  # as in the ROS CI, which installs no torch
        sys.path.insert(0, 'test')
        for path in sorted(pathlib.Path('test').glob('test_*.py')):
            try:
                importlib.import_module(path.stem)
            except BaseException as error:  # pytest's Skipped is no Exception
                print(f'{path.name}: {type(error).__name__}: {error}')
    """)
    completed = subprocess.run([sys.executable, '-c', script], cwd=PACKAGE_ROOT,
                               capture_output=True, text=True, env=clean_env(), timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == []


SMALL_SUITE = {
    'test_units.py': """
        import pytest

        def test_one():
            pass

        def test_two():
            pass

        @pytest.mark.skipif(True, reason='no data')
        def test_needs_data():
            pass
    """,
    'test_launch_demo.py': """
        import pytest

        pytestmark = pytest.mark.skipif(True, reason='needs ROS 2')

        def test_launch():
            pass
    """,
    'test_launch_ok.py': """
        def test_launch_ok():
            pass
    """,
    'test_broken.py': """
        def test_fails():
            assert 1 == 2
    """,
}


@pytest.fixture(scope='module')
def junit_xml(tmp_path_factory):
    """Run pytest on a small suite as colcon does (--junit-prefix); return its JUnit XML."""
    folder = tmp_path_factory.mktemp('suite')
    for name, text in SMALL_SUITE.items():
        (folder / name).write_text(textwrap.dedent(text))
    (folder / 'pytest.ini').write_text('[pytest]\njunit_family = xunit2\n')
    xml = folder / 'pytest.xml'
    subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                    '-c', str(folder / 'pytest.ini'), '--rootdir', str(folder),
                    f'--junit-xml={xml}', '--junit-prefix=face_id_ros', str(folder)],
                   cwd=folder, capture_output=True, env=clean_env(), timeout=120)
    return xml


def test_the_junit_check_counts_what_pytest_ran(junit_xml):
    check = ci_script('check_junit')
    cases = check.read_testcases(junit_xml)
    outcomes = sorted((case.name, case.outcome) for case in cases)
    assert outcomes == [('test_fails', 'failed'), ('test_launch', 'skipped'),
                        ('test_launch_ok', 'passed'), ('test_needs_data', 'skipped'),
                        ('test_one', 'passed'), ('test_two', 'passed')]
    assert all(case.classname.startswith('face_id_ros.') for case in cases)
    units = [case for case in cases if case.in_module('test_units')]
    assert len(units) == 3


def test_the_junit_check_fails_on_too_few_passed_a_skipped_launch_test_or_a_failure(
        junit_xml, capsys):
    check = ci_script('check_junit')
    cases = [case for case in check.read_testcases(junit_xml) if case.name != 'test_fails']
    assert check.problems(cases, 3, ['test_launch_ok']) == []
    assert check.problems(cases, 4, []) == ['only 3 tests passed, at least 4 expected']
    assert check.problems(cases, 3, ['test_launch_ok', 'test_launch_demo']) == [
        'test_launch_demo: test_launch skipped']
    assert check.problems(cases, 3, ['test_units']) == ['test_units: test_needs_data skipped']
    assert check.problems(cases, 3, ['test_launch_enroll']) == [
        'test_launch_enroll: no test in the results (not collected)']
    assert check.main([str(junit_xml), '--min-passed', '3']) == 1  # test_fails failed
    captured = capsys.readouterr()
    assert '6 tests: 3 passed, 1 failed, 2 skipped (at least 3 must pass)' in captured.out
    assert '1 tests failed or errored: face_id_ros.test_broken::test_fails' in captured.err


def test_the_junit_check_fails_when_the_folder_was_dropped_or_pytest_never_ran(tmp_path):
    check = ci_script('check_junit')
    # What colcon test wrote when launch_testing's collection dropped the test folder.
    dropped = tmp_path / 'dropped.xml'
    dropped.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        'errors="0" failures="0" skipped="1" tests="1"><testcase classname="" '
        'name="face_id_ros.test" time="0.000"><skipped type="pytest.skip" '
        'message="could not import \'torch\'">test/test_training.py:30</skipped>'
        '</testcase></testsuite></testsuites>')
    assert check.main([str(dropped), '--min-passed', '250']) == 1
    # The placeholder colcon writes before pytest starts, left when pytest never wrote one.
    placeholder = tmp_path / 'placeholder.xml'
    placeholder.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="face_id_ros" tests="1" '
        'failures="0" time="0" errors="1" skipped="0">\n  <testcase classname="face_id_ros" '
        'name="pytest.missing_result" time="0">\n    <failure message="The test invocation '
        'failed without generating a result file."/>\n  </testcase>\n</testsuite>\n')
    assert check.problems(check.read_testcases(placeholder), 0, []) == [
        '1 tests failed or errored: face_id_ros::pytest.missing_result']
    assert check.main([str(tmp_path / 'absent.xml'), '--min-passed', '1']) == 1


def test_the_ros_ci_requires_the_launch_tests_that_exist(package_root):
    workflow = (package_root / '.github' / 'workflows' / 'ros.yml').read_text()
    launch_tests = sorted(path.stem for path in (package_root / 'test').glob('test_launch_*.py'))
    assert launch_tests == ['test_launch_enroll', 'test_launch_nursing',
                            'test_launch_rep155_identify', 'test_launch_rep155_publish']
    assert f'--require {" ".join(launch_tests)}' in workflow


def test_the_readme_test_command_is_what_ci_runs(package_root):
    readme = (package_root / 'README.md').read_text()
    assert ci_script('readme_block').readme_block(readme, 'test') == ['.ci/test']
    run = (package_root / '.ci' / 'run').read_text().splitlines()
    assert '.ci/test' in run
    for script in ('run', 'test'):
        subprocess.run(['bash', '-n', str(package_root / '.ci' / script)], check=True)


def test_the_ros_workspace_sequences_use_the_venv_and_differ_only_in_the_distribution(
        package_root):
    readme = (package_root / 'README.md').read_text()
    block = ci_script('readme_block').readme_block
    humble, jazzy = block(readme, 'ros-humble'), block(readme, 'ros-jazzy')
    assert [line.replace('humble', 'jazzy') for line in humble] == jazzy
    assert humble[0] == 'cd ~/ws && source /opt/ros/humble/setup.bash'
    assert 'python3 -m venv --system-site-packages venv && touch venv/COLCON_IGNORE' in humble
    assert humble[-2].startswith('venv/bin/python -m colcon test --packages-select face_id_ros')
    assert humble[-1] == 'venv/bin/python -m colcon test-result --verbose'
    for line in humble:
        # Neither the system's pip (PEP 668) nor a colcon running the system python.
        for command in ('colcon build', 'colcon test', 'pip install'):
            if command in line:
                assert line.startswith(f'venv/bin/python -m {command}'), line


def test_the_ros_ci_runs_the_readme_sequence_of_each_distribution(package_root):
    workflow = (package_root / '.github' / 'workflows' / 'ros.yml').read_text()
    assert 'distro: [humble, jazzy]' in workflow
    assert ('.ci/readme_block.py ws/src/face_id_ros/README.md \\\n'
            '            ros-${{ matrix.distro }} > readme-${{ matrix.distro }}.bash') in workflow
    assert 'bash -e -o pipefail -x readme-${{ matrix.distro }}.bash' in workflow
    assert '-m colcon' not in workflow  # no colcon command of its own: the README's only


def test_a_missing_or_open_readme_block_is_refused(tmp_path, capsys):
    readme_block = ci_script('readme_block')
    with pytest.raises(KeyError, match='no <!-- ci: ros-iron --> in the README'):
        readme_block.readme_block('# face_id_ros\n', 'ros-iron')
    with pytest.raises(KeyError, match='not followed by a fenced block'):
        readme_block.readme_block('<!-- ci: test -->\n\n```bash\n.ci/test\n```\n', 'test')
    with pytest.raises(KeyError, match='is not closed'):
        readme_block.readme_block('<!-- ci: test -->\n```bash\n.ci/test\n', 'test')
    path = tmp_path / 'README.md'
    path.write_text('<!-- ci: test -->\n```bash\n.ci/test -q\n```\n')
    assert readme_block.main([str(path), 'test']) == 0
    assert capsys.readouterr().out == '.ci/test -q\n'
    assert readme_block.main([str(path), 'ros-humble']) == 2


def ci_test_function(package_root, call, path_prefix=None):
    """Run one function of .ci/test (sourced, so nothing is set up) and return its output."""
    env = clean_env()
    if path_prefix:
        env['PATH'] = f'{path_prefix}{os.pathsep}{env["PATH"]}'
    completed = subprocess.run(['bash', '-c', f'source .ci/test && {call}'], cwd=package_root,
                               capture_output=True, text=True, env=env, timeout=60, check=True)
    return completed.stdout


def test_ci_test_runs_only_the_test_paths_it_is_given(package_root):
    # `.ci/test test/test_gate.py -q` ran the whole suite and that file twice (529 tests).
    assert ci_test_function(package_root, 'pytest_targets test/test_gate.py -q') == ''
    assert ci_test_function(
        package_root, 'pytest_targets -q test/test_gate.py::test_x -p no:cacheprovider') == ''
    assert ci_test_function(package_root, 'pytest_targets -q -k gate') == 'test/\n'
    assert ci_test_function(package_root, 'pytest_targets') == 'test/\n'


def test_ci_test_sets_up_again_when_the_apt_linters_change(package_root, tmp_path):
    # A venv set up before apt changed its linters kept a flake8 plugin twice; the stamp
    # now holds the linters' versions, so a change re-runs the set-up.
    fake = tmp_path / 'bin'
    fake.mkdir()
    dpkg_query = fake / 'dpkg-query'
    stamps = []
    for version in ('0.13.2-4', '0.13.3-1'):
        dpkg_query.write_text(f'#!/bin/sh\necho "python3-ament-flake8 {version}"\n')
        dpkg_query.chmod(0o755)
        stamps.append(ci_test_function(package_root, 'setup_stamp', fake))
    assert stamps[0] != stamps[1]
    assert stamps[1] == ci_test_function(package_root, 'setup_stamp', fake)


def test_the_launch_tests_whose_processes_end_by_design_keep_the_launch_alive(package_root):
    # On Humble, a launch whose processes all ended stops before the active tests ran.
    tree = ast.parse((package_root / 'test' / 'test_launch_enroll.py').read_text())
    [describe] = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                  and node.name == 'generate_test_description']
    names = [getattr(decorator, 'id', None) for decorator in describe.decorator_list]
    assert 'keep_alive' in names


def test_ci_test_finds_the_venv_flake8_plugins_apt_also_installed(package_root):
    # Seen from the venv's own interpreter, every plugin pip installed is "also installed":
    # the check finds all five, underscores in pip's names (flake8_import_order) included.
    venv_python = package_root / '.venv' / 'bin' / 'python'
    if not venv_python.is_file():
        pytest.skip('no .venv here (made by .ci/test)')
    found = ci_test_function(package_root, f'shadowed_flake8_plugins {venv_python} '
                                           f'{venv_python}').split()
    assert found == ['flake8-builtins', 'flake8-comprehensions', 'flake8-docstrings',
                     'flake8-import-order', 'flake8-quotes']
    # An interpreter that has none of them (here `false`, which has nothing) shadows nothing.
    assert ci_test_function(package_root,
                            f'shadowed_flake8_plugins {venv_python} false') == ''
