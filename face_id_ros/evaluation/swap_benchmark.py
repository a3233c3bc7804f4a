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
The stranger swap: a confirmed patient's photo, then a stranger's in the same place.

The library behind ``face-id swap-benchmark``. Some LFW people are enrolled as patients;
each case shows one patient's enrolment photo for a few frames (the patient is confirmed),
then a stranger's photo for a few frames, as ``face-id identify --sequence B B B S`` does.
LFW photos are centred alike, so the stranger's face lands in the patient's box with
landmarks much like theirs: only a look at the face itself can tell that it changed.

Each frame goes the way a camera frame goes on the robot: a ``sensor_msgs/Image`` through
the node's worker (``core.frame_worker``: decode, pipeline, the ``/patient_id`` message),
and that message to the medication gate's rules (``nodes.gate``) with an order and a
wristband scan for the patient. A stranger frame reported ``confirmed`` as the patient he
replaced (the carried identity), or a dispense granted on one, is a failure; the report
lists each with its photos. A stranger confirmed as another patient after his own frames
all matched that patient is the matcher's false accept, not the swap's (his photo alone is
named too): the report counts those apart.
"""

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path

from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.image_files import identity_folders, read_image
from face_id_ros.core.matching import match
from face_id_ros.core.tracking import CONFIRMED
from face_id_ros.evaluation.benchmarks import embed_photos
import numpy as np

FRAME_ID = 'swap_camera'


@dataclass
class SwapCase:
    """One patient-then-stranger sequence and what each path said about the stranger."""

    patient_id: str
    patient_photo: str
    stranger_photo: str
    patient_confirmed: bool = False
    stranger_alone: str = ''
    stranger_statuses: list = field(default_factory=list)
    stranger_fresh: list = field(default_factory=list)
    confirmed_as: str | None = None
    message_named: str | None = None
    gate_granted: bool = False

    @property
    def failed(self):
        """Whether any path named the replaced patient on one of the stranger's frames."""
        return (self.patient_id in (self.confirmed_as, self.message_named)
                or self.gate_granted)

    @property
    def named_as_another(self):
        """Whether the stranger was confirmed as a patient other than the one he replaced."""
        return bool(self.confirmed_as) and self.confirmed_as != self.patient_id


def choose_people(lfw, patients, enrol_photos, strangers, seed):
    """Return ({patient id: enrolment photos}, stranger photos), both seeded from LFW."""
    people = identity_folders(Path(lfw) / 'images')
    random = np.random.default_rng(seed)
    eligible = sorted(name for name, photos in people.items() if len(photos) >= enrol_photos)
    if len(eligible) < patients:
        raise FaceIdError(f'only {len(eligible)} people have {enrol_photos}+ photos')
    chosen = sorted(random.choice(eligible, patients, replace=False))
    others = sorted(set(people) - set(chosen))
    if len(others) < strangers:
        raise FaceIdError(f'{strangers} strangers asked for, {len(others)} people left')
    stranger_names = sorted(random.choice(others, strangers, replace=False))
    enrolled = {f'P-{index + 1:04d}': people[name][:enrol_photos]
                for index, name in enumerate(chosen)}
    return enrolled, [people[name][0] for name in stranger_names]


def enrolled_snapshot(pipeline, enrolled):
    """Embed each patient's enrolment photos (central face); return a gallery snapshot."""
    from face_id_ros.core.gallery import GallerySnapshot
    paths = [path for photos in enrolled.values() for path in photos]
    owners = np.repeat(np.arange(len(enrolled)), [len(photos) for photos in enrolled.values()])
    embeddings, _ = embed_photos(pipeline, paths, 'enrol patients')
    return GallerySnapshot(revision=1, patient_ids=np.array(list(enrolled)),
                           templates=embeddings, owners=owners)


class _Sequence:
    """Frames of one case through the node's worker and the gate, from stamp 0."""

    def __init__(self, worker, typestore, patient_id, fps):
        from face_id_ros.nodes.gate import GateConfig, MedicationGate, ModelInfo
        self.worker, self.typestore, self.fps = worker, typestore, fps
        self.index = 0
        self.gate = MedicationGate(GateConfig())
        self.gate.set_model(ModelInfo('swap-benchmark', 'memory', 1))
        self.gate.set_order(patient_id, 0.0)
        self.gate.scan_wristband(patient_id, 0.0)
        worker.pipeline.tracker.reset()

    def show(self, image):
        """Process one frame; return (pipeline faces, /patient_id class ids, gate decision)."""
        from face_id_ros.core.image_codec import encode_image
        from face_id_ros.evaluation.wardbag import make_header
        from face_id_ros.nodes.gate import face_frame_from_message
        stamp = self.index / self.fps
        self.index += 1
        header = make_header(self.typestore, round(stamp * 1e9), FRAME_ID)
        message = self.typestore.types['sensor_msgs/msg/Image'](header=header,
                                                                **encode_image(image))
        processed = self.worker.process(message)
        self.gate.observe(face_frame_from_message(processed.message))
        named = [detection.results[0].hypothesis.class_id
                 for detection in processed.message.detections if detection.results]
        return processed.result.faces, named, self.gate.decide(stamp)


def run_case(worker, typestore, case, images, patient_frames, stranger_frames, fps):
    """Show the patient, then the stranger; fill in ``case`` from what each path said."""
    sequence = _Sequence(worker, typestore, case.patient_id, fps)
    for _ in range(patient_frames):
        faces, _, _ = sequence.show(images[case.patient_photo])
    case.patient_confirmed = any(face.status == CONFIRMED and face.patient_id == case.patient_id
                                 for face in faces)
    stranger = read_image(case.stranger_photo)
    for _ in range(stranger_frames):
        faces, named, decision = sequence.show(stranger)
        case.stranger_statuses.append([face.status for face in faces])
        case.stranger_fresh.append([face.fresh for face in faces])
        confirmed = [face.patient_id for face in faces if face.status == CONFIRMED]
        case.confirmed_as = case.confirmed_as or (confirmed[0] if confirmed else None)
        patients = [class_id for class_id in named if class_id.startswith('P-')]
        case.message_named = case.message_named or (patients[0] if patients else None)
        case.gate_granted = case.gate_granted or decision.granted
    return case


