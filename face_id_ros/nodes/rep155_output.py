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
The rclpy side of REP-155: hri_msgs classes, and face_id_node's REP-155 face publisher.

hri_msgs is a conditional dependency: nothing imports it until a node is asked to speak
REP-155, and then a missing package is one clear line (``hri_msgs_types``).
"""

import array

from face_id_ros.core.errors import ConfigError
from face_id_ros.core.image_codec import encode_image
from face_id_ros.core.rep155 import (CANDIDATE_MATCHES, face_topic, FACE_TOPICS, FACES_TRACKED,
                                     session_token)
from face_id_ros.core.rep155_publisher import Rep155Publisher

MISSING_HRI_MSGS = ('REP-155 needs the hri_msgs package: sudo apt-get install '
                    'ros-$ROS_DISTRO-hri-msgs (or rosdep install --from-paths src)')


def hri_msgs_types():
    """Return the hri_msgs.msg module; raise ConfigError naming the package when absent."""
    try:
        from hri_msgs import msg
    except ImportError:
        raise ConfigError(MISSING_HRI_MSGS) from None
    return msg


def image_message(header, bgr):
    """Return a bgr8 sensor_msgs/Image of a BGR array with ``header``."""
    from sensor_msgs.msg import Image
    fields = encode_image(bgr)
    message = Image(header=header, height=fields['height'], width=fields['width'],
                    encoding=fields['encoding'], is_bigendian=fields['is_bigendian'],
                    step=fields['step'])
    message.data = array.array('B', fields['data'].tobytes())
    return message


class Rep155FacePublisher:
    """Publish face_id_node's faces as REP-155 topics; per-face publishers live with a face."""

    def __init__(self, node, max_gap_s):
        """Create ``/humans/faces/tracked`` and ``/humans/candidate_matches`` on ``node``."""
        self.msg = hri_msgs_types()
        self.node = node
        self.publisher = Rep155Publisher(session_token(), max_gap_s)
        self.tracked = node.create_publisher(self.msg.IdsList, FACES_TRACKED, 1)
        self.matches = node.create_publisher(self.msg.IdsMatch, CANDIDATE_MATCHES, 10)
        self._faces = {}

    def publish(self, header, image, result, pipeline):
        """Publish one frame's REP-155 content with the camera image's ``header``."""
        msg = self.msg
        publication = self.publisher.frame(image, result, pipeline)
        for face_id in publication.started:
            self._faces[face_id] = {name: self.node.create_publisher(
                msg.FacialLandmarks if name == 'landmarks' else msg.NormalizedRegionOfInterest2D
                if name == 'roi' else _image_type(), face_topic(face_id, name), 1)
                for name in FACE_TOPICS}
        for face in publication.faces:
            topics = self._faces[face.face_id]
            xmin, ymin, xmax, ymax = face.roi
            topics['roi'].publish(msg.NormalizedRegionOfInterest2D(
                header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=face.confidence))
            topics['cropped'].publish(image_message(header, face.cropped))
            topics['aligned'].publish(image_message(header, face.aligned))
            fields = face.landmarks
            topics['landmarks'].publish(msg.FacialLandmarks(
                header=header, height=fields['height'], width=fields['width'],
                landmarks=[msg.NormalizedPointOfInterest2D(x=x, y=y, c=c)
                           for x, y, c in fields['entries']]))
        self.tracked.publish(msg.IdsList(header=header, ids=list(publication.ids)))
        for match in publication.matches:
            self.matches.publish(msg.IdsMatch(**match.fields()))
        for face_id in publication.ended:
            self._end(face_id)

    def withdraw(self):
        """Withdraw every face (deactivation): an empty list, matches at 0, topics ended."""
        listed, withdrawn = self.publisher.reset()
        self.tracked.publish(self.msg.IdsList(ids=[]))
        for match in withdrawn:
            self.matches.publish(self.msg.IdsMatch(**match.fields()))
        for face_id in listed:
            self._end(face_id)

    def close(self):
        """Withdraw every face and destroy every publisher."""
        self.withdraw()
        for publisher in (self.tracked, self.matches):
            self.node.destroy_publisher(publisher)

    def _end(self, face_id):
        for publisher in self._faces.pop(face_id, {}).values():
            self.node.destroy_publisher(publisher)


def _image_type():
    from sensor_msgs.msg import Image
    return Image
