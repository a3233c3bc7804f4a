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
One config object per stage, built from one YAML file and validated at start-up.

Every field carries its description and its allowed range or choices, so the YAML loader,
the command-line tool and the ROS node's parameter declarations share one source of truth.
"""

from dataclasses import dataclass, field, fields
import math
import os
import re
import reprlib
from urllib.parse import parse_qs, urlsplit

from face_id_ros.core.errors import ConfigError
import yaml

# Largest YAML file read: a config, labels file or recipe is kilobytes (a labels file of
# 20,000 intervals fits); PyYAML parses about 0.25 MB/s, so a file takes seconds at most.
MAX_YAML_BYTES = 1024 * 1024
# Deepest nesting of flow collections ([...], {...}) read: PyYAML's scanner takes time
# quadratic in the depth (2,000 levels in 4 KB took seconds) and its composer recurses.
MAX_YAML_DEPTH = 64

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring, _SHORT_REPR.maxother, _SHORT_REPR.maxlong = 60, 60, 40


def short_repr(value):
    """
    Return ``repr(value)`` cut short, for error messages about values read from files.

    A few hundred bytes of YAML aliases expand to a structure whose full repr would take
    gigabytes and minutes (a "billion laughs"); ints past 4300 digits have no repr at all.
    """
    try:
        return _SHORT_REPR.repr(value)
    except (ValueError, RecursionError):
        return f'<{type(value).__name__}>'


def flow_depth(text):
    """Return the deepest nesting of YAML flow collections in ``text`` (not in quotes)."""
    if text.count('[') + text.count('{') <= MAX_YAML_DEPTH:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    quote = None
    previous = '\n'
    position, end = 0, len(text)
    while position < end:
        char = text[position]
        if quote == '"':
            if char == '\\':
                position += 1
            elif char == '"':
                quote = None
        elif quote == "'":
            if char == "'":
                quote = None  # '' (an escaped quote) reopens on the next character
        elif char in '"\'':
            quote = char
        elif char == '#' and previous in ' \t\n':
            newline = text.find('\n', position)
            position = end if newline < 0 else newline
            continue
        elif char in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif char in ']}':
            depth = max(0, depth - 1)
        previous = char
        position += 1
    return deepest


def sorted_keys(mapping):
    """Return a mapping's keys sorted for a message, whatever their types (YAML allows any)."""
    return sorted((short_repr(key) if not isinstance(key, str) else key for key in mapping),
                  key=lambda key: (not isinstance(key, str), key))


# The word a threshold takes for "the model's recommendation".
AUTO = 'auto'


def setting(default, doc, low=None, high=None, choices=None, words=None):
    """
    Declare a config field with its description and its allowed values.

    With ``words`` the field is a number in [low, high] or one of those words (``auto``).
    """
    return field(default=default, metadata={
        'doc': doc, 'low': low, 'high': high, 'choices': choices, 'words': words})


@dataclass(frozen=True)
class DetectorConfig:
    """Face detection."""

    backend: str = setting('blazeface', 'Face detector backend.',
                           choices=('blazeface', 'yunet'))
    blazeface_range: str = setting(
        'short', 'BlazeFace model: short finds faces from ~90 px wide in a 640x480 frame '
        '(within ~0.8 m of a 69 deg camera), full from ~36-45 px (within ~1.6-2 m) at about '
        '3x the cost.', choices=('short', 'full'))
    yunet_model: str = setting('', 'Path of a YuNet ONNX file (backend yunet only).')
    min_score: float = setting(0.6, 'Minimum detector confidence of a face.', 0.0, 1.0)
    min_face_size: int = setting(32, 'Faces whose box is smaller (pixels) are ignored.',
                                 1, 4096)
    max_faces: int = setting(5, 'At most this many faces (the largest) per frame.', 1, 64)


@dataclass(frozen=True)
class EmbedderConfig:
    """Face embedding with onnxruntime."""

    model: str = setting('', 'Embedder ONNX path; empty means the model shipped in models/.')
    threads: int = setting(1, 'onnxruntime intra-op threads.', 1, 64)
    flip_sum: bool = setting(False, 'Also embed the mirrored face and sum (2x cost).')