def swap_benchmark(config, lfw, out='swap_benchmark', patients=5, enrol_photos=3,
                   strangers=400, patient_frames=3, stranger_frames=3, fps=15.0, seed=0,
                   progress=True):
    """
    Run every case; print the counts and the failures, write ``report.json``; return it.

    ``patients`` LFW people with at least ``enrol_photos`` photos are enrolled; each of
    ``strangers`` other people (one photo each) follows one patient (in turn), shown
    ``patient_frames`` frames, and is shown ``stranger_frames`` frames at ``fps``.
    """
    from tqdm import tqdm
    from face_id_ros.core.frame_worker import FrameWorker
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.core.ros_messages import rosbags_typestore
    if patient_frames < 1 or stranger_frames < 1 or strangers < 1 or patients < 1:
        raise FaceIdError('patients, strangers and frame counts must be at least 1')
    enrolled, stranger_photos = choose_people(lfw, patients, enrol_photos, strangers, seed)
    pipeline = Pipeline(config)
    pipeline.set_gallery(enrolled_snapshot(pipeline, enrolled))
    typestore = rosbags_typestore()
    worker = FrameWorker(pipeline, typestore.types)
    images = {photos[0]: read_image(photos[0]) for photos in enrolled.values()}
    ids = list(enrolled)
    cases = []
    for index, photo in enumerate(tqdm(stranger_photos, desc='swap cases', unit='stranger',
                                       disable=not progress)):
        patient_id = ids[index % len(ids)]
        case = SwapCase(patient_id, enrolled[patient_id][0], photo)
        case.stranger_alone = _alone(pipeline, photo)
        cases.append(run_case(worker, typestore, case, images, patient_frames,
                              stranger_frames, fps))
    report = _report(pipeline, cases, patient_frames, stranger_frames, fps, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    print_report(report, out)
    return report


def _alone(pipeline, photo):
    """Return what the matcher says of the stranger's photo on its own (best face)."""
    batch = pipeline.describe(read_image(photo))
    matches = match(batch.embeddings, pipeline.snapshot, pipeline.config.matcher,
                    pipeline.threshold, masked_threshold=pipeline.masked_threshold)
    named = [face.decision for face in matches if face.decision.startswith('P-')]
    return named[0] if named else 'unknown'


def _report(pipeline, cases, patient_frames, stranger_frames, fps, seed):
    metadata = pipeline.embedder.metadata
    usable = [case for case in cases if case.patient_confirmed]
    return {
        'model': metadata.name, 'model_version': metadata.version,
        'threshold': pipeline.threshold, 'tracker': asdict(pipeline.config.tracker),
        'patients': len(pipeline.snapshot.patient_ids), 'strangers': len(cases),
        'patient_frames': patient_frames, 'stranger_frames': stranger_frames, 'fps': fps,
        'seed': seed,
        'patient_confirmed_before_swap': len(usable),
        'stranger_named_alone': sum(case.stranger_alone != 'unknown' for case in cases),
        'stranger_embedded_at_once': sum(bool(case.stranger_fresh[0])
                                         and all(case.stranger_fresh[0]) for case in cases),
        'stranger_confirmed': sum(case.confirmed_as == case.patient_id for case in cases),
        'stranger_named_on_patient_id': sum(case.message_named == case.patient_id
                                            for case in cases),
        'stranger_confirmed_as_another': sum(case.named_as_another for case in cases),
        'gate_granted_to_stranger': sum(case.gate_granted for case in cases),
        'failures': [asdict(case) for case in cases if case.failed],
        'confirmed_as_another': [asdict(case) for case in cases if case.named_as_another],
    }


def print_report(report, out):
    """Print the counts, then every failure with its photos."""
    strangers = report['strangers']
    print(f'stranger swap: {report["patients"]} patients, {strangers} strangers, each after '
          f'{report["patient_frames"]} frames of a patient and shown '
          f'{report["stranger_frames"]} frames at {report["fps"]:g} fps; model '
          f'{report["model"]} {report["model_version"]}, threshold {report["threshold"]:.3f}')
    print(f'  patient confirmed before the swap: {report["patient_confirmed_before_swap"]}'
          f'/{strangers}')
    for key, label in (('stranger_embedded_at_once', "stranger's first frame embedded"),
                       ('stranger_confirmed',
                        'stranger confirmed as the patient he replaced (pipeline)'),
                       ('stranger_named_on_patient_id',
                        'stranger named as that patient on /patient_id'),
                       ('gate_granted_to_stranger', 'dispense granted to the stranger (gate)'),
                       ('stranger_named_alone', 'stranger photo named alone (matcher)'),
                       ('stranger_confirmed_as_another',
                        'stranger confirmed as another patient on his own frames (matcher)')):
        print(f'  {label}: {report[key]}/{strangers} '
              f'({100.0 * report[key] / strangers:.1f}%)')
    for case in report['failures'] + report['confirmed_as_another']:
        print(f'    {case["stranger_photo"]} after {case["patient_id"]} '
              f'({case["patient_photo"]}): confirmed as {case["confirmed_as"]}, '
              f'gate {"granted" if case["gate_granted"] else "denied"}')
    print(f'  report in {out}/report.json')
