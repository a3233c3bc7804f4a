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

"""The error types of the core; each carries a reason a person can act on."""


class FaceIdError(Exception):
    """Base class of every error the core raises on purpose."""


class ImageDecodeError(FaceIdError):
    """An image message could not be turned into a picture (bad size, encoding or bytes)."""


class ModelError(FaceIdError):
    """A model file is missing, unreadable or lacks the metadata the runtime needs."""


class GalleryError(FaceIdError):
    """The gallery is unreadable, was made by another model, or a write was refused."""


class ConfigError(FaceIdError):
    """A configuration value is missing, of the wrong type or out of range."""


class EnrolmentRejected(FaceIdError):
    """A photo failed the enrolment quality gate; the message says why."""