@dataclass(frozen=True)
class MatcherConfig:
    """Open-set matching against the gallery (cosine similarity)."""

    threshold: object = setting(
        AUTO, "Cosine similarity a match needs, in [0, 1], or auto: the model's recommended "
        'threshold (from its metadata). A number below the recommendation is refused unless '
        'allow_below_model_threshold is true.', 0.0, 1.0, words=(AUTO,))
    allow_below_model_threshold: bool = setting(
        False, "Accept a threshold below the model's recommendation (more strangers will "
        'match patients); every start then logs a warning with both numbers. For '
        'experiments, never on a ward.')
    margin: float = setting(0.05, 'Lead the best patient needs over the runner-up.', 0.0, 2.0)
    top_k: int = setting(3, 'Candidates reported per face.', 1, 50)


@dataclass(frozen=True)
class TrackerConfig:
    """Temporal policy that turns per-frame matches into confirmed identities."""

    iou_threshold: float = setting(0.3, 'Box overlap that continues a track.', 0.0, 1.0)
    window: int = setting(5, 'Recent frames a track keeps as evidence.', 1, 100)
    confirm_frames: int = setting(
        3, 'Frames in the window that must agree on one patient to confirm it.', 1, 100)
    max_gap_s: float = setting(
        0.5, 'A track unseen for longer ends; evidence older than this is stale.', 0.01, 60.0)
    masked_confirm_frames: int = setting(
        5, 'Agreeing frames a masked face needs when it is matched against bare templates '
        '(the patient has no masked ones, or the model no threshold for them): half the '
        'face is hidden and the other half was enrolled bare, so more evidence '
        'stands in for the missing half. The masked ward round gave 0 wrong and 1 of 12 '
        'masked visits confirmed at both 3 and 5, so the cautious value stays.', 1, 100)
    recheck_period_s: float = setting(
        0.5, 'A confirmed face that looks unchanged is embedded again after this long '
        '(seconds) and carries its last decision, marked not fresh, in between; a face '
        'replaced without its box or landmarks moving is caught within this time. At most '
        'max_gap_s, so no decision rests on stale evidence; 0 embeds every face every frame.',
        0.0, 60.0)
    recheck_min_iou: float = setting(
        0.6, 'A confirmed face is embedded again at once when its box overlaps the previous '
        "frame's less than this (it jumped or changed size: perhaps someone else).", 0.0, 1.0)
    recheck_landmark_shift: float = setting(
        0.06, 'A confirmed face is embedded again at once when a landmark moved more than '
        'this (in box widths, relative to the box) since its last embedding: a head turn, '
        'another face. Measured on LFW faces: one face drifting and changing brightness '
        'passed 0.06 in 10% of frames; two people in one place differ by 0.09 (median), 86% '
        'by more than 0.06.', 0.0, 1.0)
    recheck_min_look: float = setting(
        0.9, 'A confirmed face is embedded again at once when its look (a 16x16 grey thumbnail '
        'of the aligned face) correlates less than this with its look at its last embedding: '
        "someone else may stand in the same box with landmarks much like the patient's. "
        'Measured on LFW: a face moved, turned, scaled, re-lit, noised and JPEG-compressed '
        'correlates 0.89 or more with itself (median 0.98); 400 strangers in its place at most '
        '0.74. At least 0.8, so the test cannot be switched off by mistake.', 0.8, 1.0)


