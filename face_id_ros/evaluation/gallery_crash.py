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
Crash consistency of the gallery: kill a writing process at random moments, check what is left.

A writer process (:func:`run_writer`) applies a deterministic sequence of writes to a real
gallery file (:func:`operations`: enrolments, additions, replacements and removals, one
revision each), printing ``begin N`` before and ``committed N`` after each write. The harness
(:func:`crash_test`) SIGKILLs it at a random moment while a reader connection stays open, as
face_id_node's would, and a reader thread takes snapshots all along. After each kill it opens
the file anew and checks that ``PRAGMA integrity_check`` is ok, that the revision is the last
committed one (or the next, when the kill fell between the commit and its print), and that
the contents are exactly what the sequence gives at that revision; then it starts the writer
again, which carries on from the revision it finds. :func:`concurrent_enrolment` starts two
enrolling processes at the same moment: both must land, or one be refused cleanly.
"""

from dataclasses import dataclass
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from face_id_ros.core.errors import GalleryError
from face_id_ros.core.gallery import Gallery, normalised_rows
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key
import numpy as np

MODEL = 'gallery-crash-test/1/sha256:0'
EMBEDDING_SIZE = 16
MAX_PATIENTS = 8
# Seconds a killed writer gets to show up as ended, and a started one to reach its first write.
PROCESS_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Operation:
    """One write of the sequence: enrol, add, replace or remove, for one patient."""

    kind: str
    patient_id: str
    embeddings: np.ndarray = None
    masked: tuple = ()


def operations(seed):
    """Yield the endless, deterministic sequence of writes for ``seed`` (revision 1, 2...)."""
    patients, next_number, number = [], 1, 0
    while True:
        number += 1
        random = np.random.default_rng([seed, number])
        kinds = ['enrol'] if not patients else (
            ['remove'] if len(patients) >= MAX_PATIENTS
            else ['enrol', 'add', 'replace', 'remove', 'remove'])
        kind = kinds[random.integers(len(kinds))]
        if kind == 'enrol':
            patient_id = f'P-{next_number:04d}'
            next_number += 1
            patients.append(patient_id)
        else:
            patient_id = patients[random.integers(len(patients))]
        if kind == 'remove':
            patients.remove(patient_id)
            yield Operation(kind, patient_id)
            continue
        count = int(random.integers(1, 4))
        yield Operation(kind, patient_id, random.normal(size=(count, EMBEDDING_SIZE)),
                        tuple(bool(flag) for flag in random.integers(0, 2, count)))


class ExpectedContents:
    """The gallery's contents after each revision of a seed's sequence, computed on demand."""

    def __init__(self, seed):
        """Start at revision 0 (nobody enrolled)."""
        self._sequence = operations(seed)
        self._states = [{}]
        self._lock = threading.Lock()

    def at(self, revision):
        """Return {patient id: [(template float32 row, masked)]} at ``revision``."""
        with self._lock:
            while len(self._states) <= revision:
                self._states.append(apply_to_state(self._states[-1], next(self._sequence)))
            return self._states[revision]


def apply_to_state(state, operation):
    """Return a new state dict with ``operation`` applied, as the gallery applies it."""
    state = dict(state)
    if operation.kind == 'remove':
        del state[operation.patient_id]
        return state
    # The rows the gallery stores, then what a snapshot reads back from them.
    rows = normalised_rows(operation.embeddings, EMBEDDING_SIZE, 'expected')
    rows = [(row / np.linalg.norm(row), masked) for row, masked in zip(rows, operation.masked)]
    kept = [] if operation.kind == 'replace' else state.get(operation.patient_id, [])
    state[operation.patient_id] = kept + rows
    return state


def apply_to_gallery(gallery, operation):
    """Make ``operation``'s write; return the revision it made."""
    if operation.kind == 'remove':
        return gallery.remove_patient(operation.patient_id)
    count = len(operation.embeddings)
    return gallery.add_templates(
        operation.patient_id, operation.embeddings, [operation.kind] * count, [1.0] * count,
        replace=operation.kind == 'replace', masked=operation.masked)


