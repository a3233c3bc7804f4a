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

"""``face-id enroll``, ``gallery``, ``identify``, ``model`` and ``demo``: the main job."""

from dataclasses import replace
import json
import os
from pathlib import Path

from face_id_ros.cli.options import add_common_options, load_config, open_pipeline
from face_id_ros.core.enrolment import check_not_enrolled_as_another, photo_source
from face_id_ros.core.errors import EnrolmentRejected, FaceIdError, ImageDecodeError
from face_id_ros.core.image_files import image_files, IMAGE_SUFFIXES, read_image, read_image_bytes


def add_commands(commands):
    """Register the enrolment, gallery, identification, model and demo sub-commands."""
    _add_enroll(commands)
    _add_gallery(commands)
    _add_identify(commands)
    _add_model(commands)
    _add_demo(commands)


# enroll ---------------------------------------------------------------------------------

def _add_enroll(commands):
    parser = commands.add_parser(
        'enroll', help='enrol patients from a folder with one sub-folder of photos per id')
    parser.add_argument('folder', help='folder holding <patient id>/<photos>')
    parser.add_argument('--patient-id', help='enrol only this sub-folder')
    parser.add_argument('--masked', action='store_true',
                        help='the photos show the patient masked: store masked templates '
                             '(without it, each photo is masked where the model sees a mask)')
    change = parser.add_mutually_exclusive_group()
    change.add_argument('--replace', action='store_true',
                        help="replace each patient's templates by the folder's photos "
                             '(default: add the photos not enrolled yet)')
    change.add_argument('--add-to', metavar='PATIENT_ID',
                        help='add the photos of the one sub-folder --patient-id names to this '
                             'enrolled patient: the same person, enrolled before')
    add_common_options(parser)
    parser.set_defaults(handler=run_enroll)


def run_enroll(args):
    """
    Enrol every accepted photo; report each rejected photo and refused patient with why.

    A patient whose face matches another enrolled patient is refused (one person, one id),
    and a photo enrolled before is skipped (known by a digest of its bytes, never its name).
    Exits 1 when a patient was refused.
    """
    from face_id_ros.core.gallery_crypto import key_from_config
    root = Path(args.folder)
    folders = sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    if args.patient_id:
        folders = [path for path in folders if path.name == args.patient_id]
    if not folders:
        raise FaceIdError(f'{root} holds no patient sub-folders to enrol')
    if args.add_to and not args.patient_id:
        raise FaceIdError('--add-to adds one sub-folder: name it with --patient-id')
    pipeline, gallery = open_pipeline(args, create_gallery=True)
    if args.add_to and args.add_to not in gallery.patient_ids():
        raise FaceIdError(f'--add-to {args.add_to}: no such patient in {gallery.path}')
    key = key_from_config(pipeline.config.gallery)
    rejected = refused = 0
    for folder in folders:
        patient_id = args.add_to or folder.name
        samples, sources, photos_rejected = _enrolment_samples(args, folder, patient_id,
                                                               pipeline, gallery, key)
        rejected += photos_rejected
        if not samples:
            print(f'{folder.name}: no new photo accepted, nothing enrolled')
            continue
        try:
            check_not_enrolled_as_another(gallery.snapshot(), patient_id,
                                          [sample.embedding for sample in samples],
                                          pipeline.threshold)
        except EnrolmentRejected as rejection:
            refused += 1
            print(f'{folder.name}: refused, nothing enrolled: {rejection}; if it is the same '
                  f'person, add the photos to that patient with --patient-id {folder.name} '
                  '--add-to <that id>')
            continue
        masked = [args.masked or sample.masked for sample in samples]
        gallery.add_templates(patient_id, [sample.embedding for sample in samples], sources,
                              [sample.quality for sample in samples],
                              images=[sample.crop for sample in samples], masked=masked,
                              replace=args.replace)
        verb = 'replaced by' if args.replace else 'enrolled'
        print(f'{patient_id}: {verb} {len(samples)} photo(s), {sum(masked)} masked')
        if any(masked) and pipeline.masked_threshold is None:
            print('  this model has no threshold for masked templates: they name nobody')
    print(f'gallery {gallery.path}: revision {gallery.revision}, '
          f'{len(gallery.patient_ids())} patient(s); {rejected} photo(s) rejected, '
          f'{refused} patient(s) refused')
    return 1 if refused else 0


