"""The lag model: seconds behind from a table of log-end offsets, and Burrow's statuses."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from revloop.consumer_lag import Observation, Status, lag_seconds, partition_status, worst

ENDS = [(100.0, 0), (110.0, 50), (120.0, 150), (130.0, 150)]


def test_lag_seconds_interpolates_when_the_log_passed_the_commit() -> None:
    assert lag_seconds(ENDS, 150, now=131.0) == 0.0  # read to the end
    assert lag_seconds(ENDS, 25, now=131.0) == 131.0 - 105.0  # halfway from 0 to 50
    assert lag_seconds(ENDS, 100, now=131.0) == 131.0 - 115.0
    assert lag_seconds(ENDS, None, now=131.0) == 31.0  # never committed: from the first sample
    assert lag_seconds([], 5, now=1.0) == 0.0
    # Older than the table: at least as old as its first sample.
    assert lag_seconds([(100.0, 10), (110.0, 20)], 3, now=120.0) == 20.0


def obs(at: float, committed: int | None, end: int, readable: int | None = None) -> Observation:
    return Observation(at, committed, end, end if readable is None else readable)


def test_statuses() -> None:
    caught_up = [obs(0, 10, 12), obs(1, 12, 12)]
    assert partition_status(caught_up, has_members=True) is Status.OK
    # The commit marker after a transaction: readable to where the group is.
    marker = [obs(0, 11, 12, readable=11), obs(1, 11, 12, readable=11)]
    assert partition_status(marker, has_members=False) is Status.OK
    stuck = [obs(0, 10, 20), obs(1, 10, 25), obs(2, 10, 30)]
    assert partition_status(stuck, has_members=True) is Status.STALL
    assert partition_status(stuck, has_members=False) is Status.STOP
    falling_behind = [obs(0, 10, 20), obs(1, 12, 25), obs(2, 14, 30)]
    assert partition_status(falling_behind, has_members=True) is Status.WARN
    catching_up = [obs(0, 10, 20), obs(1, 18, 25), obs(2, 29, 30)]
    assert partition_status(catching_up, has_members=True) is Status.OK
    rewound = [obs(0, 10, 20), obs(1, 4, 20), obs(2, 15, 20)]
    assert partition_status(rewound, has_members=True) is Status.REWIND
    assert partition_status([obs(0, 1, 9)], has_members=True) is Status.OK  # one sample: too soon
    assert worst([Status.OK, Status.STALL, Status.WARN]) is Status.STALL
    assert worst([]) is Status.OK


window = st.lists(
    st.tuples(st.integers(0, 1_000), st.integers(0, 1_000)), min_size=1, max_size=12
).map(lambda pairs: [obs(float(n), min(c, e), e) for n, (c, e) in enumerate(pairs)])


@given(window, st.booleans())
def test_a_window_with_no_lag_at_some_point_is_ok_unless_it_rewound(
    observations: list[Observation], members: bool
) -> None:
    found = partition_status(observations, members)
    commits = [o.committed for o in observations]
    went_back = any(b < a for a, b in itertools.pairwise(commits))
    if any(o.lag == 0 for o in observations) and not went_back:
        assert found is Status.OK
    if found in (Status.STALL, Status.STOP):
        assert all(o.lag > 0 for o in observations)
        assert observations[0].committed == observations[-1].committed