def snapshot_matches(snapshot, state):
    """Return True when a GallerySnapshot holds exactly ``state``'s patients and templates."""
    patient_ids = sorted(state)
    rows = [row for patient_id in patient_ids for row in state[patient_id]]
    if list(snapshot.patient_ids) != patient_ids or len(snapshot.templates) != len(rows):
        return False
    owners = [index for index, patient_id in enumerate(patient_ids) for _ in state[patient_id]]
    return (list(snapshot.owners) == owners
            and all(np.array_equal(stored, row) for stored, (row, _) in
                    zip(snapshot.templates, rows))
            and list(snapshot.masked) == [masked for _, masked in rows])


def gallery_key():
    """Return the key in FACE_ID_GALLERY_KEY, or None for an unencrypted gallery."""
    text = os.environ.get(KEY_ENV)
    return parse_key(text, f'environment variable {KEY_ENV}') if text else None


def run_writer(path, seed):
    """Apply the sequence from the gallery's revision on, printing each write; never return."""
    with Gallery.open(path, MODEL, EMBEDDING_SIZE, key=gallery_key()) as gallery:
        revision = gallery.revision
        for number, operation in enumerate(operations(seed), 1):
            if number <= revision:
                continue
            print(f'begin {number}', flush=True)
            made = apply_to_gallery(gallery, operation)
            if made != number:
                raise GalleryError(f'write {number} made revision {made}')
            print(f'committed {number}', flush=True)


def enrol_once(path, patient_id, seed, start_at):
    """
    Enrol one patient at wall-clock ``start_at``; print the outcome.

    Prints ``committed N BEGAN ENDED`` (wall-clock seconds of the write) or ``refused ...``.
    """
    embeddings = np.random.default_rng(seed).normal(size=(3, EMBEDDING_SIZE))
    with Gallery.open(path, MODEL, EMBEDDING_SIZE, key=gallery_key()) as gallery:
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        try:
            revision = gallery.add_templates(patient_id, embeddings, ['concurrent'] * 3,
                                             [1.0] * 3)
        except GalleryError as error:
            print(f'refused {error}', flush=True)
            return
        print(f'committed {revision} {began:.6f} {time.time():.6f}', flush=True)


def python_process(call, key_text):
    """Start ``python -c call`` with the gallery key (or none) in its environment."""
    environment = dict(os.environ)
    environment.pop(KEY_ENV, None)
    if key_text:
        environment[KEY_ENV] = key_text
    return subprocess.Popen([sys.executable, '-c', call], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


class _Lines:
    """Collect a process's complete stdout lines in a thread (a kill may cut the last one)."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            if line.endswith('\n'):
                self.lines.put(line.strip())

    def wait_for(self, prefix, timeout):
        """Return the first line starting with ``prefix``, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line
        return None

    def rest(self):
        """Return every line left, once the stream has ended."""
        self._thread.join(PROCESS_TIMEOUT_S)
        lines = []
        while not self.lines.empty():
            lines.append(self.lines.get())
        return lines


class _Reader:
    """A connection kept open all along, as face_id_node's, taking snapshots in a thread."""

    def __init__(self, path, key, expected):
        self.gallery = Gallery.open(path, MODEL, EMBEDDING_SIZE, create=False, key=key)
        self.expected = expected
        self.snapshots = self.mismatches = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.002):
            try:
                snapshot = self.gallery.snapshot()
            except GalleryError:
                self.errors += 1
                continue
            self.snapshots += 1
            if not snapshot_matches(snapshot, self.expected.at(snapshot.revision)):
                self.mismatches += 1

    def close(self):
        self._stop.set()
        self._thread.join()
        self.gallery.close()


