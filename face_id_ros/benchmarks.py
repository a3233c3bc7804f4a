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

"""``face-id eval-pairs``, ``eval-openset`` and ``bench``: numbers people can reproduce."""

import json
import os
from pathlib import Path
import resource
from statistics import NormalDist
import time
import types

from face_id_ros.core.alignment import centre_landmarks
from face_id_ros.core.errors import FaceIdError
import numpy as np


# Thresholds the open-set check sweeps: finer near 1, where fail-closed models operate.
OPENSET_SWEEP = np.round(np.r_[np.arange(0.20, 0.95, 0.05), np.arange(0.95, 0.995, 0.01)], 2)


def add_commands(commands, add_common_options):
    """Register the evaluation and benchmark sub-commands."""
    parser = commands.add_parser('eval-pairs', help='LFW View 2 verification (10 folds)')
    parser.add_argument('--lfw', required=True, help='folder with pairs.txt and images/')
    parser.add_argument('--flip-sum', action='store_true', help='embed mirrored faces too')
    parser.add_argument('--out', default='eval_pairs', help='folder for the report and plots')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_eval_pairs)

    parser = commands.add_parser(
        'eval-openset', help='open-set identification check on LFW people (enrolled/strangers)')
    parser.add_argument('--lfw', required=True, help='folder with images/<person>/')
    parser.add_argument('--patients', type=int, default=20)
    parser.add_argument('--enrol-photos', type=int, default=3)
    parser.add_argument('--min-photos', type=int, default=6)
    parser.add_argument('--strangers', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='eval_openset', help='folder for the report')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_eval_openset)

    parser = commands.add_parser(
        'calibrate-landmarks',
        help='where the detector puts its landmarks on faces already aligned to the template')
    parser.add_argument('faces', help='folder of aligned face canvases (searched recursively)')
    parser.add_argument('--margin', type=int, default=8,
                        help='pixels between the canvas edge and the 112x112 ArcFace crop')
    parser.add_argument('--limit', type=int, default=1500, help='use every n-th photo, at most')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_calibrate_landmarks)

    parser = commands.add_parser(
        'calibrate-threshold',
        help='cosine threshold at a target false-accept rate, from pairs of different people')
    parser.add_argument('model', help='embedder ONNX')
    parser.add_argument('faces', help='aligned face canvases in one sub-folder per person')
    parser.add_argument('--count', type=int, default=4000, help='faces sampled, at most')
    parser.add_argument('--far', type=float, default=1e-5, help='target pair false-accept rate')
    parser.add_argument('--margin', type=int, default=8, help='canvas margin around the crop')
    parser.add_argument('--seed', type=int, default=0)
    parser.set_defaults(handler=run_calibrate_threshold)

    parser = commands.add_parser('bench', help='per-stage latency, frame rate and memory')
    parser.add_argument('--size', default='640x480', help='frame size WIDTHxHEIGHT')
    parser.add_argument('--faces', type=int, default=1, help='faces per frame')
    parser.add_argument('--face-width', type=int, default=300,
                        help='width in pixels of each pasted portrait (face ~40%% of it)')
    parser.add_argument('--encoding', default='bgr8', choices=('bgr8', 'jpeg'),
                        help='camera message encoding to decode')
    parser.add_argument('--frames', type=int, default=300)
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_bench)


def _pipeline(args, **overrides):
    from face_id_ros.cli import load_config
    from face_id_ros.core.pipeline import Pipeline
    config = load_config(args)
    if overrides:
        config = config.replace(**overrides)
    return Pipeline(config)


def _provenance(pipeline):
    """Which model file and detector made a report's numbers."""
    embedder = pipeline.embedder
    return {'model': embedder.metadata.name, 'model_version': embedder.metadata.version,
            'model_file': embedder.path, 'model_sha256': embedder.fingerprint,
            'detector': pipeline.config.detector.backend}


