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
LFW verification, open-set identification, calibration and latency: numbers to reproduce.

The library behind ``face-id eval-pairs``, ``eval-openset``, ``calibrate-landmarks``,
``calibrate-threshold`` and ``bench``: each takes a pipeline config (or a model) and plain
values, prints its report and returns it.
"""

import json
import os
from pathlib import Path
import resource
from statistics import NormalDist
import time
import types

import cv2
from face_id_ros.core.alignment import centre_landmarks
from face_id_ros.core.enrolment import photo_source
from face_id_ros.core.errors import FaceIdError
from face_id_ros.core.image_files import identity_folders, image_files, read_image
from face_id_ros.evaluation import metrics
from face_id_ros.evaluation.synthetic_masks import paint_mask_on_face, paint_masks_on_crops
import numpy as np

# The ArcFace crop inside the aligned canvases.
CROP_SIDE = 112
BENCH_FPS = 30.0  # a camera's rate: the tracker's re-check period runs on these stamps


# Thresholds the open-set check sweeps: finer near 1, where fail-closed models operate.
OPENSET_SWEEP = np.round(np.r_[np.arange(0.20, 0.95, 0.05), np.arange(0.95, 0.995, 0.01)], 2)


def _provenance(pipeline):
    """Which model file and detector made a report's numbers."""
    embedder = pipeline.embedder
    return {'model': embedder.metadata.name, 'model_version': embedder.metadata.version,
            'model_file': embedder.path, 'model_sha256': embedder.fingerprint,
            'detector': pipeline.config.detector.backend}


def align_photos(pipeline, paths, description, mask_seed=None, rep155_cropped=False):
    """
    Align the central face of each photo; return (crops, count of centre-crop fallbacks).

    The labelled person of a loosely cropped photo is the face nearest the centre. When the
    detector finds none, the central square is used: a photo is never dropped. With
    ``mask_seed`` each found face gets a synthetic mask first, and is detected again in the
    masked photo (masks change what the detector sees). With ``rep155_cropped`` a found face
    goes the way a REP-155 identifier gets it: the 128x128 ``cropped`` image of its box,
    re-aligned with the landmarks (``core.rep155.align_cropped``).
    """
    from tqdm import tqdm
    from face_id_ros.core.rep155 import align_cropped, cropped_face
    width, height = pipeline.embedder.input_size
    crops = np.zeros((len(paths), height, width, 3), np.uint8)
    rng = None if mask_seed is None else np.random.default_rng(mask_seed)
    fallbacks = 0
    for index, path in enumerate(tqdm(paths, desc=description, unit='photo')):
        image = read_image(path)
        face = _central_face(pipeline, image)
        if face is not None and rng is not None:
            image = paint_mask_on_face(image, face, rng)
            face = _central_face(pipeline, image)
        if face is None:
            fallbacks += 1
            landmarks = centre_landmarks(image, pipeline.template, (width, height))
        elif rep155_cropped:
            crops[index] = align_cropped(cropped_face(image, face.box), face.box,
                                         face.landmarks, pipeline.template, (width, height))
            continue
        else:
            landmarks = face.landmarks
        crops[index] = pipeline.align(image, [landmarks])[0]
    return crops, fallbacks


def _central_face(pipeline, image):
    """Return the detected face nearest the photo's centre, or None."""
    faces = pipeline.detector.detect(image)
    if not faces:
        return None
    centre = np.array(image.shape[1::-1], np.float32) / 2.0
    return min(faces, key=lambda item: np.linalg.norm(
        (item.box[:2] + item.box[2:]) / 2.0 - centre))


def embed_photos(pipeline, paths, description, mask_seed=None, rep155_cropped=False):
    """Embed the central face of each photo; return (embeddings, centre-crop fallbacks)."""
    crops, fallbacks = align_photos(pipeline, paths, description, mask_seed, rep155_cropped)
    return embed_crops(pipeline.embedder, crops), fallbacks


def embed_crops(embedder, crops, chunk=256):
    """Embed aligned crops a chunk at a time (bounded memory); return ``(N, D)``."""
    return np.concatenate([embedder.embed(crops[start:start + chunk])
                           for start in range(0, len(crops), chunk)]
                          or [np.zeros((0, embedder.embedding_size), np.float32)])


