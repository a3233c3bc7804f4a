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
The newest-frame policy: a camera callback never waits and latency never builds up.

The producer (a subscription callback, or a bag replayed at its recorded pace) ``offer``s
each frame; the worker ``take``s the newest one. A frame still waiting when a newer one
arrives is dropped and counted, exactly as on the robot.
"""

import threading
import time


class NewestFrameSlot:
    """A one-place, thread-safe mailbox that keeps only the newest frame."""

    def __init__(self):
        """Start empty and open."""
        self._condition = threading.Condition()
        self._frame = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def offer(self, frame):
        """Store ``frame`` (never blocks); return True if it replaced an unprocessed frame."""
        with self._condition:
            replaced = self._frame is not None
            self._frame = frame
            self.received += 1
            self.dropped += int(replaced)
            self._condition.notify()
            return replaced

    def take(self, timeout=None):
        """
        Return the newest frame and empty the slot; None on timeout or once closed.

        ``timeout`` is in seconds; None waits until a frame arrives or the slot closes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._frame is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._condition.wait(remaining)
            frame, self._frame = self._frame, None
            return frame

    def close(self):
        """Wake the worker and refuse to wait any more; a waiting frame is still returned."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self):
        """Return True once ``close`` was called."""
        return self._closed