def align_photos(pipeline, paths, description):
    """
    Align the central face of each photo; return (crops, count of centre-crop fallbacks).

    The labelled person of a loosely cropped photo is the face nearest the centre. When the
    detector finds none, the central square is used: a photo is never dropped.
    """
    from tqdm import tqdm
    from face_id_ros.cli import read_image
    width, height = pipeline.embedder.input_size
    crops = np.zeros((len(paths), height, width, 3), np.uint8)
    fallbacks = 0
    for index, path in enumerate(tqdm(paths, desc=description, unit='photo')):
        image = read_image(path)
        faces = pipeline.detector.detect(image)
        if faces:
            centre = np.array(image.shape[1::-1], np.float32) / 2.0
            face = min(faces, key=lambda item: np.linalg.norm(
                (item.box[:2] + item.box[2:]) / 2.0 - centre))
            landmarks = face.landmarks
        else:
            fallbacks += 1
            landmarks = centre_landmarks(image, pipeline.template, (width, height))
        crops[index] = pipeline.align(image, [landmarks])[0]
    return crops, fallbacks


def embed_photos(pipeline, paths, description):
    """Embed the central face of each photo; return (embeddings, centre-crop fallbacks)."""
    crops, fallbacks = align_photos(pipeline, paths, description)
    return embed_crops(pipeline.embedder, crops), fallbacks


def embed_crops(embedder, crops, chunk=256):
    """Embed aligned crops a chunk at a time (bounded memory); return ``(N, D)``."""
    return np.concatenate([embedder.embed(crops[start:start + chunk])
                           for start in range(0, len(crops), chunk)]
                          or [np.zeros((0, embedder.embedding_size), np.float32)])


def lfw_photos(lfw):
    """Return (pairs, sorted unique photo paths) of LFW View 2 under the folder ``lfw``."""
    from face_id_ros.core import evaluation
    lfw = Path(lfw)
    pairs = evaluation.read_lfw_pairs(lfw / 'pairs.txt', lfw / 'images')
    return pairs, sorted({pair.path_a for pair in pairs} | {pair.path_b for pair in pairs})


def lfw_verification(pairs, paths, embeddings):
    """Return (cosine scores, same flags, {metric: 10-fold result}) of embedded LFW photos."""
    from face_id_ros.core import evaluation
    row = {path: index for index, path in enumerate(paths)}
    first = embeddings[[row[pair.path_a] for pair in pairs]]
    second = embeddings[[row[pair.path_b] for pair in pairs]]
    cosine, euclidean = evaluation.pair_scores(first, second)
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    results = {}
    for name, scores, higher in (('cosine', cosine, True), ('euclidean', euclidean, False)):
        result = evaluation.kfold_verification(scores, same, folds, higher_is_better=higher)
        tar, threshold = evaluation.tar_at_far(scores, same, 1e-3, higher_is_better=higher)
        result.update(tar_at_far_1e_3=tar, threshold_at_far_1e_3=threshold)
        results[name] = _jsonable(result)
    return cosine, same, results


def at_threshold(cosine, same, threshold):
    """Return how many genuine and impostor pairs one fixed cosine threshold accepts."""
    genuine, impostor = cosine[same] >= threshold, cosine[~same] >= threshold
    return {'threshold': float(threshold),
            'genuine_accepted': int(genuine.sum()), 'genuine_pairs': int(len(genuine)),
            'impostor_accepted': int(impostor.sum()), 'impostor_pairs': int(len(impostor))}