def check_after_kill(path, key, expected, last_begun, last_committed):
    """Open the gallery anew after a kill; return its revision and the problems found."""
    problems = []
    with Gallery.open(path, MODEL, EMBEDDING_SIZE, create=False, key=key) as gallery:
        snapshot = gallery.snapshot()
    with sqlite3.connect(path) as database:
        integrity = database.execute('PRAGMA integrity_check').fetchone()[0]
    if integrity != 'ok':
        problems.append(f'integrity_check: {integrity}')
    revision = snapshot.revision
    landed_unprinted = revision == last_committed + 1 and last_begun == revision
    if revision != last_committed and not landed_unprinted:
        problems.append(f'revision {revision}, last committed {last_committed}')
    elif not snapshot_matches(snapshot, expected.at(revision)):
        problems.append(f'contents differ from revision {revision}')
    return revision, problems


def crash_test(path, kills, seed=0, max_delay_s=0.25, encrypted=True, progress=True):
    """
    Kill a writer ``kills`` times at random moments; return the summary of what was found.

    ``path`` must not exist yet. The summary counts kills, corrupt galleries, lost or
    phantom revisions, contents that differ, kills that fell inside a write (after its
    ``begin``, before its ``committed``: rolled back or landed), and the reader's snapshots
    and mismatches. A writer that ends on its own (an error) is counted and reported.
    """
    from tqdm import tqdm
    if os.path.exists(path):
        raise GalleryError(f'{path} exists: the crash test makes its own gallery')
    key_text = new_key_text() if encrypted else None
    key = parse_key(key_text, 'the crash test key') if key_text else None
    Gallery.open(path, MODEL, EMBEDDING_SIZE, key=key).close()
    expected = ExpectedContents(seed)
    random = np.random.default_rng(seed)
    reader = _Reader(path, key, expected)
    summary = {'kills': 0, 'corrupt': 0, 'lost_or_phantom_revisions': 0,
               'contents_differ': 0, 'inside_write_rolled_back': 0,
               'inside_write_landed': 0, 'writer_errors': [], 'problems': []}
    call = ('from face_id_ros.evaluation.gallery_crash import run_writer; '
            f'run_writer({str(path)!r}, {seed})')
    last_committed = revision = 0
    try:
        for _ in tqdm(range(kills), desc='gallery kills', unit='kill', disable=not progress):
            writer = python_process(call, key_text)
            lines = _Lines(writer.stdout)
            started = lines.wait_for('begin', PROCESS_TIMEOUT_S)
            time.sleep(random.uniform(0.0, max_delay_s))
            writer.send_signal(signal.SIGKILL)
            writer.wait(PROCESS_TIMEOUT_S)
            output = ([started] if started else []) + lines.rest()
            if writer.returncode != -signal.SIGKILL:
                summary['writer_errors'].append(writer.stderr.read()[-2000:])
            writer.stderr.close()
            begun = [int(line.split()[1]) for line in output if line.startswith('begin')]
            committed = [int(line.split()[1]) for line in output
                         if line.startswith('committed')]
            last_committed = max(committed, default=revision)
            last_begun = max(begun, default=revision)
            revision, problems = check_after_kill(path, key, expected, last_begun,
                                                  last_committed)
            summary['kills'] += 1
            _count(summary, problems, last_begun, last_committed, revision)
    finally:
        reader.close()
    summary.update(final_revision=revision, reader_snapshots=reader.snapshots,
                   reader_mismatches=reader.mismatches, reader_errors=reader.errors,
                   encrypted=encrypted, seed=seed, max_delay_s=max_delay_s)
    return summary


def _count(summary, problems, last_begun, last_committed, revision):
    for problem in problems:
        key = ('corrupt' if problem.startswith('integrity') else
               'lost_or_phantom_revisions' if problem.startswith('revision') else
               'contents_differ')
        summary[key] += 1
        summary['problems'].append(problem)
    if last_begun > last_committed:
        summary['inside_write_landed' if revision == last_begun
                else 'inside_write_rolled_back'] += 1


