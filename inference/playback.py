"""Real-time playback of a video file: frame ``i`` is due ``i / fps`` seconds after the first one.

``predict_from_video.py`` shows a file in its window at the file's own frame rate: when the loop falls behind the
clock (a prediction took longer than a frame), it skips predictions (boxes stay drawn from the last one) rather than
slowing the video down. ``--no-display`` and ``--as-fast-as-possible`` do not pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """The wall-clock schedule of a file played at ``fps``.

    ``late(i)``: the loop is more than a frame behind frame ``i``'s due time, so the caller should skip work (a
    prediction) to catch up; being less than a frame behind (as after any prediction) is made up by shorter waits.
    ``delay_ms(i)``: milliseconds to wait before frame ``i`` is due (0 when late).
    A loop more than ``max_lag_s`` behind (a slow display, a paused process) restarts the schedule from now instead
    of racing through frames to catch up. Frame 0 is due when the pacer is made.
    """

    def __init__(self, fps: float, *, max_lag_s: float = 0.5, clock: Callable[[], float] = time.perf_counter):
        if not fps > 0:
            raise ValueError(f"fps {fps} must be > 0")
        self.period, self.max_lag_s, self.clock = 1.0 / fps, max_lag_s, clock
        self._origin = clock()  # when frame 0 is due: now
        self.restarts = 0

    def _due(self, index: int) -> float:
        now = self.clock()
        due = self._origin + index * self.period
        if now - due > self.max_lag_s:
            self._origin, due = now - index * self.period, now
            self.restarts += 1
        return due

    def late(self, index: int) -> bool:
        return self.clock() > self._due(index) + self.period

    def delay_ms(self, index: int) -> int:
        return max(0, round((self._due(index) - self.clock()) * 1000))