def run_eval_pairs(args):
    """LFW View 2: threshold on 9 folds, score the 10th; cosine and Euclidean."""
    from face_id_ros import plots
    from face_id_ros.core import evaluation
    pairs, paths = lfw_photos(args.lfw)
    pipeline = _pipeline(args, embedder={'flip_sum': bool(args.flip_sum)})
    embeddings, fallbacks = embed_photos(pipeline, paths, 'embed LFW')
    cosine, same, results = lfw_verification(pairs, paths, embeddings)
    report = {**_provenance(pipeline), 'flip_sum': bool(args.flip_sum), 'images': len(paths),
              'centre_crop_fallbacks': fallbacks, 'pairs': len(pairs), **results,
              'at_model_threshold': at_threshold(cosine, same, pipeline.threshold)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    far, tar, _ = evaluation.roc_curve(cosine, same)
    label = f'{report["model"]} + {report["detector"]}'
    plots.plot_roc({label: (far, tar)}, out / 'roc.png', 'LFW View 2 ROC (cosine)')
    plots.plot_score_histogram(cosine, same, report['cosine']['threshold_mean'],
                               out / 'cosine_histogram.png', 'LFW pair similarity',
                               'cosine similarity')
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    _print_pairs_report(report, out)
    return 0


def _print_pairs_report(report, out):
    print(f'LFW View 2, {report["pairs"]} pairs, model {report["model"]} '
          f'{report["model_version"]}, detector {report["detector"]}, '
          f'flip-sum {report["flip_sum"]}, centre-crop fallbacks '
          f'{report["centre_crop_fallbacks"]}/{report["images"]} images')
    for name in ('cosine', 'euclidean'):
        result = report[name]
        print(f'  {name:9s} accuracy {100 * result["accuracy_mean"]:.2f}% '
              f'± {100 * result["accuracy_std"]:.2f}  threshold {result["threshold_mean"]:.4f}'
              f'  TAR@FAR=1e-3 {100 * result["tar_at_far_1e_3"]:.2f}% '
              f'(threshold {result["threshold_at_far_1e_3"]:.4f})')
    fixed = report['at_model_threshold']
    print(f'  at the threshold the pipeline uses ({fixed["threshold"]:.4f}): genuine pairs '
          f'accepted {fixed["genuine_accepted"]}/{fixed["genuine_pairs"]} '
          f'({100 * fixed["genuine_accepted"] / max(1, fixed["genuine_pairs"]):.1f}%), '
          f'impostor pairs accepted {fixed["impostor_accepted"]}/{fixed["impostor_pairs"]}')
    print(f'  report, ROC and histogram in {out}/')


def run_eval_openset(args):
    """
    Enrol some LFW people, then identify their other photos and strangers' photos.

    Reports the rank-1 identification rate of enrolled people and the share of strangers'
    single photos accepted as some patient, at the configured threshold and margin, plus a
    sweep of thresholds so an operating point can be chosen from numbers.
    """
    from face_id_ros.cli import identity_folders
    from face_id_ros.core import evaluation
    from face_id_ros.core.gallery import Gallery
    from face_id_ros.core.matching import match
    people = identity_folders(Path(args.lfw) / 'images')
    random = np.random.default_rng(args.seed)
    eligible = [name for name, photos in people.items() if len(photos) >= args.min_photos]
    if len(eligible) < args.patients:
        raise FaceIdError(f'only {len(eligible)} people have {args.min_photos}+ photos')
    patients = sorted(random.choice(eligible, args.patients, replace=False))
    others = sorted(set(people) - set(patients))
    strangers = sorted(random.choice(others, min(args.strangers, len(others)), replace=False))
    pipeline = _pipeline(args)
    patient_ids = {name: f'P-{index + 1:04d}' for index, name in enumerate(patients)}
    enrol_paths, probe_paths, truths = [], [], []
    for name in patients:
        photos = list(random.permutation(people[name]))
        enrol_paths += photos[:args.enrol_photos]
        probe_paths += photos[args.enrol_photos:]
        truths += [patient_ids[name]] * (len(photos) - args.enrol_photos)
    for name in strangers:
        probe_paths += people[name]
        truths += [None] * len(people[name])
    enrol, _ = embed_photos(pipeline, enrol_paths, 'enrol')
    probes, fallbacks = embed_photos(pipeline, probe_paths, 'probes')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gallery_path = out / 'gallery.db'
    if gallery_path.exists():
        gallery_path.unlink()
    with Gallery.open(gallery_path, pipeline.embedder.fingerprint,
                      pipeline.embedder.embedding_size) as gallery:
        for index, name in enumerate(patients):
            rows = slice(index * args.enrol_photos, (index + 1) * args.enrol_photos)
            gallery.add_templates(patient_ids[name], enrol[rows], enrol_paths[rows],
                                  [1.0] * args.enrol_photos)
        snapshot = gallery.snapshot()
    matches = match(probes, snapshot, pipeline.config.matcher, pipeline.threshold)
    decisions = [face.decision for face in matches]
    names = {patient_id: name for name, patient_id in patient_ids.items()}
    report = {**_provenance(pipeline),
              'threshold': pipeline.threshold, 'margin': pipeline.config.matcher.margin,
              'patients': len(patients), 'strangers': len(strangers),
              'centre_crop_fallbacks': fallbacks,
              'at_default': evaluation.identification_report(truths, decisions),
              'false_accepts': _false_accepts(probe_paths, truths, matches, names),
              'sweep': []}
    for threshold in OPENSET_SWEEP:
        swept = [face.decision for face in
                 match(probes, snapshot, pipeline.config.matcher, float(threshold))]
        report['sweep'].append({'threshold': float(threshold),
                                **evaluation.identification_report(truths, swept)})
    (out / 'report.json').write_text(json.dumps(_jsonable(report), indent=2))
    _print_openset_report(report)
    return 0


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


def run_calibrate_landmarks(args):
    """
    Print the median landmark positions, in ArcFace-112 pixels, over aligned training faces.

    The training faces were aligned by YuNet's 5 points; BlazeFace's 4 points land elsewhere
    on them (its nose point is lower), and these medians become its alignment template.
    """
    import cv2
    from tqdm import tqdm
    from face_id_ros.cli import image_files, read_image
    from face_id_ros.core.config import DetectorConfig
    from face_id_ros.core.detection import make_detector
    from face_id_ros.core.model_metadata import ARCFACE_TEMPLATE_112
    paths = image_files([args.faces])
    paths = paths[::max(1, len(paths) // args.limit)][:args.limit]
    detector = make_detector(DetectorConfig(backend=args.detector or 'blazeface',
                                            yunet_model=args.yunet_model or '',
                                            min_score=0.5, min_face_size=16))
    pad = 64  # context around the tight canvas, as a camera frame would have
    found = []
    for path in tqdm(paths, desc='detect', unit='face'):
        canvas = cv2.copyMakeBorder(read_image(path), pad, pad, pad, pad,
                                    cv2.BORDER_REPLICATE)
        faces = detector.detect(canvas)
        if faces:
            found.append(faces[0].landmarks - pad - args.margin)
    if not found:
        raise FaceIdError(f'no face found in {args.faces}')
    median = np.median(np.array(found), axis=0)
    print(f'{len(found)} of {len(paths)} faces detected; median landmarks in ArcFace-112 '
          f'pixels (template for comparison: {np.round(ARCFACE_TEMPLATE_112, 2).tolist()}):')
    for x, y in median:
        print(f'    ({x:.2f}, {y:.2f}),')
    return 0


def run_calibrate_threshold(args):
    """
    Print the cosine threshold that accepts ``--far`` of pairs of different people.

    Every pair of faces from different sub-folders is an impostor pair. Use faces of one
    source, processed alike, that the model never trained on (e.g. the CelebA faces a run
    held out): pairs across datasets also differ in how their images were made, which a
    student net can encode, and then the threshold comes out far too low. Evaluation sets
    are not used, so the threshold is not tuned on the data it is judged on.
    """
    from tqdm import tqdm
    from face_id_ros.cli import identity_folders, read_image
    from face_id_ros.core.embedding import OnnxEmbedder
    embedder = OnnxEmbedder(args.model)
    people = identity_folders(args.faces)
    if len(people) < 2:
        raise FaceIdError(f'{args.faces} holds {len(people)} person: impostor pairs need two')
    faces = [(person, path) for person, paths in people.items() for path in paths]
    random = np.random.default_rng(args.seed)
    chosen = sorted(random.choice(len(faces), min(args.count, len(faces)), replace=False))
    width, height = embedder.input_size
    rows = []
    for index in tqdm(chosen, desc='embed', unit='face'):
        canvas = read_image(faces[index][1])
        crop = canvas[args.margin:args.margin + height, args.margin:args.margin + width]
        rows.append(embedder.embed(crop[None])[0])
    embeddings = np.array(rows)
    owners = np.unique([faces[index][0] for index in chosen], return_inverse=True)[1]
    different = np.triu(owners[:, None] != owners[None, :], 1)
    scores = (embeddings @ embeddings.T)[different]
    empirical = float(np.quantile(scores, 1.0 - args.far))
    # A normal tail fitted to the impostor scores; the measured tails were lighter, so where
    # too few pairs resolve the FAR this errs towards `unknown`.
    normal_tail = float(scores.mean() + NormalDist().inv_cdf(1.0 - args.far) * scores.std())
    resolved = scores.size * args.far >= 10
    threshold = empirical if resolved else max(empirical, normal_tail)
    print(f'{len(chosen)} faces of {owners.max() + 1} people, {scores.size} impostor pairs: '
          f'cosine mean {scores.mean():.4f}, std {scores.std():.4f}, max {scores.max():.4f}')
    print(f'  at FAR {args.far:g}: measured quantile {empirical:.4f}, normal tail '
          f'{normal_tail:.4f}')
    if not resolved:
        print(f'  {scores.size} pairs are too few to measure a FAR of {args.far:g} (fewer than '
              '10 expected false accepts): using the higher of the two')
    print(f'threshold at FAR {args.far:g}: {threshold:.4f}')
    if threshold >= 1.0:
        print('  no cosine reaches it: with this threshold the model names nobody. Calibrate '
              'on more people, or this model cannot be trusted at this FAR')
    return 0


def run_bench(args):
    """Time every stage on synthetic frames of the sample portrait; print median and p95."""
    from tqdm import tqdm
    from face_id_ros.core.image_codec import decode_any, encode_compressed, encode_image
    from face_id_ros.samples import compose_frame, grid_centres, sample_portrait
    try:
        size = tuple(int(side) for side in args.size.lower().split('x'))
    except ValueError:
        raise FaceIdError(f'--size {args.size!r} is not WIDTHxHEIGHT')
    pipeline = _pipeline(args)
    frame = compose_frame(sample_portrait(), size, grid_centres(size, args.faces),
                          args.face_width)
    fields = encode_image(frame) if args.encoding == 'bgr8' else encode_compressed(frame)
    message = types.SimpleNamespace(**fields)
    found = len(pipeline.describe(decode_any(message)).faces)
    if found != args.faces:
        print(f'warning: the detector finds {found} of {args.faces} faces in the bench frame')
    timings = {stage: [] for stage in ('decode', 'detect', 'align', 'embed', 'match', 'total')}
    for index in tqdm(range(args.frames + 10), desc='bench', unit='frame'):
        started = time.perf_counter()
        image = decode_any(message)
        decoded = time.perf_counter()
        result = pipeline.process(image, index / 15.0)
        total = (time.perf_counter() - started) * 1000.0
        if index >= 10:  # the first frames warm caches and thread pools
            timings['decode'].append((decoded - started) * 1000.0)
            for stage, value in result.timings_ms.items():
                timings[stage].append(value)
            timings['total'].append(total)
    _print_bench(args, pipeline, size, found, timings)
    return 0


def _print_bench(args, pipeline, size, found, timings):
    metadata = pipeline.embedder.metadata
    print(f'bench: {size[0]}x{size[1]} {args.encoding}, {found} face(s), '
          f'{pipeline.config.embedder.threads} thread(s), detector '
          f'{pipeline.config.detector.backend}/{pipeline.config.detector.blazeface_range}, '
          f'model {metadata.name} {metadata.version}, {args.frames} frames')
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