def concurrent_enrolment(path, rounds, encrypted=True):
    """
    Start two enrolling processes at the same moment, ``rounds`` times; return the summary.

    Each round must end with both patients enrolled (revision +2) or one refused with a
    clean GalleryError (revision +1), and the file whole; anything else is a problem.
    ``overlapping`` counts the rounds whose two writes were in progress at the same time.
    """
    key_text = new_key_text() if encrypted else None
    key = parse_key(key_text, 'the concurrency test key') if key_text else None
    Gallery.open(path, MODEL, EMBEDDING_SIZE, key=key).close()
    summary = {'rounds': 0, 'both_landed': 0, 'one_refused': 0, 'overlapping': 0,
               'problems': []}
    for number in range(rounds):
        with Gallery.open(path, MODEL, EMBEDDING_SIZE, create=False, key=key) as gallery:
            before = gallery.revision
        start_at = time.time() + 1.5  # both have imported and opened by then
        patient_ids = [f'P-{9000 + 2 * number + side:04d}' for side in (0, 1)]
        writers = [python_process(
            'from face_id_ros.evaluation.gallery_crash import enrol_once; '
            f'enrol_once({str(path)!r}, {patient_id!r}, {number}, {start_at})', key_text)
            for patient_id in patient_ids]
        outputs = [writer.communicate(timeout=PROCESS_TIMEOUT_S)[0].strip()
                   for writer in writers]
        summary['rounds'] += 1
        _judge_round(summary, path, key, before, patient_ids, outputs,
                     [writer.returncode for writer in writers])
    return summary


def _judge_round(summary, path, key, before, patient_ids, outputs, codes):
    landed = [patient_id for patient_id, output in zip(patient_ids, outputs)
              if output.startswith('committed')]
    refused = [output for output in outputs if output.startswith('refused')]
    with Gallery.open(path, MODEL, EMBEDDING_SIZE, create=False, key=key) as gallery:
        revision, enrolled = gallery.revision, set(gallery.patient_ids())
    with sqlite3.connect(path) as database:
        integrity = database.execute('PRAGMA integrity_check').fetchone()[0]
    clean = (codes == [0, 0] and integrity == 'ok' and len(landed) + len(refused) == 2
             and revision == before + len(landed) and set(landed) <= enrolled
             and not (set(patient_ids) - set(landed)) & enrolled
             and all('busy' in output for output in refused))
    if not clean:
        summary['problems'].append(f'round {summary["rounds"]}: exit codes {codes}, '
                                   f'integrity {integrity}, revision {before} -> {revision}, '
                                   f'outputs {outputs}')
    elif len(landed) == 2:
        summary['both_landed'] += 1
        (_, _, first_began, first_ended), (_, _, second_began, second_ended) = (
            output.split() for output in outputs)
        summary['overlapping'] += (float(first_began) < float(second_ended)
                                   and float(second_began) < float(first_ended))
    else:
        summary['one_refused'] += 1


def verdict(summary):
    """Return (passed, one line a person reads) for a crash test and concurrency summary."""
    crash, concurrent = summary['crash'], summary['concurrent']
    failures = {'corrupt files': crash['corrupt'],
                'lost or phantom revisions': crash['lost_or_phantom_revisions'],
                'contents that differ': crash['contents_differ'],
                'writer errors': len(crash['writer_errors']),
                'reader mismatches': crash['reader_mismatches'],
                'concurrency problems': len(concurrent['problems'])}
    found = ', '.join(f'{count} {what}' for what, count in failures.items() if count)
    scope = (f"{crash['kills']} kills, {concurrent['rounds']} concurrent rounds "
             f"({concurrent['both_landed']} both landed, {concurrent['one_refused']} one "
             'refused cleanly)')
    if found:
        return False, f'FAIL: {found} in {scope}'
    return True, f'PASS: every kill left the last committed revision intact; {scope}'
