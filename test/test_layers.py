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

"""The package's folders are its layers: every import points down, and no imports go round."""

import ast
from pathlib import Path
import subprocess
import sys
import textwrap

from conftest import PACKAGE_ROOT
import pytest

PACKAGE = 'face_id_ros'
# Each layer (a folder of face_id_ros) and the layers it may import. Nothing imports cli.
LAYERS = {
    'core': set(),
    'nodes': {'core'},
    'evaluation': {'core', 'nodes'},  # nodes: the ROS-free gate rules (swap benchmark)
    'training': {'core', 'evaluation'},  # evaluation for its LFW scoring
    'cli': {'core', 'evaluation'},
}
# Modules that need ROS to import; every other module of nodes/ must import without it.
ROS_NODE_MODULES = ('enroll_node', 'face_id_node', 'medication_gate', 'rep155_identifier_node',
                    'ros_parameters')


def package_modules(root):
    """Map every module of the package under ``root`` to its source file."""
    modules = {}
    for path in sorted(Path(root, PACKAGE).rglob('*.py')):
        parts = path.relative_to(root).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        modules['.'.join(parts)] = path
    return modules


def imported_modules(module, path, modules):
    """Return the package's modules that ``module`` imports, at module or function level."""
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition('.')[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root):
    """Return {module: the package's modules it imports} for the package under ``root``."""
    modules = package_modules(root)
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def layer_of(module):
    """Return the layer (folder) a module is in; None for the package itself."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph, layers):
    """List 'importer -> imported' for every import that leaves a layer other than downwards."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            source, destination = layer_of(module), layer_of(target)
            if source != destination and destination not in layers.get(source, ()):
                found.append(f'{module} -> {target}')
    return found


def import_circles(graph):
    """Return the sets of modules that import each other round (Tarjan's components, > 1)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(frozenset(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


@pytest.fixture(scope='module')
def graph():
    """Return the import graph of the package in this checkout."""
    return import_graph(PACKAGE_ROOT)


def test_every_module_lives_in_a_layer_folder(graph):
    loose = sorted(module for module in graph
                   if module != PACKAGE and layer_of(module) not in LAYERS)
    assert loose == [], f'modules outside the layer folders {sorted(LAYERS)}: {loose}'


def test_every_import_points_down(graph):
    assert upward_imports(graph, LAYERS) == []


def test_outside_nodes_only_the_ros_free_node_helpers_are_imported(graph):
    ros_modules = {f'{PACKAGE}.nodes.{name}' for name in ROS_NODE_MODULES}
    assert sorted(f'{module} -> {target}' for module, targets in graph.items()
                  if layer_of(module) != 'nodes' for target in targets
                  if target in ros_modules) == []
    assert f'{PACKAGE}.nodes.gate' in graph[f'{PACKAGE}.evaluation.swap_benchmark']


def test_no_modules_import_each_other_round(graph):
    assert [sorted(circle) for circle in import_circles(graph)] == []


def test_the_scanner_sees_every_form_of_import(graph):
    assert 'face_id_ros.cli.runtime' in graph['face_id_ros.cli.parser']  # from package import
    assert 'face_id_ros.evaluation.metrics' in graph['face_id_ros.evaluation.benchmarks']
    assert 'face_id_ros.core.quality' in graph['face_id_ros.cli.runtime']  # in a function


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    sources = {
        '__init__.py': '',
        'core/__init__.py': '',
        'core/a.py': 'def f():\n    from face_id_ros.cli import tool\n',
        'core/b.py': 'from . import c\n',
        'core/c.py': 'import face_id_ros.core.b\n',
        'cli/__init__.py': '',
        'cli/tool.py': 'from face_id_ros.core import a\n',
    }
    for name, text in sources.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path)
    assert upward_imports(graph, LAYERS) == ['face_id_ros.core.a -> face_id_ros.cli.tool']
    assert sorted(map(sorted, import_circles(graph))) == [
        ['face_id_ros.cli.tool', 'face_id_ros.core.a'],
        ['face_id_ros.core.b', 'face_id_ros.core.c']]


@pytest.mark.parametrize('layer', ['core', 'evaluation'])
def test_only_the_command_line_parses_arguments(layer):
    for path in sorted(Path(PACKAGE_ROOT, PACKAGE, layer).glob('*.py')):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert 'argparse' not in imported, path.name


def test_the_nodes_package_and_its_helpers_import_without_ros():
    helpers = sorted(path.stem for path in Path(PACKAGE_ROOT, PACKAGE, 'nodes').glob('*.py')
                     if path.stem not in ROS_NODE_MODULES + ('__init__',))
    assert {'enrolment_session', 'gate', 'node_params', 'node_status'} <= set(helpers)
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs', 'vision_msgs'):
            sys.modules[name] = None  # any import of them fails
        for module in ['face_id_ros.nodes'] + ['face_id_ros.nodes.' + name for name in {helpers}]:
            importlib.import_module(module)
    """)
    completed = subprocess.run([sys.executable, '-c', script], cwd=PACKAGE_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
