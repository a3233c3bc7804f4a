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

"""Fuzz targets of YAML files: labels and pipeline config."""

import datetime
import math
from pathlib import Path
import re

from face_id_ros.evaluation.fuzz.mutation import mutate_bytes, write_case_file
import yaml


YAML_SCALARS = ('.inf', '-.inf', '.nan', '.NaN', '1e400', '-1e400', '-1', '0', '-0', '1_000',
                '0x10', '0o17', '0b101', '1:30', '190:20:30', '2001-12-14',
                '2001-12-14t21:59:43.10-05:00', 'true', 'no', 'off', 'y', 'null', '~', '""',
                "'x'", '9' * 400, '-' + '9' * 30, '3.5', '1e-400', '!!binary aGVsbG8=',
                '!!set {a, b}', '!!python/object:os.system', '!!float 1', '!!int x', '&x a',
                '*x', '*undefined', '[]', '{}', '[1, 2]', '{a: 1}', '|\n  x', 'P-0001',
                'P-' + '9' * 100, 'stranger', 'nobody', 'P-00x1', 'yunet', 'blazeface',
                'full', '<<', '!!omap [a: 1]', '!!pairs [a: 1]', '? a', '- x', '%TAG',
                '"\\ud800"', '"\\x00"', "'\u202e'", '!!timestamp 2001-12-14', '10.0',
                '1e3', '0.5', '2', '100', '4097', '65', '-0.0', '!!str 1', 'x' * 10000)
YAML_TEXT = list(':-[]{}&*!|>\'"%@`#,? \n\t\r\\') + ['\x00', '\u2028', '\ufeff', '\x85']
YAML_VALUES = (0, 1, -1, 0.5, 2, 100, 1e400, -1e400, float('nan'), 10 ** 400, -(10 ** 30), True,
               False, None, '', 'x', 'P-0001', 'nobody', 'stranger', 'short', 'yunet', [], {},
               [1, 2], {'a': 1}, datetime.date(2001, 12, 14), b'\x00\xff', 'x' * 5000, 3.0,
               2 ** 63, '1e400', ['a', {'b': None}])


def build_labels_seeds(workdir):
    """Real labels files, as ``save_labels`` writes them and as a person writes them."""
    from face_id_ros.evaluation.labels import Interval, save_labels
    rounds = [
        [Interval(0.0, 1.5, 'nobody'), Interval(1.5, 5.2, 'P-0042'),
         Interval(5.2, 6.8, 'nobody'), Interval(6.8, 10.1, 'stranger')],
        [Interval(0.0, 0.25, 'P-0001')],
        [Interval(float(index), index + 0.999, ('P-0001', 'P-0002', 'stranger',
                                                'nobody')[index % 4]) for index in range(12)],
    ]
    seeds = []
    for index, intervals in enumerate(rounds):
        path = Path(workdir) / f'seed_labels_{index}.yaml'
        save_labels(path, intervals)
        seeds.append(path.read_bytes())
    seeds.append(b'# hand-written\nintervals:\n  - start: 0\n    end: 2.5\n    subject: P-0042\n'
                 b'  - {start: 2.5, end: 4, subject: "nobody"}\n')
    return seeds


def build_config_seeds(workdir):
    """Return the shipped pipeline configs, and one that names every key with its default."""
    from dataclasses import asdict
    from face_id_ros.core.config import PipelineConfig
    from face_id_ros.core.resources import package_share_file
    seeds = [Path(package_share_file(f'config/{name}')).read_bytes()
             for name in ('face_id.yaml', 'nursing.yaml')]
    seeds.append(yaml.safe_dump(asdict(PipelineConfig())).encode())
    return seeds


def random_value(rng, depth=0):
    """Return a random YAML-representable value (nested up to a few levels)."""
    if depth < 3 and rng.random() < 0.2:
        if rng.random() < 0.5:
            return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(YAML_VALUES)


def random_key(rng):
    """Return a mapping key of a type YAML allows: text most often, sometimes not."""
    return rng.choice(('start', 'end', 'subject', 'intervals', 'detector', 'min_score',
                       'threshold', 'window', 'x', '', 1, 2.5, None, True, False,
                       datetime.date(2020, 1, 1), (1, 2), 'P-0001'))


