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
From LFW photos to ward-round numbers in one call (``face-id ward-benchmark``).

It enrols some LFW people as patients through the enrolment quality gate (the code path of
``face-id enroll``), synthesises a ward round in which they visit (with photos not used for
enrolment) along with strangers, and replays it at both paces. When a share of the visits
wears synthetic masks (the bag's ``masked_share``), each patient can also be enrolled with
masked templates: the same synthetic masks painted on their enrolment photos, put through
the quality gate again and stored as masked; masked and unmasked visits are scored apart.
The recipe
(``config/ward_benchmark.yaml``) and the seed make the bag reproducible, so only the recipe
is committed.
"""

import contextlib
import dataclasses
import json
from pathlib import Path
import shutil

from face_id_ros.core.config import read_yaml
from face_id_ros.core.enrolment import photo_source
from face_id_ros.core.errors import ConfigError, EnrolmentRejected, FaceIdError
from face_id_ros.core.image_files import identity_folders, read_image
import numpy as np

SETTINGS = ('patients', 'enrol_photos', 'visits_per_patient', 'strangers', 'workers')
# true, false, or auto: masked templates exactly when some visits are masked.
MASKED_TEMPLATES = 'enrol_masked_templates'


def load_recipe(path=None):
    """Read the benchmark recipe: its settings and its ``bag`` WardRecipe mapping."""
    from face_id_ros.core.resources import package_share_file
    path = path or package_share_file('config/ward_benchmark.yaml')
    recipe = read_yaml(path, 'ward benchmark recipe') or {}
    known = [*SETTINGS, MASKED_TEMPLATES, 'bag']
    unknown = sorted(set(recipe) - set(known))
    if unknown:
        raise ConfigError(f'{path}: unknown key(s) {unknown}; known: {known}')
    recipe.setdefault('workers', 1)
    recipe.setdefault(MASKED_TEMPLATES, 'auto')
    for name in SETTINGS:
        if not isinstance(recipe.get(name), int) or recipe[name] < 0:
            raise ConfigError(f'{path}: {name} must be a whole number >= 0')
    if recipe[MASKED_TEMPLATES] not in (True, False, 'auto'):
        raise ConfigError(f'{path}: {MASKED_TEMPLATES} must be true, false or auto, got '
                          f'{recipe[MASKED_TEMPLATES]!r}')
    return recipe


def enrol_patients(pipeline, gallery, people, settings, seed, progress=True):
    """
    Enrol ``patients`` people with ``enrol_photos`` photos that pass the quality gate each.

    People are tried in a seeded random order among those with enough photos; a person
    whose photos fail the gate is passed over. With ``enrol_masked_templates`` each patient
    also gets the masked templates of ``add_masked_templates``. Returns ({patient id: photos left
    for visits}, the set of enrolled people's names, the number of masked templates).
    """
    from tqdm import tqdm
    from face_id_ros.core.quality import assess_photo
    random = np.random.default_rng([seed, 10])
    needed = settings['enrol_photos'] + settings['visits_per_patient']
    eligible = sorted(name for name, photos in people.items() if len(photos) >= needed)
    visit_photos, enrolled, masked_count = {}, set(), 0
    mask_random = np.random.default_rng([seed, 12])  # apart: masks change nobody's photos
    bar = tqdm(total=settings['patients'], desc='enrol', unit='patient',
               disable=not progress)
    for name in random.permutation(eligible):
        if len(visit_photos) == settings['patients']:
            break
        photos = list(random.permutation(people[name]))
        samples, used = [], 0
        while len(samples) < settings['enrol_photos'] and used < len(photos):
            try:
                samples.append((photos[used], assess_photo(read_image(photos[used]), pipeline,
                                                           pipeline.config.quality)))
            except EnrolmentRejected:
                pass
            used += 1
        if len(samples) < settings['enrol_photos'] or \
                len(photos) - used < settings['visits_per_patient']:
            continue
        patient_id = f'P-{len(visit_photos) + 1:04d}'
        gallery.add_templates(patient_id, [sample.embedding for _, sample in samples],
                              [photo_source(Path(photo).read_bytes()) for photo, _ in samples],
                              [sample.quality for _, sample in samples],
                              masked=[sample.masked for _, sample in samples])  # as enroll
        if settings[MASKED_TEMPLATES]:
            masked_count += add_masked_templates(pipeline, gallery, patient_id,
                                                 [photo for photo, _ in samples], mask_random)
        visit_photos[patient_id] = [str(photo) for photo in photos[used:]]
        enrolled.add(name)
        bar.update()
    bar.close()
    if len(visit_photos) < settings['patients']:
        raise FaceIdError(f'only {len(visit_photos)} people have {settings["enrol_photos"]} '
                          f'photos passing the quality gate and {settings["visits_per_patient"]}'
                          ' more for visits')
    return visit_photos, enrolled, masked_count


def add_masked_templates(pipeline, gallery, patient_id, photos, random):
    """
    Enrol ``patient_id`` from ``photos`` with a synthetic mask painted on; return how many.

    The mask is painted where the detector finds the face in each (accepted) enrolment photo,
    and the masked photo goes through the quality gate again, as a patient enrolling with a
    mask on would (``enroll --masked``: stored as masked whatever the model says); a photo
    whose masked face the gate refuses is left out.
    """
    from face_id_ros.core.quality import assess_photo
    from face_id_ros.evaluation.synthetic_masks import paint_mask_on_face
    samples = []
    for photo in photos:
        image = read_image(photo)
        face = pipeline.detector.detect(image)[0]  # an accepted photo shows one face
        try:
            samples.append((photo, assess_photo(paint_mask_on_face(image, face, random),
                                                pipeline, pipeline.config.quality)))
        except EnrolmentRejected:
            pass
    if samples:
        gallery.add_templates(patient_id, [sample.embedding for _, sample in samples],
                              [photo_source(Path(photo).read_bytes()) for photo, _ in samples],
                              [sample.quality for _, sample in samples],
                              masked=[True] * len(samples))
    return len(samples)


def run_ward_benchmark(config, lfw, settings, bag_recipe, out='ward_benchmark', progress=True,
                       rep155=False):
    """
    Enrol, synthesise, replay at both paces; print and save the numbers.

    ``config`` is the pipeline's (its gallery is made in ``out``), ``lfw`` holds
    images/<person>/, ``settings`` maps every name of SETTINGS and MASKED_TEMPLATES to its
    value (``auto`` is decided by the bag's masked share) and ``bag_recipe`` is the ward
    round's WardRecipe. With ``rep155`` the bag also carries the REP-155 face publisher's
    topics, and the REP-155 identifier is scored on them (cropped and aligned faces) beside
    the camera replay. Returns the summary written to ``out``/report.json.
    """
    from face_id_ros.core.gallery import Gallery
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.evaluation.bag_eval import (CameraBag, evaluate_bag, fresh_output_bag,
                                                 print_report, write_outputs)
    from face_id_ros.evaluation.labels import save_labels
    from face_id_ros.evaluation.wardbag import make_ward_bag, masks_worn, plan_visits
    out = Path(out)
    bag_path, gallery_path = out / 'ward_round', out / 'gallery.db'
    _clear(out, bag_path, gallery_path)
    # LFW research photos, rebuilt on every run: no patient to protect, so no key needed.
    config = config.replace(gallery={'path': str(gallery_path), 'encryption': 'off'})
    pipeline = Pipeline(config)
    people = identity_folders(Path(lfw) / 'images')
    if settings[MASKED_TEMPLATES] == 'auto':
        settings = {**settings, MASKED_TEMPLATES: bag_recipe.masked_share > 0}
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        visit_photos, enrolled, masked_templates = enrol_patients(
            pipeline, gallery, people, settings, bag_recipe.seed, progress)
        pipeline.set_gallery(gallery.snapshot())
    random = np.random.default_rng([bag_recipe.seed, 11])
    others = sorted(set(people) - enrolled)
    strangers = {name: people[name] for name in
                 random.choice(others, min(settings['strangers'], len(others)), replace=False)}
    visits = plan_visits(visit_photos, strangers, settings['visits_per_patient'],
                         bag_recipe.seed, bag_recipe.masked_share)
    from face_id_ros.evaluation.rep155_bag import Rep155Recorder
    with Rep155Recorder(config, bag_recipe.seed) if rep155 else contextlib.nullcontext() \
            as recorder:
        intervals = make_ward_bag(bag_path, visits, bag_recipe, progress, recorder)
    save_labels(out / 'ward_round.labels.yaml', intervals)
    print(f'ward round: {settings["patients"]} patients enrolled from '
          f'{settings["enrol_photos"]} photos each (+ {masked_templates} masked templates), '
          f'{len(visits) - len(strangers)} patient visits and {len(strangers)} stranger '
          f'visits ({masks_worn(visits, intervals)}), {bag_recipe.storage} '
          f'{bag_recipe.msgtype} at {bag_recipe.fps:g} frames/s (seed {bag_recipe.seed})')
    bag = CameraBag(bag_path, bag_recipe.camera_topic)
    reports = {}
    for pace in ('fast', 'recorded'):
        report, records = evaluate_bag(bag, intervals, pipeline, pace,
                                       fresh_output_bag(out / pace / 'patient_id'),
                                       progress, settings['workers'])
        write_outputs(out / pace, report, records, intervals)
        print_report(report)
        reports[pace] = report
    if rep155:
        reports.update(_rep155_reports(bag_path, intervals, pipeline, out, progress))
    summary = {'settings': settings, 'masked_templates': masked_templates,
               'bag': dataclasses.asdict(bag_recipe), **reports}
    (out / 'report.json').write_text(json.dumps(summary, indent=2))
    print(f'  reports, plots, labels, gallery and bags in {out}/')
    return summary


def _rep155_reports(bag_path, intervals, pipeline, out, progress):
    """Score the REP-155 identifier on the round, from cropped and from aligned faces."""
    from face_id_ros.evaluation.rep155_bag import evaluate_rep155_bag, print_rep155_report
    reports = {}
    for source in ('cropped', 'aligned'):
        report, _ = evaluate_rep155_bag(bag_path, intervals, pipeline, source, progress)
        print_rep155_report(report)
        (out / f'rep155_{source}').mkdir(exist_ok=True)
        (out / f'rep155_{source}' / 'report.json').write_text(json.dumps(report, indent=2))
        reports[f'rep155_{source}'] = report
    return reports


def _clear(out, bag_path, gallery_path):
    """Remove the previous run's bag and gallery so a rerun starts from the recipe alone."""
    out.mkdir(parents=True, exist_ok=True)
    if bag_path.exists():
        if not (bag_path / 'metadata.yaml').is_file():
            raise FaceIdError(f'{bag_path} exists and is not a bag; choose another --out')
        shutil.rmtree(bag_path)
    if gallery_path.exists():
        gallery_path.unlink()
