"""How far behind a consumer group is, in messages and in seconds, and whether it is keeping up
(docs/ops.md, "Consumer lag"). Pure: the sampler (``revloop.lag_sampler``) feeds it what it
reads from Kafka.

**Lag in seconds** is estimated as kafka-lag-exporter does: the sampler keeps, per partition, a
table of (time, log-end offset) samples; the time the log-end offset passed the group's
committed offset, interpolated between the two samples around it, is how old the oldest
unconsumed message is. A commit older than the table's first sample is at least as old as it
(a lower bound, reported as such).

**Statuses** follow Burrow's evaluation over a sliding window of samples of one partition:

- REWIND: the committed offset went back at some point in the window;
- OK: the lag was zero at some point in the window;
- STALL: the committed offset did not move over the whole window while lag remained, and the
  group has members (alive, but not getting anywhere);
- STOP: the same, and the group has no members (nobody is consuming);
- WARN: the committed offset moved, but the lag never shrank and ended larger;
- OK otherwise.

A group's status is its worst partition's. Lag here is *readable* lag: transactional writers
(the normalizer, the worker) leave a commit marker after their last record, which takes an
offset no reader ever receives; the sampler reports the end a read-committed reader can reach,
so a group that has read everything shows 0, not 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.REWIND: 2, Status.STALL: 3, Status.STOP: 4}


@dataclass(frozen=True)
class Observation:
    """One sample of one partition for one group."""

    at: float
    """When it was sampled (Unix seconds)."""
    committed: int | None
    """The group's committed offset; None before its first commit."""
    end: int
    """The log-end offset (the high watermark)."""
    readable_end: int
    """Where a read-committed reader of the partition ends: ``end`` less trailing commit markers
    and records of open transactions."""

    @property
    def lag(self) -> int:
        """Messages the group has still to read (a group that never committed: all of them)."""
        return max(0, self.readable_end - (self.committed or 0))


def lag_seconds(ends: Sequence[tuple[float, int]], committed: int | None, now: float) -> float:
    """How old the oldest message the group has not read is: ``now`` less the time the log-end
    offset passed ``committed``, interpolated in ``ends`` ((time, log-end offset), oldest
    first). 0 when it has read to the last sample's end; at least ``now - ends[0]`` when the
    commit is older than the table."""
    if not ends:
        return 0.0
    position = committed or 0
    if position >= ends[-1][1]:
        return 0.0
    for (t0, e0), (t1, e1) in itertools.pairwise(ends):
        if e0 <= position < e1:
            passed = t0 + (t1 - t0) * (position - e0) / (e1 - e0)
            return max(0.0, now - passed)
    return max(0.0, now - ends[0][0])


def partition_status(window: Sequence[Observation], has_members: bool) -> Status:
    """Burrow's evaluation of one partition over ``window`` (oldest first)."""
    if not window:
        return Status.OK
    commits = [o.committed for o in window if o.committed is not None]
    if any(later < earlier for earlier, later in itertools.pairwise(commits)):
        return Status.REWIND
    lags = [o.lag for o in window]
    if min(lags) == 0 or len(window) < 2:
        return Status.OK
    if window[0].committed == window[-1].committed:
        return Status.STALL if has_members else Status.STOP
    never_shrank = all(later >= earlier for earlier, later in itertools.pairwise(lags))
    if never_shrank and lags[-1] > lags[0]:
        return Status.WARN
    return Status.OK


def worst(statuses: Iterable[Status]) -> Status:
    """A group's status: the worst of its partitions' (OK when it has none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)
