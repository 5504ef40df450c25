"""Pause and resume of shared ad objects, pure: a resume restores what the pauses changed and
nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.ad_platforms.holds import Hold, on_pause, on_resume


def test_a_running_ad_is_paused_and_runs_again_when_its_last_holder_resumes() -> None:
    hold, pause = on_pause(None, "p1/*", "ACTIVE")
    assert pause and hold == Hold(frozenset({"p1/*"}), "ACTIVE")
    hold, pause = on_pause(hold, "p2/*", "PAUSED")  # a second product's breaker, same campaign
    assert not pause and hold.status_before == "ACTIVE"  # paused already; the first view stands
    hold2, run = on_resume(hold, "p1/*")
    assert not run and hold2 is not None and hold2.holders == {"p2/*"}
    released, run = on_resume(hold2, "p2/*")
    assert run and released is None


def test_an_ad_the_merchant_had_paused_stays_paused() -> None:
    hold, pause = on_pause(None, "p1/*", "PAUSED")
    assert not pause
    released, run = on_resume(hold, "p1/*")
    assert released is None and not run


def test_a_redelivered_action_changes_nothing() -> None:
    hold, _ = on_pause(None, "p1/*", "ENABLED")
    again, pause = on_pause(hold, "p1/*", "PAUSED")
    assert again == hold and pause  # setting PAUSED again is harmless
    released, run = on_resume(hold, "p1/*")
    assert (released, run) == (None, True)
    assert on_resume(released, "p1/*") == (None, False)  # a resume seen twice
    assert on_resume(hold, "p9/*") == (hold, False)  # a resume without its pause


@given(
    st.sampled_from(["ACTIVE", "PAUSED"]),
    st.lists(st.tuples(st.sampled_from(["pause", "resume"]), st.sampled_from("abc")), max_size=30),
)
def test_the_ad_runs_exactly_when_no_breaker_holds_it_and_it_ran_before(
    initial: str, actions: list[tuple[str, str]]
) -> None:
    status, hold, holding = initial, None, set()
    for kind, holder in actions:
        if kind == "pause":
            hold, change = on_pause(hold, holder, status)
            holding.add(holder)
            if change:
                status = "PAUSED"
        else:
            hold, change = on_resume(hold, holder)
            holding.discard(holder)
            if change:
                status = "ACTIVE"
        assert status == ("PAUSED" if holding or initial == "PAUSED" else "ACTIVE")
        assert (hold is None) == (not holding)
