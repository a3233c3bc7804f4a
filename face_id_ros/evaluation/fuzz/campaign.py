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
Fuzzing of every input a stranger controls: the decoders and loaders of the core.

Each *target* pairs real seeds (frames of the sample portrait encoded as every raw encoding
and as JPEG and PNG, the shipped config files, labels files, a gallery made through
``Gallery.open``, the shipped model and a tiny real ONNX embedder) with a structure-aware
mutator (field mutations of width, height, step, encoding and is_bigendian; bit flips, byte
inserts and deletes, truncation and splicing; JPEG segments, PNG chunks with their CRCs
recomputed, YAML and JSON values, SQLite cells, ONNX graph fields) and with the public call
that reads such an input. Every input must end in a result that keeps the call's promise
(an HxWx3 uint8 picture, a config whose every value is in range, metadata the runtime can
use) or in :class:`FaceIdError` (:class:`ModelError` for a model file). Anything else is a
finding: another exception or a broken promise is *unexpected*, an input that takes more
than the deadline of CPU time (or makes no progress for longer in wall-clock time) a *hang*,
one that raises the worker's peak RSS by more than a limit a *memory* blow-up, and one that
kills the worker (a native crash, or memory past its ``RLIMIT_AS``) a *crash*.

Input ``i`` of a target is made from ``random.Random(f'{seed}/{target}/{i}')`` and the
target's seeds alone, so a run is reproducible and any input can be made again from its
number (but for the encrypted seed galleries, whose nonces are random). The runner executes
inputs in worker processes; the parent watches each one's progress and kills one stuck on
an input. The first unexpected input of each distinct exception site, and every hang, crash
and memory blow-up, is saved as ``cases/<target>-<index>.pickle`` for :func:`replay`
(``face-id fuzz --replay``). ONNX files cost a session each, so ``model_file`` gets 1% of a
run, at most 3,000 inputs. Each family of targets has its module (:mod:`.images`,
:mod:`.yaml_files`, :mod:`.models`, :mod:`.galleries`); this one runs them.
"""

from collections import Counter
import copyreg
from dataclasses import dataclass, field
import io
import json
import multiprocessing
import multiprocessing.connection
import os
from pathlib import Path
import pickle
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback

import cv2
from face_id_ros.core.errors import FaceIdError
from face_id_ros.evaluation.fuzz import galleries, images, models, yaml_files


OUTCOMES = ('result', 'refused', 'unexpected', 'hang', 'crash')
CHUNK = 250
SAVED_PER_TARGET = 20


@dataclass(frozen=True)
class Target:
    """One input a stranger controls: its seeds, its mutator and the call that reads it."""

    name: str
    description: str
    share: float
    build_seeds: object
    generate: object
    execute: object
    cap: int = 0  # at most this many inputs in a run (slow targets); 0: no cap
    needs_workdir: bool = False
    hidden: bool = False  # run only when named (the runner's own check)


def selftest_kind(index):
    """Return the outcome self-test input ``index`` provokes (fixed by its number)."""
    if index == 19:
        return 'stuck'
    if index == 29:
        return 'crash'
    return {6: 'refused', 7: 'unexpected', 8: 'memory', 9: 'slow'}.get(index % 10, 'result')


def run_selftest(case, workdir):
    """Provoke one outcome: a result, FaceIdError, another exception, slowness, memory, death."""
    kind = selftest_kind(case)
    if kind == 'refused':
        raise FaceIdError('refused on purpose')
    if kind == 'unexpected':
        raise KeyError('unexpected on purpose')
    if kind == 'memory':
        block = bytearray(300 * 1024 * 1024)
        block[::4096] = b'x' * len(block[::4096])
    elif kind == 'slow':  # 1.5 s of CPU time
        began = time.process_time()
        while time.process_time() - began < 1.5:
            pass
    elif kind == 'stuck':
        time.sleep(600)
    elif kind == 'crash':
        os.abort()
    return kind


TARGETS = {target.name: target for target in (
    Target('raw_image', 'sensor_msgs/Image fields and data -> decode_image', 0.34,
           images.build_raw_seeds, images.generate_raw, images.run_raw),
    Target('compressed_image', 'sensor_msgs/CompressedImage JPEG/PNG -> decode_compressed_image',
           0.20, images.build_compressed_seeds, images.generate_compressed,
           images.run_compressed),
    Target('image_file', 'JPEG/PNG file (identify, enroll) -> read_image', 0.13,
           images.build_file_seeds, images.generate_file, images.run_file),
    Target('labels_yaml', 'labels YAML file -> load_labels', 0.12,
           yaml_files.build_labels_seeds, yaml_files.generate_yaml, yaml_files.run_labels),
    Target('config_yaml', 'pipeline config YAML file -> PipelineConfig.from_yaml', 0.10,
           yaml_files.build_config_seeds, yaml_files.generate_yaml, yaml_files.run_config),
    Target('model_metadata', 'face_id metadata JSON -> ModelMetadata.from_json + its use', 0.07,
           models.build_metadata_seeds, models.generate_metadata, models.run_metadata),
    Target('gallery_file', 'gallery file -> Gallery.open + info/snapshot/list', 0.04,
           galleries.build_gallery_seeds, galleries.generate_gallery, galleries.run_gallery,
           needs_workdir=True),
    Target('model_file', 'model ONNX file -> OnnxEmbedder + embed (a session per input)', 0.0,
           models.build_model_seeds, models.generate_model, models.run_model, cap=3000),
    Target('selftest', "the runner's own check: each outcome on purpose", 0.0,
           lambda workdir: (), None, run_selftest, hidden=True),
)}


def plan(inputs, names=None, model_inputs=None):
    """Return ``{target: count}``: capped targets get their cap, the rest share the remainder."""
    names = list(names or [name for name, target in TARGETS.items() if not target.hidden])
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise FaceIdError(f'unknown fuzz target(s) {unknown}; known: {sorted(TARGETS)}')
    counts = {}
    for name in names:
        target = TARGETS[name]
        if target.cap:
            counts[name] = (model_inputs if model_inputs is not None
                            else min(target.cap, max(1, inputs // 100)))
            if len(names) == 1:
                counts[name] = inputs
    rest = inputs - sum(counts.values())
    shares = {name: TARGETS[name].share or 1.0 for name in names if name not in counts}
    total_share = sum(shares.values())
    for position, name in enumerate(shares):
        counts[name] = int(rest * shares[name] / total_share)
    if shares:
        first = next(iter(shares))
        counts[first] += inputs - sum(counts.values())
    return {name: counts[name] for name in names if counts.get(name)}


def make_case(target, seeds, seed, index, workdir):
    """Return input ``index`` of ``target``: a function of (seed, target, index) alone."""
    if target.generate is None:
        return index
    rng = random.Random(f'{seed}/{target.name}/{index}')
    if target.needs_workdir:
        return target.generate(rng, seeds, workdir)
    return target.generate(rng, seeds)


class Seeds:
    """Each target's seeds, built on first use in one process."""

    def __init__(self, workdir):
        """Build seeds under ``workdir``."""
        self.workdir = workdir
        self._seeds = {}

    def __getitem__(self, name):
        """Return the seeds of target ``name``."""
        if name not in self._seeds:
            self._seeds[name] = TARGETS[name].build_seeds(self.workdir)
        return self._seeds[name]