@dataclass(frozen=True)
class GalleryConfig:
    """The enrolled-patient gallery."""

    path: str = setting(
        '~/.local/share/face_id_ros/gallery.db', 'SQLite gallery file; with gallery.url, '
        "this robot's encrypted cache of the last revision it synced from the server.")
    url: str = setting(
        '', "The hospital's PostgreSQL gallery, a libpq URL such as postgresql://face_id@db."
        'ward/face_id?sslmode=verify-full&sslrootcert=/etc/face_id_ros/db-ca.pem; the password '
        'comes from PGPASSFILE or ~/.pgpass, never from this file. Empty: the SQLite file '
        'gallery.path alone (one robot).')
    sync_poll_s: float = setting(
        5.0, 'With gallery.url: seconds between checks of the server when no notification '
        'arrived (LISTEN/NOTIFY brings changes at once), and between reconnection attempts '
        'while it is unreachable.', 0.2, 3600.0)
    operator: str = setting(
        '', 'Who the audit trail names for writes from this machine (a desk, a nurse); '
        "empty: the login name. Commands' --operator overrides it.")
    store_images: bool = setting(False, 'Also store the aligned face crops (off: privacy).')
    id_pattern: str = setting(
        r'^P-[0-9]{4,}$', 'Regular expression every pseudonymous patient id must match.')
    encryption: str = setting(
        'required', 'required: templates and face crops are encrypted (AES-256-GCM) with a '
        'key kept outside the gallery file, and an unencrypted gallery is refused; off: an '
        'unencrypted gallery, for tests and development only.', choices=('required', 'off'))
    key_file: str = setting(
        '', 'Gallery key file (base64 of 32 bytes, owner-only permissions, made by `face-id '
        'gallery keygen`); empty: the FACE_ID_GALLERY_KEY environment variable.')


@dataclass(frozen=True)
class QualityConfig:
    """Enrolment quality gate."""

    min_face_size: int = setting(80, 'Smallest face box (pixels) accepted for enrolment.',
                                 16, 4096)
    min_sharpness: float = setting(
        30.0, 'Least variance of the Laplacian of the aligned face (blur gate).', 0.0, 1e6)
    min_score: float = setting(0.8, 'Least detector confidence for enrolment.', 0.0, 1.0)
    masked_min_score: float = setting(
        0.6, 'Least detector confidence for a face the model sees masked: BlazeFace scores '
        'masked faces lower (median 0.81 against 0.93 on 187 LFW photos with synthetic '
        'masks; 0.8 would refuse 45% of them, 0.6 refuses 2%).', 0.0, 1.0)


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's config; built from the YAML file in ``config/``."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    @classmethod
    def from_dict(cls, mapping, source='config'):
        """Build and validate from nested mappings; raise ConfigError naming the key."""
        mapping = mapping or {}
        if not isinstance(mapping, dict):
            raise ConfigError(f'{source}: expected a mapping of stages, got '
                              f'{short_repr(mapping)}')
        stages = {item.name: item.default_factory for item in fields(cls)}
        unknown = sorted_keys(set(mapping) - set(stages))
        if unknown:
            raise ConfigError(f'{source}: unknown section(s) {unknown}; '
                              f'known: {sorted(stages)}')
        built = {name: build_stage(stage_cls, mapping.get(name), f'{source}: {name}')
                 for name, stage_cls in stages.items()}
        config = cls(**built)
        if config.tracker.confirm_frames > config.tracker.window:
            raise ConfigError(f'{source}: tracker.confirm_frames '
                              f'({config.tracker.confirm_frames}) exceeds tracker.window '
                              f'({config.tracker.window})')
        if config.detector.backend == 'yunet' and not config.detector.yunet_model:
            raise ConfigError(f'{source}: detector.yunet_model is required for backend yunet')
        try:
            re.compile(config.gallery.id_pattern)
        except (re.error, OverflowError, RecursionError) as error:
            pattern = short_repr(config.gallery.id_pattern)
            raise ConfigError(f'{source}: gallery.id_pattern {pattern} is not a regular '
                              f'expression ({error})')
        problem = server_url_problem(config.gallery.url)
        if problem:
            raise ConfigError(f'{source}: gallery.url {problem}')
        return config

    @classmethod
    def from_yaml(cls, path):
        """Load a YAML file whose top level has one section per stage."""
        return cls.from_dict(read_yaml(path), source=os.path.expanduser(str(path)))

    def replace(self, **sections):
        """Return a copy with some stages' values overridden (``{'detector': {...}}``)."""
        merged = {name: dict(vars(getattr(self, name))) for name in vars(self)}
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return type(self).from_dict(merged, source='override')