def lfw_photos(lfw):
    """Return (pairs, sorted unique photo paths) of LFW View 2 under the folder ``lfw``."""
    lfw = Path(lfw)
    pairs = metrics.read_lfw_pairs(lfw / 'pairs.txt', lfw / 'images')
    return pairs, sorted({pair.path_a for pair in pairs} | {pair.path_b for pair in pairs})


def lfw_verification(pairs, paths, embeddings, second_embeddings=None):
    """
    Return (cosine scores, same flags, {metric: 10-fold result}) of embedded LFW photos.

    ``second_embeddings`` (same rows as ``embeddings``) embed each pair's second photo.
    """
    row = {path: index for index, path in enumerate(paths)}
    if second_embeddings is None:
        second_embeddings = embeddings
    first = embeddings[[row[pair.path_a] for pair in pairs]]
    second = second_embeddings[[row[pair.path_b] for pair in pairs]]
    cosine, euclidean = metrics.pair_scores(first, second)
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    results = {}
    for name, scores, higher in (('cosine', cosine, True), ('euclidean', euclidean, False)):
        result = metrics.kfold_verification(scores, same, folds, higher_is_better=higher)
        tar, threshold = metrics.tar_at_far(scores, same, 1e-3, higher_is_better=higher)
        result.update(tar_at_far_1e_3=tar, threshold_at_far_1e_3=threshold)
        results[name] = _jsonable(result)
    return cosine, same, results


def at_threshold(cosine, same, threshold):
    """Return how many genuine and impostor pairs one fixed cosine threshold accepts."""
    genuine, impostor = cosine[same] >= threshold, cosine[~same] >= threshold
    return {'threshold': float(threshold),
            'genuine_accepted': int(genuine.sum()), 'genuine_pairs': int(len(genuine)),
            'impostor_accepted': int(impostor.sum()), 'impostor_pairs': int(len(impostor))}