def execute(target, case, workdir):
    """Run one input; return (outcome, exception or None): result, refused or unexpected."""
    try:
        target.execute(case, workdir)
        return 'result', None
    except FaceIdError:
        return 'refused', None
    except Exception as error:  # the point of fuzzing: anything else is a finding
        return 'unexpected', error


def site(error):
    """Return where an exception was raised inside the package (one key per distinct bug)."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if 'face_id_ros' in frame.filename
           and '/evaluation/fuzz/' not in frame.filename] or frames[-1:]
    if not own:
        return type(error).__name__
    last = own[-1]
    return f'{type(error).__name__} at {Path(last.filename).name}:{last.lineno}'


class _CasePickler(pickle.Pickler):
    """Pickle cases, memoryview data included (as a memoryview of the same bytes)."""

    dispatch_table = {**copyreg.dispatch_table,
                      memoryview: lambda view: (memoryview, (view.tobytes(),))}


def dump_case(case):
    """Return a case as pickle bytes (memoryview data included)."""
    stream = io.BytesIO()
    _CasePickler(stream).dump(case)
    return stream.getvalue()


def save_case(out, target_name, index, case, outcome, detail):
    """Write a case for :func:`replay`; return its path (or why it could not be saved)."""
    folder = Path(out) / 'cases'
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{target_name}-{index}.pickle'
    try:
        with open(path, 'wb') as stream:
            _CasePickler(stream).dump({'target': target_name, 'index': index,
                                       'outcome': outcome, 'detail': detail, 'case': case})
    except (OSError, pickle.PicklingError, TypeError, ValueError) as error:
        return f'not saved ({error}); make it again with make_case(seed, {target_name}, {index})'
    return path


def replay(path):
    """
    Run a saved case again in this process; return (outcome, seconds, traceback text or '').

    Only replay cases this tool saved: they are pickles.
    """
    with open(path, 'rb') as stream:
        saved = pickle.load(stream)
    target = TARGETS[saved['target']]
    with tempfile.TemporaryDirectory(prefix='face_id_fuzz_') as scratch:
        started = time.monotonic()
        outcome, error = execute(target, saved['case'], scratch)
    text = ''.join(traceback.format_exception(error)) if error is not None else ''
    return outcome, time.monotonic() - started, text


def _address_space():
    with open('/proc/self/statm') as stream:
        return int(stream.read().split()[0]) * resource.getpagesize()


def _max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _restart_peak_rss():
    """
    Return this process's resident memory (MB) with its peak reset to it, where Linux allows.

    An input's memory is its peak over the resident memory it started with; the process's
    lifetime peak (``ru_maxrss``) would hide an input that stays below an earlier peak.
    """
    try:
        with open('/proc/self/clear_refs', 'w') as stream:
            stream.write('5')  # reset VmHWM to VmRSS (Linux >= 4.0)
    except OSError:
        return _max_rss_mb()
    return _status_mb('VmRSS')


def _peak_rss_mb():
    """Return the resident peak since ``_restart_peak_rss`` (the lifetime peak elsewhere)."""
    return _status_mb('VmHWM') or _max_rss_mb()


def _status_mb(field):
    with open('/proc/self/status') as stream:
        for line in stream:
            if line.startswith(f'{field}:'):
                return int(line.split()[1]) / 1024
    return 0.0


def _worker(connection, progress, seed, out, memory_mb, memory_jump_mb, deadline_s, quiet):
    """
    Run chunks of inputs the parent sends; report each chunk's counts and findings.

    An input that raises the peak RSS by more than ``memory_jump_mb`` is a *memory* finding;
    the worker then reports and exits, so the next worker's peak starts afresh.
    """
    if quiet:  # libjpeg and libpng print a line per corrupt picture
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    cv2.setNumThreads(1)
    workdir = tempfile.mkdtemp(prefix='face_id_fuzz_', dir=_scratch_root())
    seeds = Seeds(workdir)
    limited = False
    saved = set()
    try:
        while True:
            message = connection.recv()
            if message is None:
                break
            name, start, stop = message[:3]
            target = TARGETS[name]
            target_seeds = seeds[name]
            if not limited:
                for other in message[3:]:
                    seeds[other]
                if memory_mb:
                    limit = _address_space() + memory_mb * 1024 * 1024
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                limited = True
            counts = Counter()
            findings = []
            slowest = (0.0, None)
            stopped = stop
            for index in range(start, stop):
                progress.value = index
                case = make_case(target, target_seeds, seed, index, workdir)
                before = _restart_peak_rss()
                # CPU time, not wall-clock time: on a shared machine an input waits for a core.
                began = time.process_time()
                outcome, error = execute(target, case, workdir)
                seconds = time.process_time() - began
                grown = _peak_rss_mb() - before
                if seconds > slowest[0]:
                    slowest = (seconds, index)
                detail = None
                if error is not None:
                    key = site(error)
                    detail = {'site': key, 'error': f'{type(error).__name__}: {error}'[:500],
                              'traceback': ''.join(traceback.format_exception(error))[-4000:]}
                if seconds > deadline_s:
                    detail = {'site': 'hang', 'error': f'took {seconds:.1f} s of CPU time '
                              f'(deadline {deadline_s:g} s), then ended {outcome}'}
                    outcome = 'hang'
                elif memory_jump_mb and grown > memory_jump_mb:
                    outcome = 'memory'
                    detail = {'site': 'memory', 'error': f'raised the peak RSS by '
                              f'{grown:.0f} MB'}
                counts[outcome] += 1
                if detail is not None:
                    key = (name, detail['site'])
                    if outcome != 'unexpected' or (key not in saved and len(saved) < 200):
                        saved.add(key)
                        detail['case'] = str(save_case(out, name, index, case, outcome,
                                                       detail))
                    findings.append((index, outcome, detail))
                if outcome == 'memory':
                    stopped = index + 1
                    break
            progress.value = -1
            connection.send(('done', dict(counts), findings, _max_rss_mb(), slowest,
                             stopped))
            if stopped < stop:
                break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scratch_root():
    return '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None


class _Slot:
    """One worker process and the chunk it is running."""

    def __init__(self, context, warm, **options):
        self.progress = context.Value('q', -1, lock=False)
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, daemon=True,
                                       args=(child, self.progress), kwargs=options)
        self.process.start()
        child.close()
        self.warm = tuple(warm)
        self.chunk = None
        self.last_index = None
        self.last_change = time.monotonic()

    def send(self, chunk):
        self.chunk = chunk
        self.last_index, self.last_change = None, time.monotonic()
        self.connection.send(tuple(chunk) + self.warm)
        self.warm = ()

    def stop(self, kill=False):
        if kill:
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except OSError:
                pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


FAILURES = ('unexpected', 'hang', 'crash', 'memory')


@dataclass
class Report:
    """What a campaign did: per-target outcome counts, findings, time and memory."""

    seed: int
    counts: dict = field(default_factory=dict)
    slowest: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    memory_limit_mb: int = 0
    deadline_s: float = 0.0
    jobs: int = 1

    @property
    def inputs(self):
        """Return the inputs run, all targets together."""
        return sum(sum(counts.values()) for counts in self.counts.values())

    @property
    def failures(self):
        """Count unexpected exceptions, hangs, crashes and memory blow-ups, all targets."""
        return sum(counts.get(outcome, 0) for counts in self.counts.values()
                   for outcome in FAILURES)

    def table(self):
        """Return the per-target table of inputs and outcomes, as text."""
        header = (f'{"target":<17}{"inputs":>10}{"result":>9}{"FaceIdError":>12}'
                  f'{"unexpected":>11}{"hang":>5}{"crash":>6}{"memory":>7}{"max cpu s":>10}')
        lines = [header, '-' * len(header)]
        total = Counter()
        for name, counts in self.counts.items():
            total.update(counts)
            lines.append(self._row(name, counts, self.slowest.get(name, (0.0, None))[0]))
        lines += ['-' * len(header),
                  self._row('all', total, max([item[0] for item in self.slowest.values()]
                                              or [0.0]))]
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines.append(f'{self.inputs:,} inputs in {self.seconds:,.0f} s ({rate:,.0f}/s, '
                     f'{self.jobs} worker(s)), seed {self.seed}; peak RSS of a worker '
                     f'{self.peak_rss_mb:,.0f} MB; address space limited to start-up '
                     f'+{self.memory_limit_mb:,} MB; hang: over {self.deadline_s:g} s of CPU '
                     'time for one input')
        groups = Counter((name, outcome, detail['site'])
                         for name, _, outcome, detail in self.findings)
        for (name, outcome, key), count in sorted(groups.items()):
            example = next(detail for item, _, kind, detail in self.findings
                           if (item, kind, detail['site']) == (name, outcome, key))
            lines.append(f'  {outcome} in {name}: {key} x{count}: {example["error"][:150]}'
                         + (f' [{example["case"]}]' if example.get('case') else ''))
        return '\n'.join(lines)

    @staticmethod
    def _row(name, counts, slowest):
        inputs = sum(counts.values())
        return (f'{name:<17}{inputs:>10,}{counts.get("result", 0):>9,}'
                f'{counts.get("refused", 0):>12,}{counts.get("unexpected", 0):>11,}'
                f'{counts.get("hang", 0):>5,}{counts.get("crash", 0):>6,}'
                f'{counts.get("memory", 0):>7,}{slowest:>10.2f}')

    def to_dict(self):
        """Return the report as plain data (for report.json)."""
        return {'seed': self.seed, 'inputs': self.inputs, 'failures': self.failures,
                'seconds': round(self.seconds, 1), 'jobs': self.jobs,
                'peak_rss_mb': round(self.peak_rss_mb, 1),
                'memory_limit_mb': self.memory_limit_mb, 'deadline_s': self.deadline_s,
                'counts': self.counts,
                'slowest': {name: {'seconds': round(seconds, 3), 'index': index}
                            for name, (seconds, index) in self.slowest.items()},
                'findings': [{'target': name, 'index': index, 'outcome': outcome, **detail}
                             for name, index, outcome, detail in self.findings[:1000]]}


def run_campaign(inputs, seed=0, out='.cache/fuzz', targets=None, jobs=1, deadline_s=10.0,
                 memory_mb=3072, memory_jump_mb=1024, model_inputs=None, progress=False,
                 quiet=True, stall_s=None):
    """
    Run ``inputs`` fuzz inputs over ``targets`` (all by default) in ``jobs`` worker processes.

    Returns a :class:`Report`, also written to ``out/report.json`` and ``out/report.txt``;
    saved cases go to ``out/cases``. An input that takes more than ``deadline_s`` of CPU time
    is a hang, and so is one on which a worker makes no progress for ``stall_s`` of
    wall-clock time (default: 3 deadlines, at least the deadline + 30 s; the parent kills
    the worker); one that raises a worker's peak RSS by more than ``memory_jump_mb`` is a
    memory finding; a worker that dies (a native crash, or memory past its address-space
    limit of start-up + ``memory_mb``) is a crash.
    """
    counts_planned = plan(inputs, targets, model_inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [(name, start, min(start + CHUNK, count))
              for name, count in counts_planned.items() for start in range(0, count, CHUNK)]
    # Interleave the targets so that a short or interrupted run still covers each of them.
    chunks.sort(key=lambda chunk: (chunk[1] / counts_planned[chunk[0]], chunk[0]))
    report = Report(seed, {name: Counter() for name in counts_planned},
                    memory_limit_mb=memory_mb, deadline_s=deadline_s, jobs=jobs)
    options = {'seed': seed, 'out': str(out), 'memory_mb': memory_mb,
               'memory_jump_mb': memory_jump_mb, 'deadline_s': deadline_s, 'quiet': quiet}
    context = multiprocessing.get_context('spawn')
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(counts_planned.values()), desc='fuzz', unit='input',
                   smoothing=0.05, file=sys.stderr)
    parent_seeds = None
    # A worker whose input makes no progress for this long (wall-clock) is killed.
    kill_after = stall_s if stall_s is not None else max(3 * deadline_s, deadline_s + 30)
    started = last_write = time.monotonic()
    pending = list(reversed(chunks))
    slots = []

    def lost(slot, outcome, why):
        """Record the input a worker died or stuck on; queue the rest of its chunk again."""
        nonlocal parent_seeds
        name, start, stop = slot.chunk
        index = slot.progress.value if slot.progress.value >= 0 else start
        if parent_seeds is None:
            parent_seeds = Seeds(tempfile.mkdtemp(prefix='face_id_fuzz_', dir=_scratch_root()))
        case = make_case(TARGETS[name], parent_seeds[name], seed, index, parent_seeds.workdir)
        detail = {'site': outcome, 'error': f'{why} on input {index} of {name}'}
        detail['case'] = str(save_case(out, name, index, case, outcome, detail))
        report.counts[name][outcome] += 1
        report.findings.append((name, index, outcome, detail))
        if bar is not None:
            bar.update(1)
        # The worker's counts of this chunk died with it.
        if start < index:
            pending.append((name, start, index))
        if index + 1 < stop:
            pending.append((name, index + 1, stop))
        slots.remove(slot)
        slot.stop(kill=True)

    try:
        while pending or slots:
            while len(slots) < jobs and pending:
                slots.append(_Slot(context, counts_planned, **options))
            for slot in list(slots):
                if slot.chunk is None:
                    if pending:
                        slot.send(pending.pop())
                    else:
                        slots.remove(slot)
                        slot.stop()
            busy = [slot.connection for slot in slots if slot.chunk]
            ready = multiprocessing.connection.wait(busy, timeout=0.5) if busy else []
            now = time.monotonic()
            for slot in list(slots):
                if slot.chunk is None:
                    continue
                if slot.connection in ready:
                    try:
                        _, counts, findings, maxrss, slowest, stopped = slot.connection.recv()
                    except (EOFError, OSError):
                        code = slot.process.exitcode
                        lost(slot, 'crash', f'the worker died (exit code {code})')
                        continue
                    name, _, stop = slot.chunk
                    report.counts[name].update(counts)
                    report.findings += [(name, index, outcome, detail)
                                        for index, outcome, detail in findings]
                    report.peak_rss_mb = max(report.peak_rss_mb, maxrss)
                    if slowest[0] > report.slowest.get(name, (0.0, None))[0]:
                        report.slowest[name] = slowest
                    if bar is not None:
                        bar.update(sum(counts.values()))
                    slot.chunk = None
                    if stopped < stop:  # the worker stopped after a memory finding
                        pending.append((name, stopped, stop))
                        slots.remove(slot)
                        slot.stop()
                    continue
                index = slot.progress.value
                if index != slot.last_index:
                    slot.last_index, slot.last_change = index, now
                elif index >= 0 and now - slot.last_change > kill_after:
                    lost(slot, 'hang', f'the worker was still on it after {kill_after:g} s')
            if now - last_write > 60:  # the report so far, for a long run
                last_write = now
                report.seconds = now - started
                (out / 'report.txt').write_text(report.table() + '\n')
    finally:
        for slot in slots:
            slot.stop(kill=bool(slot.chunk))
        if bar is not None:
            bar.close()
        if parent_seeds is not None:
            shutil.rmtree(parent_seeds.workdir, ignore_errors=True)
        report.seconds = time.monotonic() - started
        report.counts = {name: dict(counts) for name, counts in report.counts.items()}
        (out / 'report.json').write_text(json.dumps(report.to_dict(), indent=1, default=str))
        (out / 'report.txt').write_text(report.table() + '\n')
    return report
