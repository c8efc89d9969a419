"""The retrainer's time: event time, never later than the retrainer's own clock.

Training times (a training's trigger ``at``) and the cooldowns counted from them use the time
the retrainer is told: a drift alarm's ``window_end`` (event time, from the rows' timestamps)
or the ``now`` of a tick. Event time is what makes a replay or a backtest exact: it runs months
of stream in seconds, and cooldowns measured on the wall clock would never pass during it (or
would all pass at once). But event time is written by producers: one row stamped
``9998-12-31`` made the alarm's ``window_end`` the training's time, and every later cooldown
then counted from year 9998.

So event time is **clamped to the retrainer's clock**: the later of the wall clock and the
latest ``now`` a tick was given. Live, ticks carry the wall clock, so a hostile future stamp
becomes "now"; an honest event time is never in the future (clock skew aside, which the clamp
also absorbs), so nothing else changes. A replay ticks with stream time, so a stream dated in
the future (synthetic data) replays as before. Times read back from the store go through the
same clamp, which heals trainings recorded with a future time before it existed.

A time in the far past is not clamped: it can only make a cooldown look longer over, i.e. let
one retraining of an episode come sooner; episodes, ``max_attempts`` and the wasted-computation
guard still bound how many run.

>>> from datetime import datetime, timedelta, timezone
>>> clock = RetrainerClock()
>>> clock.clamp(datetime(9998, 12, 31, tzinfo=timezone.utc)).year < 9998
True
>>> clock.clamp(datetime(2020, 1, 1, tzinfo=timezone.utc)).year
2020
>>> clock.saw(datetime(9000, 1, 1, tzinfo=timezone.utc))  # a replay of a far-future stream
>>> clock.clamp(datetime(9000, 1, 1, tzinfo=timezone.utc)).year
9000
"""

from __future__ import annotations

from datetime import datetime

from driftline.schemas import utcnow

__all__ = ["RetrainerClock"]


class RetrainerClock:
    """The latest time the retrainer was ticked with, and the clamp of event times to it."""

    def __init__(self) -> None:
        self._latest: datetime | None = None

    def saw(self, now: datetime) -> None:
        """A tick's ``now`` (the wall clock live, stream time in a replay)."""
        if self._latest is None or now > self._latest:
            self._latest = now

    def now(self) -> datetime:
        """The retrainer's clock: the wall clock, or the latest tick's time if later."""
        wall = utcnow()
        return wall if self._latest is None or self._latest < wall else self._latest

    def clamp(self, event_time: datetime) -> datetime:
        """``event_time``, or the retrainer's clock if that is earlier."""
        return min(event_time, self.now())
