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
``face-id gallery-sync-bench``: many robots following one server gallery, under load and faults.

On a throw-away PostgreSQL server on loopback (:mod:`postgres_cluster`), :func:`sync_bench`
starts robot processes that follow the gallery through their encrypted caches and desk
processes that enrol and erase patients at the same time
(:mod:`face_id_ros.evaluation.gallery_sync_roles`), in two phases:

1. steady: the desks enrol and erase ``patients`` patients; the time from each commit to
   each robot's snapshot of it (or a later one) gives the latency percentiles;
2. faults: the desks go on with ``fault_patients`` more while the server is stopped and
   started again and robots are SIGKILLed at random moments (a killed robot misses the
   erasures made meanwhile, and must apply them before its first identification after the
   restart).

Then every snapshot any robot swapped in is checked against the server's audit trail (its
patients must be exactly those of its revision: nothing lost, doubled, mixed or brought
back), every cache against ``PRAGMA integrity_check`` and, template by template, against the
server's final revision, and every desk commit against the audit trail.
:func:`load_bench` measures a 10,000-patient gallery: the first sync, the snapshot load, its
memory and the match time per face on one thread.
"""

from contextlib import closing
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from face_id_ros.core.config import GalleryConfig
from face_id_ros.core.gallery import Gallery
from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, parse_key
from face_id_ros.core.gallery_postgres import PostgresGallery
from face_id_ros.core.gallery_server_schema import migrate_server
from face_id_ros.evaluation.gallery_sync_roles import digest, EMBEDDING_SIZE, MODEL
from face_id_ros.evaluation.postgres_cluster import ThrowAwayCluster
import numpy as np

CONVERGE_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 120.0
OUTAGE_S = 3.0
# One thread for the match timing, as a robot's worker matches.
SINGLE_THREAD = dict.fromkeys(('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'),
                              '1')


class Process:
    """A role process (``python -c``) whose stdout lines are collected with arrival order."""

    def __init__(self, name, call, key_text, extra_env=None):
        """Start ``call`` with the gallery key in its environment."""
        environment = {**os.environ, KEY_ENV: key_text, **(extra_env or {})}
        self.name = name
        self.popen = subprocess.Popen([sys.executable, '-c', call], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=environment)
        self.lines = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            if line.endswith('\n'):
                self.lines.append(line.split())
                if line.startswith('ready'):
                    self.ready.set()

    def finish(self, timeout=READY_TIMEOUT_S):
        """Close stdin (a robot's stop signal), wait for the exit; return the stderr tail."""
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(10.0)
        return self.popen.stderr.read()[-2000:]

    def kill(self):
        """SIGKILL the process (it may be in the middle of a cache write)."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self._reader.join(10.0)


def robot_process(index, url, cache, poll_s, key_text):
    """Start robot number ``index`` following ``url`` through ``cache``."""
    call = ('from face_id_ros.evaluation.gallery_sync_roles import run_robot; '
            f'run_robot({url!r}, {str(cache)!r}, {poll_s!r})')
    return Process(f'robot {index}', call, key_text)


def desk_process(desk, url, patients, seed, interval_s, key_text):
    """Start desk number ``desk`` enrolling ``patients`` patients (erasing about half)."""
    call = ('from face_id_ros.evaluation.gallery_sync_roles import run_desk; '
            f'run_desk({url!r}, {desk}, {patients}, {seed}, {interval_s!r})')
    return Process(f'desk {desk}', call, key_text)


def sync_bench(out, robots=20, desks=2, patients=1000, fault_patients=300, robot_kills=3,
               seed=0, poll_s=1.0, desk_interval_s=0.02, progress=print):
    """Run both phases on a throw-away server; return the summary (see the module doc)."""
    os.makedirs(out, exist_ok=True)
    cluster = ThrowAwayCluster()
    try:
        cluster.start()
        key_text = new_key_text()
        key = parse_key(key_text, 'bench key')
        migrate_server(cluster.url, key, MODEL, EMBEDDING_SIZE)
        caches = [os.path.join(out, f'robot_{index:02d}.db') for index in range(robots)]
        for cache in caches:
            for suffix in ('', '-wal', '-shm'):
                if os.path.exists(cache + suffix):
                    os.unlink(cache + suffix)
        fleet = [robot_process(index, cluster.url, cache, poll_s, key_text)
                 for index, cache in enumerate(caches)]
        _wait_ready(fleet)
        progress(f'{robots} robots following {cluster.url}')
        random = np.random.default_rng(seed)
        steady = _run_desks(cluster.url, range(1, desks + 1), patients, seed, desk_interval_s,
                            key_text)
        steady_converged = _wait_converged(cluster.url, key, fleet)
        progress(f'steady phase: {len(steady)} commits, converged in '
                 f'{steady_converged:.1f} s after the last')
        steady_fleet = list(fleet)
        faults = _fault_phase(cluster, fleet, caches, key_text, key, random, desks,
                              fault_patients, seed, desk_interval_s, robot_kills, poll_s,
                              progress)
        fault_converged = _wait_converged(cluster.url, key, fleet)
        progress(f'fault phase: converged {fault_converged:.1f} s after the last commit')
        identified = {}
        for robot in fleet:
            robot.finish()
            done = [line for line in robot.lines if line[0] == 'done']
            identified[robot.name] = tuple(map(int, done[-1][1:])) if done else (0, 0)
        summary = _verify(cluster.url, key, fleet, steady_fleet, caches, steady, faults)
        summary.update(robots=robots, desks=desks, patients=patients,
                       fault_patients=fault_patients, poll_s=poll_s,
                       steady_converged_s=round(steady_converged, 2),
                       fault_converged_s=round(fault_converged, 2),
                       identifications_offline=sum(off for _, off in identified.values()),
                       identifications_online=sum(on for on, _ in identified.values()))
        return summary
    finally:
        cluster.remove()


def _wait_ready(processes):
    deadline = time.monotonic() + READY_TIMEOUT_S
    for process in processes:
        if not process.ready.wait(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f'{process.name} did not start: {process.finish()}')


def _run_desks(url, numbers, patients, seed, interval_s, key_text, during=None):
    """Run desks to the end (calling ``during(desks)`` meanwhile); return their commits."""
    numbers = list(numbers)
    share = [patients // len(numbers) + (index < patients % len(numbers))
             for index in range(len(numbers))]
    desks = [desk_process(number, url, count, seed, interval_s, key_text)
             for number, count in zip(numbers, share)]
    if during is not None:
        during(desks)
    commits = []
    for desk in desks:
        errors = desk.finish(timeout=None)
        if desk.popen.returncode:
            raise RuntimeError(f'{desk.name} failed: {errors}')
        commits += [(int(line[1]), float(line[2]), line[3], line[4])
                    for line in desk.lines if line[0] == 'commit']
    return sorted(commits)


def _wait_converged(url, key, fleet):
    """Wait until every robot's newest snapshot is the server's revision; return seconds."""
    with PostgresGallery.open(url, MODEL, EMBEDDING_SIZE, key) as server:
        revision = server.revision
    started = time.monotonic()
    while time.monotonic() - started < CONVERGE_TIMEOUT_S:
        if all(_last_revision(robot) == revision for robot in fleet):
            return time.monotonic() - started
        time.sleep(0.05)
    behind = [robot for robot in fleet if _last_revision(robot) != revision]
    raise RuntimeError(f'{[robot.name for robot in behind]} did not reach revision '
                       f'{revision}; the first says: {behind[0].finish(10.0)}')


def _last_revision(robot):
    snaps = [line for line in list(robot.lines) if line[0] == 'snap']
    return int(snaps[-1][1]) if snaps else None


def _fault_phase(cluster, fleet, caches, key_text, key, random, desks, patients, seed,
                 interval_s, kills, poll_s, progress):
    """Desks write while the server restarts and robots are killed; return what happened."""
    events = {'kills': [], 'outage': None}

    def faults(desk_processes):
        time.sleep(1.0)
        for _ in range(kills):
            index = int(random.integers(len(fleet)))
            time.sleep(float(random.uniform(0.1, 1.0)))
            fleet[index].kill()
            killed_at = time.time()
            time.sleep(2.0)  # erasures go on meanwhile
            fleet[index] = robot_process(index, cluster.url, caches[index], poll_s, key_text)
            events['kills'].append((index, killed_at, time.time(), fleet[index]))
            _wait_ready([fleet[index]])
        progress(f'{kills} robot(s) SIGKILLed and restarted; stopping the server')
        stopped = time.time()
        cluster.stop('immediate')
        time.sleep(OUTAGE_S)
        cluster.start()
        events['outage'] = (stopped, time.time())
        progress(f'server back after {time.time() - stopped:.1f} s')

    commits = _run_desks(cluster.url, range(desks + 1, 2 * desks + 1), patients, seed + 1,
                         interval_s, key_text, during=faults)
    events['commits'] = commits
    return events


def _verify(url, key, fleet, steady_fleet, caches, steady, faults):
    """Check snapshots, caches and commits against the server; measure latencies."""
    with PostgresGallery.open(url, MODEL, EMBEDDING_SIZE, key) as server:
        audit = server.audit()
        final = server.snapshot()
    members, sets = set(), {0: digest([])}
    for entry in audit:  # the patients of every revision, from the audit trail
        (members.discard if entry.action == 'erase' else members.add)(entry.patient_id)
        sets[entry.revision] = digest(members)
    processes = set(fleet) | set(steady_fleet) | {kill[3] for kill in faults['kills']}
    snaps = [(robot.name, int(line[1]), float(line[2]), line[4])
             for robot in processes for line in robot.lines if line[0] == 'snap']
    mixed = sum(1 for _, revision, _, seen in snaps if sets.get(revision) != seen)
    caches_report = [_check_cache(cache, key, final) for cache in caches]
    commits = steady + faults['commits']
    logged = {(entry.revision, entry.action, entry.patient_id) for entry in audit}
    lost_commits = sum(1 for revision, _, action, patient in commits
                       if (revision, action, patient) not in logged)
    enrolments = [entry.patient_id for entry in audit if entry.action in ('enrol', 'add')]
    latencies, erasures = _latencies(steady, steady_fleet)
    erased_first = _erased_before_identifying(faults, sets)
    return {
        'final_revision': final.revision,
        'final_patients': len(final.patient_ids),
        'commits': len(commits),
        'commits_steady': len(steady),
        'audit_entries': len(audit),
        'snapshots_checked': len(snaps),
        'snapshots_not_a_server_revision': mixed,
        'lost': sum(report['lost'] for report in caches_report) + lost_commits,
        'duplicated': (sum(report['duplicated'] for report in caches_report)
                       + len(enrolments) - len(set(enrolments))),
        'resurrected': sum(report['resurrected'] for report in caches_report),
        'corrupt_caches': sum(not report['integrity_ok'] for report in caches_report),
        'caches_at_final_revision': sum(report['revision'] == final.revision
                                        for report in caches_report),
        'latency_ms': _percentiles(latencies),
        'erasure_latency_ms': _percentiles(erasures),
        'robot_kills': len(faults['kills']),
        'restarted_robots_erased_before_identifying': erased_first,
    }


def _check_cache(cache, key, final):
    """Compare a robot's cache file with the server's final snapshot, template by template."""
    with closing(sqlite3.connect(cache)) as db:
        integrity_ok = db.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    with Gallery.open(cache, MODEL, EMBEDDING_SIZE, create=False, key=key) as gallery:
        snapshot = gallery.snapshot()
    server_ids, cache_ids = set(final.patient_ids), set(snapshot.patient_ids)
    duplicated = 0
    for patient_id in server_ids & cache_ids:
        mine = snapshot.templates[snapshot.patient_ids[snapshot.owners] == patient_id]
        theirs = final.templates[final.patient_ids[final.owners] == patient_id]
        if len(mine) != len(theirs) or not np.allclose(mine, theirs, atol=1e-6):
            duplicated += 1
    return {'integrity_ok': integrity_ok, 'revision': snapshot.revision,
            'lost': len(server_ids - cache_ids), 'resurrected': len(cache_ids - server_ids),
            'duplicated': duplicated}


def _latencies(commits, robots):
    """Return commit-to-snapshot delays (s) over (commit, robot) pairs, and erasures' alone."""
    everything, erasures = [], []
    for robot in robots:
        snaps = np.array([(int(line[1]), float(line[2])) for line in robot.lines
                          if line[0] == 'snap'])
        if not len(snaps):
            continue
        for revision, committed, action, _ in commits:
            later = np.nonzero(snaps[:, 0] >= revision)[0]
            if not len(later):
                continue
            delay = snaps[later[0], 1] - committed
            everything.append(delay)
            if action == 'erase':
                erasures.append(delay)
    return everything, erasures


def _erased_before_identifying(faults, sets):
    """Return 'N/M': restarted robots whose first snapshot held every erasure made while down."""
    good = total = 0
    for _, killed_at, restarted_at, process in faults['kills']:
        missed = [revision for revision, committed, action, _ in faults['commits']
                  if action == 'erase' and killed_at <= committed <= restarted_at]
        first = next((line for line in process.lines if line[0] == 'snap'), None)
        if not missed or first is None:
            continue
        total += 1
        good += int(int(first[1]) >= max(missed) and sets.get(int(first[1])) == first[4])
    return f'{good}/{total}'


def _percentiles(values):
    if not values:
        return {'count': 0}
    milliseconds = np.array(values) * 1000.0
    return {'count': len(values), 'p50': round(float(np.percentile(milliseconds, 50)), 1),
            'p99': round(float(np.percentile(milliseconds, 99)), 1),
            'max': round(float(milliseconds.max()), 1)}


def summary_line(summary):
    """Return the one-line summary of :func:`sync_bench`."""
    latency, erasure = summary['latency_ms'], summary['erasure_latency_ms']
    return (
        f"gallery-sync-bench: {summary['robots']} robots, {summary['desks']} desks a phase, "
        f"{summary['patients']}+{summary['fault_patients']} patients, {summary['commits']} "
        f"commits: {summary['caches_at_final_revision']}/{summary['robots']} caches at the "
        f"final revision {summary['final_revision']}; lost {summary['lost']}, duplicated "
        f"{summary['duplicated']}, resurrected {summary['resurrected']}, snapshots not a "
        f"server revision {summary['snapshots_not_a_server_revision']}/"
        f"{summary['snapshots_checked']}, corrupt caches {summary['corrupt_caches']}; "
        f"commit->snapshot p50 {latency.get('p50')} ms p99 {latency.get('p99')} ms; erasure "
        f"p50 {erasure.get('p50')} ms p99 {erasure.get('p99')} ms max {erasure.get('max')} "
        f"ms; server restart: {summary['identifications_offline']} identifications from "
        f"caches while offline; {summary['robot_kills']} robot kills, erased before "
        f"identifying {summary['restarted_robots_erased_before_identifying']}")


def load_bench(url, cache, patients=10000, templates=5, probes=500, seed=0):
    """
    Time a ``patients`` x ``templates`` gallery on a robot; return the figures.

    Run it in a process with one BLAS thread (:func:`run_load_bench` does). Enrols through
    the server in batches, then: the robot's first sync into an empty cache, the snapshot
    load from the cache (what a robot does at every start and every new revision), its
    memory, the match time of one face, and one erasure from commit to snapshot.
    """
    from face_id_ros.core.config import MatcherConfig
    from face_id_ros.core.gallery_crypto import key_from_config
    from face_id_ros.core.gallery_sync import GallerySync
    from face_id_ros.core.matching import match
    from face_id_ros.evaluation.gallery_sync_roles import patient_templates
    config = GalleryConfig(url=url, path=cache)
    key = key_from_config(config)
    figures = {'patients': patients, 'templates_per_patient': templates}
    with PostgresGallery.open(url, MODEL, EMBEDDING_SIZE, key, operator='load bench') as desk:
        started = time.perf_counter()
        for first in range(0, patients, 500):
            with desk.batch():
                for number in range(first, min(patients, first + 500)):
                    patient_id = f'P-{number:05d}'
                    desk.add_templates(patient_id, patient_templates(patient_id, templates),
                                       [''] * templates, [1.0] * templates)
        figures['enrol_s'] = round(time.perf_counter() - started, 2)
        held = {}
        sync = GallerySync(config, MODEL, EMBEDDING_SIZE, lambda snap: held.update(snap=snap))
        started = time.perf_counter()
        sync.start(follow=False)
        figures['first_sync_s'] = round(time.perf_counter() - started, 2)
        held.clear()
        loads = []
        for _ in range(3):
            snapshot = None
            before = _rss_anon_mib()
            started = time.perf_counter()
            snapshot = sync.cache.snapshot()
            loads.append(time.perf_counter() - started)
            # The first load's growth: the snapshot and what its reading left allocated.
            figures.setdefault('snapshot_rss_growth_mib', round(_rss_anon_mib() - before, 1))
        figures['snapshot_load_s'] = round(float(np.median(loads)), 3)
        figures['snapshot_mib'] = round(snapshot.templates.nbytes / 2**20, 1)
        faces = np.random.default_rng(seed).normal(size=(probes, EMBEDDING_SIZE))
        faces = faces.astype(np.float32)
        matcher, times = MatcherConfig(), []
        for face in faces:
            started = time.perf_counter()
            match(face[None], snapshot, matcher, 0.5)
            times.append(time.perf_counter() - started)
        figures['match_ms_median'] = round(float(np.median(times)) * 1000, 3)
        figures['match_ms_p99'] = round(float(np.percentile(times, 99)) * 1000, 3)
        started = time.perf_counter()
        desk.remove_patient('P-00000')
        sync.sync_once()
        figures['erasure_to_snapshot_s'] = round(time.perf_counter() - started, 2)
        sync.stop()
    return figures


def run_load_bench(url, cache, patients, templates):
    """Print :func:`load_bench`'s figures as JSON (the body of its one-thread process)."""
    print(json.dumps(load_bench(url, cache, patients, templates)), flush=True)


def load_bench_process(out, patients, templates, progress=print):
    """Run :func:`load_bench` on a throw-away server in a one-thread process; return figures."""
    cluster = ThrowAwayCluster()
    try:
        cluster.start()
        key_text = new_key_text()
        migrate_server(cluster.url, parse_key(key_text, 'bench key'), MODEL, EMBEDDING_SIZE)
        cache = os.path.join(out, 'load_robot.db')
        for suffix in ('', '-wal', '-shm'):
            if os.path.exists(cache + suffix):
                os.unlink(cache + suffix)
        progress(f'load: {patients} patients x {templates} templates')
        call = ('from face_id_ros.evaluation.gallery_sync_bench import run_load_bench; '
                f'run_load_bench({cluster.url!r}, {cache!r}, {patients}, {templates})')
        process = Process('load', call, key_text, SINGLE_THREAD)
        errors = process.finish(timeout=None)
        if process.popen.returncode:
            raise RuntimeError(f'load bench failed: {errors}')
        return json.loads(' '.join(process.lines[-1]))
    finally:
        cluster.remove()


def load_summary_line(figures):
    """Return the one-line summary of :func:`load_bench`."""
    return (f"gallery-sync-bench load: {figures['patients']} patients x "
            f"{figures['templates_per_patient']} templates: first sync "
            f"{figures['first_sync_s']} s, snapshot load {figures['snapshot_load_s']} s "
            f"({figures['snapshot_mib']} MiB of templates, resident growth "
            f"{figures['snapshot_rss_growth_mib']} MiB), match {figures['match_ms_median']} ms "
            f"median / {figures['match_ms_p99']} ms p99 per face on one thread, one erasure "
            f"commit->snapshot {figures['erasure_to_snapshot_s']} s")


def _rss_anon_mib():
    with open('/proc/self/status') as stream:
        for line in stream:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) / 1024.0
    return 0.0