def mutate_structure(rng, value, depth=0):
    """Return ``value`` with one random change somewhere inside."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        value = dict(value)
        operation = rng.randrange(6)
        if operation == 0:
            del value[key]
        elif operation == 1:
            value[random_key(rng)] = random_value(rng)
        elif operation == 2:
            value[key] = random_value(rng)
        elif operation == 3:
            value[random_key(rng)] = value.pop(key)
        else:
            value[key] = mutate_structure(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        value = list(value)
        position = rng.randrange(len(value))
        operation = rng.randrange(5)
        if operation == 0:
            del value[position]
        elif operation == 1:
            value.insert(position, random_value(rng))
        elif operation == 2:
            value.append(value[position])
        else:
            value[position] = mutate_structure(rng, value[position], depth + 1)
        return value
    return random_value(rng)


def yaml_bomb(rng):
    """Return YAML text that is small but expands: aliases of aliases, or deep nesting."""
    kind = rng.randrange(5)
    if kind == 0:  # a billion laughs
        width, depth = rng.randint(2, 10), rng.randint(2, 9)
        lines = [f'a0: &a0 [{", ".join(["lol"] * width)}]']
        for level in range(1, depth + 1):
            lines.append(f'a{level}: &a{level} [{", ".join([f"*a{level - 1}"] * width)}]')
        key = rng.choice(('intervals', 'detector', 'start', 'gallery'))
        lines.append(f'{key}: *a{depth}')
        return '\n'.join(lines[:1] + lines[1:] if rng.random() < 0.5 else
                         [f'{key}: ' + '{' + f'x: &a0 [{", ".join(["lol"] * width)}]' + '}']
                         + lines[1:]) + '\n'
    if kind == 1:
        depth = rng.choice((50, 64, 65, 200, 900, 2000, 10000, 100000))
        opening, closing = rng.choice((('[', ']'), ('{a: ', '}'), ('- ', '')))
        if opening == '- ':
            return ''.join(' ' * level + '- \n' for level in range(min(depth, 3000)))
        return opening * depth + '1' + closing * depth
    if kind == 2:  # a recursive structure
        return rng.choice(('intervals: &a [*a]\n', 'a: &a {b: *a}\nintervals: [*a]\n',
                           'detector: &d {x: *d}\n', '&r [*r, *r]\n',
                           'intervals: [&i {start: 0, end: 1, subject: nobody, me: *i}]\n'))
    if kind == 3:  # many keys or a long list
        count = rng.choice((30, 100, 300, 1000, 3000) if rng.random() < 0.1 else (30, 100, 300))
        return 'intervals:\n' + ''.join(f'  - {{start: {index}, end: {index + 1}, subject: '
                                        f'nobody}}\n' for index in range(count))
    return rng.choice(('--- a\n--- b\n', '? [a, b]\n: 1\n', 'a: 1\na: 2\n',
                       '<<: {intervals: []}\n', '!!python/name:os.system\n', '%YAML 9.9\n---\n',
                       '\ufeffintervals: []\n', 'a: !!binary |\n  ' + 'A' * 10000 + '\n'))


def generate_yaml(rng, seeds):
    """Return a mutated YAML document as bytes, from the text, the bytes or the structure."""
    seed = rng.choice(seeds)
    mode = rng.randrange(10)
    if mode < 3:  # structure: load, change, dump
        value = yaml.safe_load(seed)
        for _ in range(1 + int(rng.expovariate(1.0))):
            value = mutate_structure(rng, value)
        try:
            text = yaml.safe_dump(value, default_flow_style=rng.choice((None, True, False)),
                                  allow_unicode=rng.random() < 0.5)
        except yaml.YAMLError:
            text = repr(value)
        return text.encode('utf-8', 'surrogatepass')
    if mode < 6:  # tokens: replace scalars with YAML's edge cases
        text = seed.decode('utf-8')
        tokens = list(re.finditer(r'[A-Za-z0-9_.+\-~\'"]+', text))
        for _ in range(1 + int(rng.expovariate(0.8))):
            if not tokens:
                break
            match = rng.choice(tokens)
            text = text[:match.start()] + rng.choice(YAML_SCALARS) + text[match.end():]
            tokens = list(re.finditer(r'[A-Za-z0-9_.+\-~\'"]+', text))
        return text.encode('utf-8', 'surrogatepass')
    if mode < 8:  # characters with a meaning in YAML, and raw bytes
        text = seed.decode('utf-8')
        for _ in range(1 + int(rng.expovariate(0.6))):
            position = rng.randint(0, len(text))
            text = text[:position] + rng.choice(YAML_TEXT) + text[position + rng.randint(0, 1):]
        data = text.encode('utf-8', 'surrogatepass')
        return mutate_bytes(rng, data, seeds, max_ops=2) if rng.random() < 0.3 else data
    if mode == 8:
        return mutate_bytes(rng, seed, seeds)
    return yaml_bomb(rng).encode('utf-8')


def run_labels(case, workdir):
    """Load a labels file."""
    from face_id_ros.evaluation.labels import load_labels
    intervals = load_labels(write_case_file(workdir, 'labels.yaml', case))
    for item in intervals:
        assert math.isfinite(item.start) and item.end > item.start >= 0, item
        assert isinstance(item.subject, str), item
    return len(intervals)


def run_config(case, workdir):
    """Load a pipeline config file and check what it promises: every value in range."""
    from face_id_ros.core.config import PipelineConfig
    config = PipelineConfig.from_yaml(write_case_file(workdir, 'config.yaml', case))
    check_config(config)
    return config.detector.backend


def check_config(config):
    """Raise AssertionError unless every field has its declared type and range."""
    from dataclasses import fields as dataclass_fields
    for stage in dataclass_fields(config):
        values = getattr(config, stage.name)
        for item in dataclass_fields(values):
            value = getattr(values, item.name)
            meta = item.metadata
            if meta.get('words') and value in meta['words']:
                continue  # a word a number may stand for (matcher.threshold: auto)
            kind = float if meta.get('words') else type(item.default)
            assert isinstance(value, kind), (stage.name, item.name, value)
            if isinstance(value, float):
                assert math.isfinite(value), (stage.name, item.name, value)
            if meta['low'] is not None:
                assert meta['low'] <= value <= meta['high'], (stage.name, item.name, value)
            if meta['choices']:
                assert value in meta['choices'], (stage.name, item.name, value)
    re.compile(config.gallery.id_pattern)