def _enrolment_samples(args, folder, patient_id, pipeline, gallery, key):
    """Return the folder's new photos that pass the quality gate, their sources, rejections."""
    from tqdm import tqdm
    from face_id_ros.core.image_codec import decode_encoded
    from face_id_ros.core.quality import assess_photo
    known = set() if args.replace else gallery.template_sources().get(patient_id, set())
    samples, sources, rejected = [], [], 0
    for photo in tqdm(image_files([folder]), desc=folder.name, unit='photo', leave=False):
        try:
            data = read_image_bytes(photo)
            source = photo_source(data, key)
            if source in known:
                print(f'skipped {photo}: the same photo is enrolled already')
                continue
            sample = assess_photo(decode_encoded(data, f'image file {photo}'), pipeline,
                                  pipeline.config.quality)
        except ImageDecodeError as error:
            rejected += 1
            print(f'rejected {error}')
            continue
        except FaceIdError as error:
            rejected += 1
            print(f'rejected {photo}: {error}')
            continue
        known.add(source)
        samples.append(sample)
        sources.append(source)
    return samples, sources, rejected


# gallery ----------------------------------------------------------------------------------

def _add_gallery(commands):
    parser = commands.add_parser(
        'gallery', help='list, inspect or edit the gallery; make its key; migrate it')
    actions = parser.add_subparsers(dest='action', required=True)
    for name, help_text in (('list', 'list enrolled patients'),
                            ('info', 'show model fingerprint, revision, counts and encryption'),
                            ('remove', 'remove a patient and all their templates, wiped from '
                                       'the file and its write-ahead log')):
        action = actions.add_parser(name, help=help_text)
        if name == 'remove':
            action.add_argument('patient_id')
        add_common_options(action)
        action.set_defaults(handler=run_gallery)
    keygen = actions.add_parser(
        'keygen', help='make a gallery key: a key file only its owner can read (--out), or '
                       'the line to export as FACE_ID_GALLERY_KEY')
    keygen.add_argument('--out', help='key file to create (never overwritten)')
    keygen.set_defaults(handler=run_gallery_keygen)
    migrate = actions.add_parser(
        'migrate', help='SQLite: rewrite a schema-1 or unencrypted gallery as an encrypted '
                        'schema-2 one in place (atomic; keeps revision and model stamp); '
                        'server (gallery.url): create or upgrade its schema')
    add_common_options(migrate)
    migrate.set_defaults(handler=run_gallery_migrate)
    audit = actions.add_parser(
        'audit', help="print a server gallery's audit trail: who enrolled, changed or erased "
                      'which pseudonymous id, when, at which revision')
    audit.add_argument('--patient-id', help="only this patient's entries")
    audit.add_argument('--since', type=int, default=0,
                       help='only entries after this revision')
    add_common_options(audit)
    audit.set_defaults(handler=run_gallery_audit)


def run_gallery(args):
    """List, describe or edit the gallery."""
    _, gallery = open_pipeline(args)
    if args.action == 'info':
        print(json.dumps(gallery.info(), indent=2, default=str))
    elif args.action == 'list':
        for record in gallery.list_patients():
            print(f'{record.patient_id}\t{record.template_count} template(s), '
                  f'{record.masked_count} masked')
    else:
        gallery.remove_patient(args.patient_id)
        print(f'removed {args.patient_id} and wiped their templates; revision '
              f'{gallery.revision}')
    return 0


def run_gallery_keygen(args):
    """Write a new key file (owner-only), or print a key for the environment."""
    from face_id_ros.core.gallery_crypto import KEY_ENV, new_key_text, write_key_file
    if args.out:
        path = write_key_file(args.out)
        print(f'wrote a new gallery key to {path} (mode 600); set gallery.key_file: {path}. '
              'Keep a copy in a safe place: without it the gallery cannot be read.')
    else:
        print(f'{KEY_ENV}={new_key_text()}')
    return 0


