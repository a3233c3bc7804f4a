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

"""The newest-frame policy with real threads: stale frames are dropped, never queued."""

import threading
import time

from face_id_ros.core.newest_frame import NewestFrameSlot


def test_only_the_newest_waiting_frame_is_taken_and_the_rest_are_counted_dropped():
    slot = NewestFrameSlot()
    assert slot.offer(1) is False
    assert slot.offer(2) is True
    assert slot.offer(3) is True
    assert slot.take(timeout=0) == 3
    assert (slot.received, slot.dropped) == (3, 2)
    assert slot.take(timeout=0.01) is None


def test_a_slow_worker_sees_fresh_frames_and_the_producer_never_blocks():
    slot = NewestFrameSlot()
    processed = []

    def worker():
        while True:
            frame = slot.take()
            if frame is None:
                return
            time.sleep(0.02)  # processing slower than the 200 Hz producer
            processed.append(frame)

    thread = threading.Thread(target=worker)
    thread.start()
    started = time.monotonic()
    for index in range(100):
        slot.offer(index)
        time.sleep(0.005)
    offer_time = time.monotonic() - started
    time.sleep(0.05)
    slot.close()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert offer_time < 1.5  # 100 offers at 5 ms: the producer was never held up
    assert processed == sorted(processed) and processed[-1] == 99
    assert len(processed) + slot.dropped == 100
    assert slot.dropped > 50


def test_close_wakes_a_waiting_worker():
    slot = NewestFrameSlot()
    results = []
    thread = threading.Thread(target=lambda: results.append(slot.take()))
    thread.start()
    time.sleep(0.05)
    slot.close()
    thread.join(timeout=1)
    assert results == [None] and slot.closed
