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
Build ``/patient_id`` and related messages with any ROS message classes.

rclpy's generated classes and the ``rosbags`` dataclasses both take every field as a keyword,
so one builder serves the node (live topics) and the offline tools (bags written without ROS);
it lives in the core because both the nodes and evaluation's bag replay use it.
``rosbags`` lacks vision_msgs: its 4.x definitions (Humble, Jazzy) are registered here.

Each ``Detection2D``'s header is the source image's header when the face's identity was
embedded in that image (fresh); when the tracker carried it from an earlier frame's
embedding, the header has that frame's stamp (same ``frame_id``). So ``detection.header.stamp
== array.header.stamp`` exactly when the identity is fresh (``is_fresh``).
"""

import numpy as np

VISION_MSGS = {
    'vision_msgs/msg/Point2D': 'float64 x\nfloat64 y\n',
    'vision_msgs/msg/Pose2D': 'vision_msgs/Point2D position\nfloat64 theta\n',
    'vision_msgs/msg/BoundingBox2D': 'vision_msgs/Pose2D center\nfloat64 size_x\n'
                                     'float64 size_y\n',
    'vision_msgs/msg/ObjectHypothesis': 'string class_id\nfloat64 score\n',
    'vision_msgs/msg/ObjectHypothesisWithPose':
        'vision_msgs/ObjectHypothesis hypothesis\n'
        'geometry_msgs/PoseWithCovariance pose\n',
    'vision_msgs/msg/Detection2D': 'std_msgs/Header header\n'
                                   'vision_msgs/ObjectHypothesisWithPose[] results\n'
                                   'vision_msgs/BoundingBox2D bbox\nstring id\n',
    'vision_msgs/msg/Detection2DArray': 'std_msgs/Header header\n'
                                        'vision_msgs/Detection2D[] detections\n',
    'vision_msgs/msg/VisionInfo': 'std_msgs/Header header\nstring method\n'
                                  'string database_location\nint32 database_version\n',
}

DETECTION_TYPES = ('vision_msgs/msg/Point2D', 'vision_msgs/msg/Pose2D',
                   'vision_msgs/msg/BoundingBox2D', 'vision_msgs/msg/ObjectHypothesis',
                   'vision_msgs/msg/ObjectHypothesisWithPose', 'vision_msgs/msg/Detection2D',
                   'vision_msgs/msg/Detection2DArray', 'geometry_msgs/msg/PoseWithCovariance',
                   'geometry_msgs/msg/Pose', 'geometry_msgs/msg/Point',
                   'geometry_msgs/msg/Quaternion', 'std_msgs/msg/Header',
                   'builtin_interfaces/msg/Time')


def rosbags_typestore(store='ROS2_HUMBLE'):
    """Return a rosbags typestore (Humble by default) with vision_msgs registered."""
    from rosbags.typesys import get_typestore, get_types_from_msg, Stores
    typestore = get_typestore(getattr(Stores, store))
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


def rclpy_detection_types():
    """Return the rclpy message classes ``build_detection_array`` needs (ROS installed)."""
    from builtin_interfaces import msg as builtin
    from geometry_msgs import msg as geometry
    from std_msgs import msg as std
    from vision_msgs import msg as vision
    modules = {'builtin_interfaces': builtin, 'geometry_msgs': geometry, 'std_msgs': std,
               'vision_msgs': vision}
    return {name: getattr(modules[name.split('/', 1)[0]], name.rsplit('/', 1)[1])
            for name in DETECTION_TYPES}


def stamp_seconds(stamp):
    """Return a ``builtin_interfaces/Time`` (rclpy or rosbags) as float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def is_fresh(detection, array_header):
    """Whether a ``Detection2D``'s identity was embedded in its array's own image."""
    stamp, frame_stamp = detection.header.stamp, array_header.stamp
    return (stamp.sec, stamp.nanosec) == (frame_stamp.sec, frame_stamp.nanosec)


def evidence_header(types, header, embedded_at):
    """Return ``header``, or a copy stamped ``embedded_at`` seconds (a carried identity)."""
    if embedded_at is None:
        return header
    nanoseconds = round(embedded_at * 1e9)
    if (nanoseconds // 10**9, nanoseconds % 10**9) == (header.stamp.sec, header.stamp.nanosec):
        nanoseconds -= 1  # never equal to the frame's own stamp: that means fresh
    seconds, nanoseconds = divmod(nanoseconds, 10**9)
    stamp = types['builtin_interfaces/msg/Time'](sec=int(seconds), nanosec=int(nanoseconds))
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=header.frame_id)


def build_detection_array(types, header, detections):
    """
    Build a ``vision_msgs/Detection2DArray`` from ``PatientDetection`` objects.

    ``types`` maps full type names (``vision_msgs/msg/Detection2D``...) to message classes;
    ``header`` is the source image's header, copied into the array and into every detection
    whose identity is fresh; a carried one gets its embedding's stamp (``evidence_header``).
    """
    def make(name, **fields):
        return types[name](**fields)

    identity_pose = make(
        'geometry_msgs/msg/PoseWithCovariance',
        pose=make('geometry_msgs/msg/Pose',
                  position=make('geometry_msgs/msg/Point', x=0.0, y=0.0, z=0.0),
                  orientation=make('geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0,
                                   w=1.0)),
        covariance=np.zeros(36, np.float64))
    messages = []
    for detection in detections:
        results = [make('vision_msgs/msg/ObjectHypothesisWithPose',
                        hypothesis=make('vision_msgs/msg/ObjectHypothesis',
                                        class_id=item.class_id, score=float(item.score)),
                        pose=identity_pose)
                   for item in detection.hypotheses]
        center = make('vision_msgs/msg/Pose2D',
                      position=make('vision_msgs/msg/Point2D', x=detection.center_x,
                                    y=detection.center_y),
                      theta=0.0)
        bbox = make('vision_msgs/msg/BoundingBox2D', center=center,
                    size_x=detection.size_x, size_y=detection.size_y)
        messages.append(make('vision_msgs/msg/Detection2D',
                             header=evidence_header(types, header, detection.embedded_at),
                             results=results, bbox=bbox, id=detection.track_id))
    return make('vision_msgs/msg/Detection2DArray', header=header, detections=messages)