def run_gallery_migrate(args):
    """Convert the SQLite gallery to schema 2, or create or upgrade the server's schema."""
    from face_id_ros.core.gallery_crypto import key_from_config
    config = load_config(args)
    key = key_from_config(config.gallery)
    if config.gallery.url:
        from face_id_ros.core.embedding import OnnxEmbedder
        from face_id_ros.core.gallery_server_schema import migrate_server
        from face_id_ros.core.resources import default_model_path
        embedder = OnnxEmbedder(config.embedder.model or default_model_path())
        summary = migrate_server(config.gallery.url, key, embedder.fingerprint,
                                 embedder.embedding_size)
    else:
        from face_id_ros.core.gallery import migrate
        summary = migrate(config.gallery.path, key)
    removed = summary.get('photo_names_removed')
    print(f"migrated {summary['path']}: schema {summary['from_schema']} -> "
          f"{summary.get('to_schema', 2)}, {summary['encryption']}: revision "
          f"{summary['revision']}, {summary['patients']} patient(s), "
          f"{summary['templates']} template(s)"
          + ('' if removed is None else f', {removed} photo name(s) removed'))
    return 0


def run_gallery_audit(args):
    """Print the server gallery's audit trail, one tab-separated line per entry."""
    _, gallery = open_pipeline(args)
    if not hasattr(gallery, 'audit'):
        raise FaceIdError(f'gallery {gallery.path} is a SQLite file, which keeps no audit '
                          'trail; the audit trail is kept by a server gallery (gallery.url)')
    print('revision\ttime (UTC)\toperator\tdatabase user\taction\tpatient\ttemplates')
    for entry in gallery.audit(args.patient_id, args.since):
        print(f'{entry.revision}\t{entry.at:%Y-%m-%d %H:%M:%S}\t{entry.operator}\t'
              f'{entry.database_user}\t{entry.action}\t{entry.patient_id}\t'
              f'{entry.templates}')
    return 0


# identify ---------------------------------------------------------------------------------

def _add_identify(commands):
    parser = commands.add_parser(
        'identify', help='identify the faces in photos (each judged on its own), or in a '
                         'video or a --sequence of frames (tracked over time)')
    parser.add_argument('inputs', nargs='+', help='image files, folders or one video file')
    parser.add_argument('--sequence', action='store_true',
                        help='the images are consecutive frames of one camera (at --fps): '
                             'track faces and confirm over several frames, as on the robot; '
                             'a video file always is')
    parser.add_argument('--annotate', help='folder (images) or file (video) for annotated copies')
    parser.add_argument('--fps', type=float, default=15.0,
                        help='frame rate of a --sequence of images')
    add_common_options(parser)
    parser.set_defaults(handler=run_identify)


def run_identify(args):
    """
    Print one JSON line per frame: every face with its status, patient and candidates.

    Photos are judged each on its own (``Pipeline.identify_still``); a video file or a
    ``--sequence`` goes through the tracker as camera frames do. An unreadable file is
    reported (a JSON line with ``error``, a line on stderr) and skipped; the exit status is
    then 1, after every other file was identified.
    """
    import sys
    from face_id_ros.core.annotate import draw_results
    pipeline, _ = open_pipeline(args)
    video = is_video(args.inputs)
    mode = SEQUENCE if video or args.sequence else STILL
    writer, unreadable = None, 0
    for index, (name, frame, stamp) in enumerate(iter_frames(args.inputs, args.fps)):
        if isinstance(frame, FaceIdError):
            unreadable += 1
            print(json.dumps({'frame': name, 'mode': mode, 'error': str(frame)}))
            print(f'face-id: skipped {name}: {frame}', file=sys.stderr)
            continue
        if mode == STILL:
            result = pipeline.identify_still(frame, stamp)
        else:
            result = pipeline.process(frame, stamp)
        record = frame_record(name, result, mode)
        if args.annotate:
            writer, record['annotated'] = write_annotated(
                args.annotate, index, name, draw_results(frame, result), writer, args.fps,
                video)
        print(json.dumps(record))
    if writer is not None:
        writer.release()
    if unreadable:
        print(f'face-id: {unreadable} input(s) could not be read (see "error" above)',
              file=sys.stderr)
        return 1
    return 0