def eval_pairs(config, lfw, out='eval_pairs', flip_sum=False, masked=False,
               rep155_cropped=False):
    """
    LFW View 2: threshold on 9 folds, score the 10th; cosine and Euclidean.

    ``lfw`` holds pairs.txt and images/; ``out`` receives report.json, the ROC and the score
    histogram. With ``masked`` the second photo of every pair wears a synthetic mask (a
    masked patient against bare enrolment photos); with ``rep155_cropped`` the second photo
    is embedded from its REP-155 ``cropped`` image, re-aligned (a REP-155 face against a gallery
    aligned from photos), and ``both_rep155_cropped`` scores pairs with both photos so.
    Prints and returns the report.
    """
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.evaluation import plots
    if masked and rep155_cropped:
        raise FaceIdError('--masked and --rep155-cropped both change the second photo; '
                          'choose one')
    pairs, paths = lfw_photos(lfw)
    pipeline = Pipeline(config.replace(embedder={'flip_sum': bool(flip_sum)}))
    embeddings, fallbacks = embed_photos(pipeline, paths, 'embed LFW')
    second = None
    if masked or rep155_cropped:
        second, second_fallbacks = embed_photos(
            pipeline, paths, 'embed LFW ' + ('masked' if masked else 'REP-155 cropped'),
            mask_seed=0 if masked else None, rep155_cropped=rep155_cropped)
        fallbacks += second_fallbacks
    cosine, same, results = lfw_verification(pairs, paths, embeddings, second)
    if second is not None:  # the bare protocol comes free with the bare embeddings
        results['bare'] = lfw_verification(pairs, paths, embeddings)[2]['cosine']
    if rep155_cropped:
        both, _, both_results = lfw_verification(pairs, paths, second)
        results['both_rep155_cropped'] = {
            **both_results['cosine'],
            'at_model_threshold': at_threshold(both, same, pipeline.threshold)}
    report = {**_provenance(pipeline), 'flip_sum': bool(flip_sum),
              'second_photo_masked': bool(masked), 'rep155_cropped': bool(rep155_cropped),
              'images': len(paths),
              'centre_crop_fallbacks': fallbacks, 'pairs': len(pairs), **results,
              'at_model_threshold': at_threshold(cosine, same, pipeline.threshold)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    far, tar, _ = metrics.roc_curve(cosine, same)
    label = f'{report["model"]} + {report["detector"]}'
    plots.plot_roc({label: (far, tar)}, out / 'roc.png', 'LFW View 2 ROC (cosine)')
    plots.plot_score_histogram(cosine, same, report['cosine']['threshold_mean'],
                               out / 'cosine_histogram.png', 'LFW pair similarity',
                               'cosine similarity')
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    _print_pairs_report(report, out)
    return report


def _print_pairs_report(report, out):
    print(f'LFW View 2, {report["pairs"]} pairs, model {report["model"]} '
          f'{report["model_version"]}, detector {report["detector"]}, '
          f'flip-sum {report["flip_sum"]}, second photo masked '
          f'{report["second_photo_masked"]}, second photo REP-155 cropped '
          f'{report["rep155_cropped"]}, centre-crop fallbacks '
          f'{report["centre_crop_fallbacks"]}/{report["images"]} images')
    for name in ('cosine', 'euclidean'):
        result = report[name]
        print(f'  {name:9s} accuracy {100 * result["accuracy_mean"]:.2f}% '
              f'± {100 * result["accuracy_std"]:.2f}  threshold {result["threshold_mean"]:.4f}'
              f'  TAR@FAR=1e-3 {100 * result["tar_at_far_1e_3"]:.2f}% '
              f'(threshold {result["threshold_at_far_1e_3"]:.4f})')
    if 'bare' in report:
        bare = 'no mask' if report['second_photo_masked'] else 'both aligned from the photo'
        print(f'  bare pairs ({bare}), cosine accuracy '
              f'{100 * report["bare"]["accuracy_mean"]:.2f}% '
              f'± {100 * report["bare"]["accuracy_std"]:.2f}')
    fixed = report['at_model_threshold']
    print(f'  at the threshold the pipeline uses ({fixed["threshold"]:.4f}): genuine pairs '
          f'accepted {fixed["genuine_accepted"]}/{fixed["genuine_pairs"]} '
          f'({100 * fixed["genuine_accepted"] / max(1, fixed["genuine_pairs"]):.1f}%), '
          f'impostor pairs accepted {fixed["impostor_accepted"]}/{fixed["impostor_pairs"]}')
    if 'both_rep155_cropped' in report:
        both = report['both_rep155_cropped']
        fixed = both['at_model_threshold']
        print(f'  both photos REP-155 cropped: cosine accuracy '
              f'{100 * both["accuracy_mean"]:.2f}% ± {100 * both["accuracy_std"]:.2f}; at '
              f'{fixed["threshold"]:.4f} genuine {fixed["genuine_accepted"]}/'
              f'{fixed["genuine_pairs"]}, impostor {fixed["impostor_accepted"]}/'
              f'{fixed["impostor_pairs"]}')
    print(f'  report, ROC and histogram in {out}/')


def eval_openset(config, lfw, out='eval_openset', patients=20, enrol_photos=3, min_photos=6,
                 strangers=200, seed=0):
    """
    Enrol some LFW people, then identify their other photos and strangers' photos.

    Reports the rank-1 identification rate of enrolled people and the share of strangers'
    single photos accepted as some patient, at the configured threshold and margin, plus a
    sweep of thresholds so an operating point can be chosen from numbers. ``patients``
    people with at least ``min_photos`` photos are enrolled from ``enrol_photos`` each;
    ``strangers`` others are probed. Prints the numbers and returns the report.
    """
    from face_id_ros.core.gallery import Gallery
    from face_id_ros.core.matching import match
    from face_id_ros.core.pipeline import Pipeline
    people = identity_folders(Path(lfw) / 'images')
    random = np.random.default_rng(seed)
    eligible = [name for name, photos in people.items() if len(photos) >= min_photos]
    if len(eligible) < patients:
        raise FaceIdError(f'only {len(eligible)} people have {min_photos}+ photos')
    chosen = sorted(random.choice(eligible, patients, replace=False))
    others = sorted(set(people) - set(chosen))
    stranger_names = sorted(random.choice(others, min(strangers, len(others)),
                                          replace=False))
    pipeline = Pipeline(config)
    patient_ids = {name: f'P-{index + 1:04d}' for index, name in enumerate(chosen)}
    enrol_paths, probe_paths, truths = [], [], []
    for name in chosen:
        photos = list(random.permutation(people[name]))
        enrol_paths += photos[:enrol_photos]
        probe_paths += photos[enrol_photos:]
        truths += [patient_ids[name]] * (len(photos) - enrol_photos)
    for name in stranger_names:
        probe_paths += people[name]
        truths += [None] * len(people[name])
    enrol, _ = embed_photos(pipeline, enrol_paths, 'enrol')
    probes, fallbacks = embed_photos(pipeline, probe_paths, 'probes')
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gallery_path = out / 'gallery.db'
    if gallery_path.exists():
        gallery_path.unlink()
    with Gallery.open(gallery_path, pipeline.embedder.fingerprint,
                      pipeline.embedder.embedding_size) as gallery:
        for index, name in enumerate(chosen):
            rows = slice(index * enrol_photos, (index + 1) * enrol_photos)
            gallery.add_templates(patient_ids[name], enrol[rows],
                                  [photo_source(Path(photo).read_bytes())
                                   for photo in enrol_paths[rows]],
                                  [1.0] * enrol_photos)
        snapshot = gallery.snapshot()
    matches = match(probes, snapshot, pipeline.config.matcher, pipeline.threshold)
    decisions = [face.decision for face in matches]
    names = {patient_id: name for name, patient_id in patient_ids.items()}
    report = {**_provenance(pipeline),
              'threshold': pipeline.threshold, 'margin': pipeline.config.matcher.margin,
              'patients': len(chosen), 'strangers': len(stranger_names),
              'centre_crop_fallbacks': fallbacks,
              'at_default': metrics.identification_report(truths, decisions),
              'false_accepts': _false_accepts(probe_paths, truths, matches, names),
              'sweep': []}
    for threshold in OPENSET_SWEEP:
        swept = [face.decision for face in
                 match(probes, snapshot, pipeline.config.matcher, float(threshold))]
        report['sweep'].append({'threshold': float(threshold),
                                **metrics.identification_report(truths, swept)})
    (out / 'report.json').write_text(json.dumps(_jsonable(report), indent=2))
    _print_openset_report(report)
    return report


def _false_accepts(paths, truths, matches, names):
    """Every probe given a patient id that is not its own: the photos a person should see."""
    return [{'photo': str(path), 'truth': names.get(truth, 'stranger'),
             'accepted_as': f'{face.decision} ({names[face.decision]})',
             'score': face.best_score}
            for path, truth, face in zip(paths, truths, matches)
            if face.decision not in ('unknown', truth)]


def _print_openset_report(report):
    result = report['at_default']
    print(f'open-set identification: {report["patients"]} patients enrolled, '
          f'{report["strangers"]} strangers; threshold {report["threshold"]:.3f}, '
          f'margin {report["margin"]:.3f}')
    print(f'  enrolled probes {result["enrolled_probes"]}: rank-1 '
          f'{100 * result["rank1_rate"]:.2f}%, wrong patient {result["wrong_patient"]}, '
          f'unknown {result["rejected_enrolled"]}')
    print(f'  stranger photos {result["stranger_probes"]}: accepted as a patient '
          f'{result["stranger_accepted"]} ({100 * result["stranger_acceptance_rate"]:.3f}%)')
    for accepted in report['false_accepts']:
        print(f'    {accepted["truth"]} accepted as {accepted["accepted_as"]} at '
              f'{accepted["score"]:.3f}: {accepted["photo"]}')
    print('  threshold  rank-1   wrong  strangers accepted')
    for row in report['sweep']:
        print(f'  {row["threshold"]:9.2f}  {100 * row["rank1_rate"]:6.2f}%  '
              f'{row["wrong_patient"]:5d}  {row["stranger_accepted"]:5d} '
              f'({100 * row["stranger_acceptance_rate"]:.3f}%)')


def calibrate_landmarks(faces, backend='blazeface', yunet_model='', margin=8, limit=1500):
    """
    Print the median landmark positions, in ArcFace-112 pixels, over aligned training faces.

    The training faces were aligned by YuNet's 5 points; BlazeFace's 4 points land elsewhere
    on them (its nose point is lower), and these medians become its alignment template.
    ``faces`` is a folder of aligned canvases whose 112x112 crop starts ``margin`` pixels in;
    at most ``limit`` of them are used. Returns the medians, one (x, y) row per landmark.
    """
    from tqdm import tqdm
    from face_id_ros.core.config import DetectorConfig
    from face_id_ros.core.detection import make_detector
    from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
    paths = image_files([faces])
    paths = paths[::max(1, len(paths) // limit)][:limit]
    detector = make_detector(DetectorConfig(backend=backend, yunet_model=yunet_model,
                                            min_score=0.5, min_face_size=16))
    pad = 64  # context around the tight canvas, as a camera frame would have
    found = []
    for path in tqdm(paths, desc='detect', unit='face'):
        canvas = cv2.copyMakeBorder(read_image(path), pad, pad, pad, pad,
                                    cv2.BORDER_REPLICATE)
        detected = detector.detect(canvas)
        if detected:
            found.append(detected[0].landmarks - pad - margin)
    if not found:
        raise FaceIdError(f'no face found in {faces}')
    median = np.median(np.array(found), axis=0)
    print(f'{len(found)} of {len(paths)} faces detected; median landmarks in ArcFace-112 '
          f'pixels (template for comparison: {np.round(ARCFACE_TEMPLATE_112, 2).tolist()}):')
    for x, y in median:
        print(f'    ({x:.2f}, {y:.2f}),')
    return median


def calibrate_threshold(model, faces, count=4000, far=1e-5, margin=8, seed=0):
    """
    Print and return the cosine thresholds that accept ``far`` of pairs of different people.

    Every pair of faces from different sub-folders is an impostor pair. Use faces of one
    source, processed alike, that the model never trained on (e.g. the CelebA faces a run
    held out): pairs across datasets also differ in how their images were made, which a
    student net can encode, and then the threshold comes out far too low. Evaluation sets
    are not used, so the threshold is not tuned on the data it is judged on. ``faces`` holds
    aligned canvases in one sub-folder per person (crop ``margin`` pixels in); at most
    ``count`` of them are sampled with ``seed``.

    Returns ``(threshold, masked_threshold)``: the second is for a face against masked
    templates, from the same faces with two synthetic masks each, every masked face of one
    person against every differently masked face of another (never below the first).
    """
    from tqdm import tqdm
    from face_id_ros.core.embedding import OnnxEmbedder
    embedder = OnnxEmbedder(model)
    people = identity_folders(faces)
    if len(people) < 2:
        raise FaceIdError(f'{faces} holds {len(people)} person: impostor pairs need two')
    photos = [(person, path) for person, paths in people.items() for path in paths]
    random = np.random.default_rng(seed)
    chosen = sorted(random.choice(len(photos), min(count, len(photos)), replace=False))
    crops = np.array([read_image(photos[index][1])[margin:margin + CROP_SIDE,
                                                   margin:margin + CROP_SIDE]
                      for index in tqdm(chosen, desc='read', unit='face')])
    bare, masked, masked_again = (
        _embed_canvas_crops(embedder, views, label) for views, label in (
            (crops, 'embed'), (paint_masks_on_crops(crops, random), 'embed masked'),
            (paint_masks_on_crops(crops, random), 'embed masked again')))
    owners = np.unique([photos[index][0] for index in chosen], return_inverse=True)[1]
    different = owners[:, None] != owners[None, :]
    print(f'{len(chosen)} faces of {owners.max() + 1} people')
    threshold = _threshold_at_far((bare @ bare.T)[np.triu(different, 1)], far, 'bare faces')
    masked_scores = (masked @ masked_again.T)[different]
    masked_threshold = max(threshold, _threshold_at_far(masked_scores, far, 'masked faces'))
    print(f'  masked pairs that reach the bare threshold: '
          f'{np.mean(masked_scores >= threshold):.3%}')
    against_bare = (masked @ bare.T)[different]
    print(f'  masked faces against bare faces of others: mean {against_bare.mean():.4f}, max '
          f'{against_bare.max():.4f}; reach the bare threshold: '
          f'{np.mean(against_bare >= threshold):.3%}')
    print(f'threshold at FAR {far:g}: {threshold:.4f}')
    print(f'masked-template threshold at FAR {far:g}: {masked_threshold:.4f}')
    if threshold >= 1.0:
        print('  no cosine reaches it: with this threshold the model names nobody. Calibrate '
              'on more people, or this model cannot be trusted at this FAR')
    elif masked_threshold >= 1.0:
        print('  no cosine reaches the masked one: masked templates would name nobody')
    return threshold, masked_threshold


def _embed_canvas_crops(embedder, crops, label):
    """Embed 112 px crops one by one, scaled first for a net with a smaller input."""
    from tqdm import tqdm
    width, height = embedder.input_size
    rows = []
    for crop in tqdm(crops, desc=label, unit='face'):
        if (width, height) != (CROP_SIDE, CROP_SIDE):  # a smaller net sees the crop scaled
            crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        rows.append(embedder.embed(crop[None])[0])
    return np.array(rows)


def _threshold_at_far(scores, far, label):
    """Print the impostor scores' tail; return the cosine they pass with rate ``far``."""
    empirical = float(np.quantile(scores, 1.0 - far))
    # A normal tail fitted to the impostor scores; the measured tails were lighter, so where
    # too few pairs resolve the FAR this errs towards `unknown`.
    normal_tail = float(scores.mean() + NormalDist().inv_cdf(1.0 - far) * scores.std())
    resolved = scores.size * far >= 10
    print(f'  {label}: {scores.size} impostor pairs, cosine mean {scores.mean():.4f}, '
          f'std {scores.std():.4f}, max {scores.max():.4f}; at FAR {far:g}: measured '
          f'quantile {empirical:.4f}, normal tail {normal_tail:.4f}')
    if not resolved:
        print(f'    {scores.size} pairs are too few to measure a FAR of {far:g} (fewer than '
              '10 expected false accepts): using the higher of the two')
    return empirical if resolved else max(empirical, normal_tail)


def interleaved_latency(paths, rounds=30, runs=100):
    """
    Time ``embed_and_mask`` of one face per model; return {path: per-round medians (ms)}.

    The models take turns round after round, so a machine whose load changes (two cores
    shared with other jobs) slows them alike and the paired ratio stays honest.
    """
    from face_id_ros.core.embedding import OnnxEmbedder
    from tqdm import tqdm
    models = {path: OnnxEmbedder(path) for path in paths}
    crops = {path: np.full((1,) + model.input_size[::-1] + (3,), 128, np.uint8)
             for path, model in models.items()}
    medians = {path: [] for path in paths}
    for _ in tqdm(range(rounds), desc='latency rounds', unit='round'):
        for path, model in models.items():
            crop = crops[path]
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                model.embed_and_mask(crop)
                times.append(time.perf_counter() - started)
            medians[path].append(1000.0 * float(np.median(times)))
    return {path: np.array(values) for path, values in medians.items()}


def bench(config, size=(640, 480), faces=1, face_width=300, encoding='bgr8', frames=300,
          photos=None, enrol=False):
    """
    Time every stage on synthetic frames of real faces; print median and p95.

    Each frame is ``size`` (width, height) with ``faces`` faces: the sample portrait
    ``face_width`` pixels wide, or with ``photos`` (BGR images of different people) tiles cut
    around their faces, one person each. It is encoded as a camera message would be
    (``bgr8`` or ``jpeg``) and decoded again; ``frames`` are timed after 10 warm-up frames,
    stamped at ``BENCH_FPS``. With ``enrol`` every person shown is enrolled (from this
    frame), so the tracks become confirmed: a ward round. Returns {stage: milliseconds}.
    """
    from tqdm import tqdm
    from face_id_ros.core.image_codec import decode_any, encode_compressed, encode_image
    from face_id_ros.core.pipeline import Pipeline
    pipeline = Pipeline(config)
    frame, people = _bench_frame(pipeline, size, faces, face_width, photos)
    fields = encode_image(frame) if encoding == 'bgr8' else encode_compressed(frame)
    message = types.SimpleNamespace(**fields)
    batch = pipeline.describe(decode_any(message))
    found = len(batch.faces)
    if found != faces:
        print(f'warning: the detector finds {found} of {faces} faces in the bench frame')
    if enrol:
        pipeline.set_gallery(_bench_gallery(batch.embeddings[:people]))
    stages = ('decode', 'detect', 'look', 'align', 'embed', 'match', 'total')
    timings = {stage: [] for stage in stages}
    confirmed = []
    for index in tqdm(range(frames + 10), desc='bench', unit='frame'):
        started = time.perf_counter()
        image = decode_any(message)
        decoded = time.perf_counter()
        result = pipeline.process(image, index / BENCH_FPS)
        total = (time.perf_counter() - started) * 1000.0
        if index >= 10:  # the first frames warm caches and thread pools
            timings['decode'].append((decoded - started) * 1000.0)
            for stage, value in result.timings_ms.items():
                timings[stage].append(value)
            timings['total'].append(total)
            confirmed.append(sum(face.status == 'confirmed' for face in result.faces))
    _print_bench(pipeline, size, encoding, found, timings)
    if enrol:
        print(f'  confirmed faces per timed frame: median {np.median(confirmed):.0f} of '
              f'{found}')
    return timings


def _bench_frame(pipeline, size, faces, face_width, photos):
    """Return the bench frame and how many different people it shows (in grid order)."""
    from face_id_ros.evaluation.samples import compose_frame, grid_centres, sample_portrait
    centres = grid_centres(size, faces)
    if not photos:
        return compose_frame(sample_portrait(), size, centres, face_width), 1
    from face_id_ros.evaluation.soak import face_tiles
    width, height = size
    columns = int(np.ceil(np.sqrt(faces * width / height)))
    side = int(min(width / columns, height / int(np.ceil(faces / columns))))
    tiles = face_tiles(pipeline.detector, photos, side)
    if len(tiles) < faces:
        raise FaceIdError(f'{faces} faces asked for, {len(tiles)} photos with a face given')
    frame = np.full((height, width, 3), 96, np.uint8)
    for tile, (centre_x, centre_y) in zip(tiles, centres):
        x0, y0 = int(centre_x - side / 2), int(centre_y - side / 2)
        frame[y0:y0 + side, x0:x0 + side] = tile
    return frame, faces


def _bench_gallery(embeddings):
    """Return a snapshot enrolling each embedding as its own patient (P-0001, ...)."""
    from face_id_ros.core.gallery import GallerySnapshot
    count = len(embeddings)
    return GallerySnapshot(revision=1,
                           patient_ids=np.array([f'P-{index + 1:04d}' for index in range(count)]),
                           templates=np.asarray(embeddings, np.float32),
                           owners=np.arange(count))


def _print_bench(pipeline, size, encoding, found, timings):
    metadata = pipeline.embedder.metadata
    print(f'bench: {size[0]}x{size[1]} {encoding}, {found} face(s), '
          f'{pipeline.config.embedder.threads} thread(s), detector '
          f'{pipeline.config.detector.backend}/{pipeline.config.detector.blazeface_range}, '
          f'model {metadata.name} {metadata.version}, {len(timings["total"])} frames')
    print('  stage     median ms   p95 ms')
    for stage, values in timings.items():
        print(f'  {stage:8s} {np.median(values):10.3f} {np.percentile(values, 95):8.3f}')
    print(f'  frames/s (median total) {1000.0 / np.median(timings["total"]):.1f}')
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f'  peak memory {peak_kib / 1024:.0f} MiB (process max RSS)')


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


os.environ.setdefault('MPLBACKEND', 'Agg')