def server_url_problem(url):
    """Return why a gallery.url is refused ('' for an acceptable or empty one)."""
    if not url:
        return ''
    parts = urlsplit(url)
    if parts.scheme not in ('postgresql', 'postgres'):
        return f'{short_repr(url)} is not a postgresql:// URL'
    if parts.password is not None or 'password' in parse_qs(parts.query):
        return ('holds a password: keep it in PGPASSFILE (or ~/.pgpass, mode 600), never in '
                'the YAML or a parameter')
    return ''


def read_yaml(path, what='config'):
    """Read a YAML file; raise ConfigError saying which ``what`` could not be read or parsed."""
    path = os.path.expanduser(str(path))
    try:
        with open(path, 'rb') as stream:
            data = stream.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise ConfigError(f'cannot read {what} {path}: {error.strerror}')
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f'{what} {path} is larger than {MAX_YAML_BYTES // 1024} KiB; it is '
                          'not a file this software writes or reads')
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as error:
        raise ConfigError(f'{what} {path} is not UTF-8 text ({error})')
    if flow_depth(text) > MAX_YAML_DEPTH:
        raise ConfigError(f'{what} {path} nests [ ] or {{ }} more than {MAX_YAML_DEPTH} deep')
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f'{what} {path} is not valid YAML: {error}')
    except RecursionError:
        raise ConfigError(f'{what} {path} is nested too deeply to be read')
    except Exception as error:
        # PyYAML's constructors let other types through: ValueError for '!!int x' or a
        # 5000-digit integer, AttributeError for '!!timestamp x'.
        raise ConfigError(f'{what} {path} holds a value YAML cannot construct '
                          f'({type(error).__name__}: {error})')


def build_stage(stage_cls, mapping, source):
    """Build one stage's config from a mapping, checking names, types and ranges."""
    mapping = mapping or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f'{source}: expected a mapping, got {short_repr(mapping)}')
    known = {item.name: item for item in fields(stage_cls)}
    unknown = sorted_keys(set(mapping) - set(known))
    if unknown:
        raise ConfigError(f'{source}: unknown key(s) {unknown}; known: {sorted(known)}')
    values = {name: check_value(known[name], value, f'{source}.{name}')
              for name, value in mapping.items()}
    return stage_cls(**values)


def _yaml_word(value, choices):
    """Return the word YAML 1.1 turned into a boolean (off, no, false) when it is a choice."""
    # `encryption: off` as written in the README reaches us as False.
    word = {False: 'off', True: 'on'}.get(value) if isinstance(value, bool) else None
    return word if choices and word in choices else value


def check_value(item, value, where):
    """Coerce ``value`` to the field's type and check its range; raise ConfigError."""
    kind = type(item.default)
    shown = short_repr(value)
    meta = item.metadata
    if meta.get('words'):
        if isinstance(value, str):
            if value in meta['words']:
                return value
            raise ConfigError(f'{where}: {shown} is neither a number nor one of '
                              f'{list(meta["words"])}')
        kind = float
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f'{where}: expected true or false, got {shown}')
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{where}: expected a number, got {shown}')
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f'{where}: expected a finite number, got {shown}')
        if kind is int and value != int(value):
            raise ConfigError(f'{where}: expected a whole number, got {shown}')
        try:
            value = kind(value)
        except OverflowError:
            raise ConfigError(f'{where}: {shown} is out of range')
    if kind is str:
        value = _yaml_word(value, item.metadata['choices'])
        if not isinstance(value, str):
            raise ConfigError(f'{where}: expected text, got {shown}')
    if meta['choices'] and value not in meta['choices']:
        raise ConfigError(f'{where}: {shown} is not one of {list(meta["choices"])}')
    if meta['low'] is not None and value < meta['low']:
        raise ConfigError(f'{where}: {shown} is below the minimum {meta["low"]}')
    if meta['high'] is not None and value > meta['high']:
        raise ConfigError(f'{where}: {shown} is above the maximum {meta["high"]}')
    return value