STILL = 'still'
SEQUENCE = 'sequence'


def is_video(inputs):
    """Whether ``inputs`` is one video file (anything but an image file or a folder)."""
    first = Path(inputs[0])
    return len(inputs) == 1 and first.is_file() and first.suffix.lower() not in IMAGE_SUFFIXES


def iter_frames(inputs, fps):
    """
    Yield (name, BGR frame, stamp in seconds) from one video file or from images.

    An image that cannot be read yields its FaceIdError in place of the frame, so the
    caller can report it and go on.
    """
    import cv2
    if is_video(inputs):
        first = Path(inputs[0])
        capture = cv2.VideoCapture(str(first))
        if not capture.isOpened():
            raise FaceIdError(f'cannot open video {first}')
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 or index / fps
            yield f'{first.name}#{index}', frame, stamp
            index += 1
        capture.release()
        return
    for index, path in enumerate(image_files(inputs)):
        try:
            image = read_image(path)
        except FaceIdError as error:
            image = error
        yield str(path), image, index / fps


def frame_record(name, result, mode=SEQUENCE):
    """
    Return a JSON-ready summary of one frame's result.

    ``fresh`` says whether the face's identity was embedded in this frame; a tracked face
    that looks unchanged carries its last embedding's (``false``). Scores are cosines
    clipped at 0, the scale of the threshold.
    """
    faces = []
    for face, box in zip(result.faces, result.boxes):
        faces.append({
            'track': face.track_id,
            'status': face.status,
            'patient_id': face.patient_id,
            'fresh': face.fresh,
            'box': [round(float(value), 1) for value in box],
            'candidates': [{'patient_id': candidate.patient_id,
                            'score': round(candidate.score, 4)}
                           for candidate in face.candidates],
            'masked': face.masked,
            'mask_probability': mask_probability(face),
        })
    return {'frame': name, 'mode': mode, 'stamp': round(result.stamp, 3), 'faces': faces,
            'gallery_revision': result.gallery_revision}


def mask_probability(face):
    """Return the mask probability for JSON: rounded, None when the model cannot tell."""
    return None if face.masked is None else round(face.mask_probability, 4)


def write_annotated(target, index, name, image, writer, fps, video):
    """
    Write one annotated frame to a video writer or into a folder; return (writer, path).

    Images are named after their input, prefixed by their place in the input list, so two
    photos of the same name in different folders never overwrite each other.
    """
    import cv2
    if video:
        if writer is None:
            height, width = image.shape[:2]
            writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                     (width, height))
        writer.write(image)
        return writer, target
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, f'{index:05d}_{Path(name).stem}_annotated.jpg')
    if not cv2.imwrite(path, image):
        raise FaceIdError(f'cannot write the annotated frame {path}')
    return None, path


# model --------------------------------------------------------------------------------------

def _add_model(commands):
    parser = commands.add_parser('model', help='inspect a model, stamp metadata into one, set its '
                                 'thresholds or time models')
    actions = parser.add_subparsers(dest='action', required=True)
    show = actions.add_parser('info', help="print a model's face_id metadata and fingerprint")
    show.add_argument('model', nargs='?', help='ONNX file (default: the shipped model)')
    show.set_defaults(handler=run_model_info)
    stamp = actions.add_parser(
        'stamp', help='write face_id metadata into a third-party ArcFace-style ONNX')
    stamp.add_argument('source')
    stamp.add_argument('target')
    stamp.add_argument('--name', required=True)
    stamp.add_argument('--version', required=True)
    stamp.add_argument('--embedding-size', type=int, required=True)
    stamp.add_argument('--channel-order', choices=('RGB', 'BGR'), default='RGB')
    stamp.add_argument('--mean', type=float, nargs=3, default=(127.5, 127.5, 127.5),
                       help='per-channel mean in 0-255 units, in channel order')
    stamp.add_argument('--std', type=float, nargs=3, default=(127.5, 127.5, 127.5))
    stamp.add_argument('--input-size', type=int, nargs=2, default=(112, 112),
                       metavar=('WIDTH', 'HEIGHT'))
    stamp.add_argument('--cosine-threshold', type=float, required=True)
    stamp.add_argument('--masked-cosine-threshold', type=float,
                       help='threshold against masked templates (default: none, they name '
                       'nobody)')
    stamp.add_argument('--training-data', default='')
    stamp.add_argument('--licence', default='')
    stamp.set_defaults(handler=run_model_stamp)
    thresholds = actions.add_parser(
        'set-thresholds', help='copy a model with new recommended thresholds (face-id '
        'calibrate-threshold gives both) and version; galleries must then enrol again')
    thresholds.add_argument('source')
    thresholds.add_argument('target')
    thresholds.add_argument('--version', required=True)
    thresholds.add_argument('--cosine-threshold', type=float, required=True)
    thresholds.add_argument('--masked-cosine-threshold', type=float,
                            help='threshold against masked templates (default: none, they '
                            'name nobody)')
    thresholds.set_defaults(handler=run_model_set_thresholds)
    latency = actions.add_parser(
        'latency', help='time models against each other, interleaved, one face, one thread')
    latency.add_argument('models', nargs='+', help='ONNX files')
    latency.add_argument('--rounds', type=int, default=30, help='rounds, models alternating')
    latency.add_argument('--runs', type=int, default=100, help='embeddings per model a round')
    latency.set_defaults(handler=run_model_latency)


def run_model_info(args):
    """Print the metadata the runtime reads from a model file."""
    from face_id_ros.core.embedding import OnnxEmbedder
    from face_id_ros.core.resources import default_model_path
    embedder = OnnxEmbedder(args.model or default_model_path())
    print(json.dumps({'path': embedder.path, 'fingerprint': embedder.fingerprint,
                      'metadata': json.loads(embedder.metadata.to_json())}, indent=2))
    return 0


def run_model_latency(args):
    """Print each model's median embedding latency and its ratio to the first model's."""
    import numpy as np
    from face_id_ros.evaluation.benchmarks import interleaved_latency
    timings = interleaved_latency(args.models, args.rounds, args.runs)
    first = timings[args.models[0]]
    for path, rounds in timings.items():
        print(f'{path}: median {np.median(rounds):.3f} ms (best round {np.min(rounds):.3f}), '
              f'paired ratio to the first {np.median(rounds / first):.3f}')
    return 0


def run_model_stamp(args):
    """Copy an ONNX model with the face_id metadata added (needs the ``onnx`` package)."""
    from face_id_ros.core.model_metadata import ModelMetadata
    metadata = ModelMetadata(
        name=args.name, version=args.version, embedding_size=args.embedding_size,
        input_size=tuple(args.input_size), channel_order=args.channel_order,
        mean=tuple(args.mean), std=tuple(args.std), cosine_threshold=args.cosine_threshold,
        masked_cosine_threshold=args.masked_cosine_threshold,
        training_data=args.training_data, licence=args.licence)
    _save_with_metadata(args.source, args.target, metadata)
    print(f'wrote {args.target} with face_id metadata ({metadata.name} {metadata.version})')
    return 0


def run_model_set_thresholds(args):
    """Copy a model with its recommended thresholds and version replaced."""
    from face_id_ros.core.embedding import OnnxEmbedder
    metadata = replace(OnnxEmbedder(args.source).metadata, version=args.version,
                       cosine_threshold=args.cosine_threshold,
                       masked_cosine_threshold=args.masked_cosine_threshold)
    _save_with_metadata(args.source, args.target, metadata)
    print(f'wrote {args.target}: {metadata.name} {metadata.version}, thresholds '
          f'{metadata.cosine_threshold} (bare), {metadata.masked_cosine_threshold} (masked '
          'templates)')
    return 0


def _save_with_metadata(source, target, metadata):
    """Copy the ONNX model ``source`` to ``target`` with ``metadata`` (needs ``onnx``)."""
    try:
        import onnx
    except ImportError:
        raise FaceIdError('`face-id model` needs the onnx package to write a model: '
                          'pip install onnx')
    from face_id_ros.core.model_metadata import attach_metadata
    try:
        model = onnx.load(source)
    except Exception as error:  # onnx raises protobuf and OS errors alike
        raise FaceIdError(f'cannot read ONNX model {source}: {error}')
    onnx.save(attach_metadata(model, metadata), target)


# demo ---------------------------------------------------------------------------------------

def _add_demo(commands):
    parser = commands.add_parser(
        'demo', help='enrol the sample portrait and identify it in a moving clip')
    parser.add_argument('--frames', type=int, default=30, help='clip length at 15 frames/s')
    parser.add_argument('--out', help='folder for the demo gallery and annotated frames')
    add_common_options(parser, gallery=False)
    parser.set_defaults(handler=run_demo)


def run_demo(args):
    """
    Run the whole job on the embedded defaults and the sample portrait.

    Enrols matplotlib's Grace Hopper portrait as patient P-0001 through the quality gate,
    then identifies her in a clip where she moves, grows and changes lighting. Without
    ``--out`` its gallery and annotated frame live in a temporary folder removed at the end.
    """
    import tempfile
    if args.out:
        return _demo(args, Path(args.out))
    with tempfile.TemporaryDirectory(prefix='face_id_demo_') as out:
        return _demo(args, Path(out))


def _demo(args, out):
    from face_id_ros.core.annotate import draw_results
    from face_id_ros.core.gallery import Gallery
    from face_id_ros.core.pipeline import Pipeline
    from face_id_ros.core.quality import assess_photo
    from face_id_ros.evaluation.samples import compose_frame, sample_portrait
    out.mkdir(parents=True, exist_ok=True)
    # The demo enrols a published portrait in a throw-away gallery: no key needed.
    config = load_config(args).replace(gallery={'path': str(out / 'gallery.db'),
                                                'encryption': 'off'})
    pipeline = Pipeline(config)
    portrait = sample_portrait()
    sample = assess_photo(portrait, pipeline, config.quality)
    with Gallery.from_config(config.gallery, pipeline.embedder.fingerprint,
                             pipeline.embedder.embedding_size) as gallery:
        gallery.add_templates('P-0001', [sample.embedding], [photo_source(portrait)],
                              [sample.quality])
        pipeline.set_gallery(gallery.snapshot())
    print(f'enrolled P-0001 from the sample portrait (quality {sample.quality:.2f}); '
          f'model {pipeline.embedder.metadata.name} {pipeline.embedder.metadata.version}, '
          f'threshold {pipeline.threshold:.3f}')
    first_confirmed = None
    for index in range(args.frames):
        phase = index / max(args.frames - 1, 1)
        frame = compose_frame(portrait, (640, 480), [(220 + 200 * phase, 250)],
                              face_width=260 + 80 * phase, brightness=0.7 + 0.5 * phase)
        result = pipeline.process(frame, index / 15.0)
        record = frame_record(f'frame {index}', result)
        print(json.dumps(record))
        confirmed = [face for face in result.faces if face.status == 'confirmed']
        if confirmed and first_confirmed is None:
            first_confirmed = index
            import cv2
            cv2.imwrite(str(out / 'confirmed.jpg'), draw_results(frame, result))
    if first_confirmed is None:
        print('P-0001 was never confirmed: check the model and thresholds')
        return 1
    kept = (f'annotated frame and gallery in {out}/' if args.out
            else 'pass --out DIR to keep the annotated frame and the gallery')
    print(f'P-0001 confirmed at frame {first_confirmed} ({first_confirmed / 15.0:.2f} s); '
          f'{kept}')
    return 0
