"""The billing plans, pure: each plan's figures from a period's entries, the fee's one rounding,
and a proof that always sums to its invoice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from revloop.billing import Booked, Plan, Terms, fee_minor, scaled_minor, settle

ATTRIBUTED = Terms(Plan.ATTRIBUTED_INCREMENTAL, fee_bp=2000)


def attributed(n: int, order: str, amount: int, currency: str = "USD") -> Booked:
    code = "attributed_revenue" if amount > 0 else "attributed_revenue_reversal"
    return Booked(f"a{n}", code, abs(amount), currency, order, (f"score-{n}",))


def revenue(n: int, order: str, amount: int, currency: str = "USD") -> Booked:
    code = "revenue" if amount > 0 else "revenue_reversal"
    return Booked(f"r{n}", code, abs(amount), currency, order, (f"score-{n}",))


def spend(n: int, amount: int, currency: str = "USD") -> Booked:
    code = "ad_spend" if amount > 0 else "ad_spend_reversal"
    return Booked(f"s{n}", code, abs(amount), currency, None)


def baseline(amount: int, currency: str = "USD") -> Booked:
    return Booked(f"b-{currency}", "baseline", amount, currency, None)


def test_a_period_bills_its_net_incremental_revenue_and_each_order_its_share() -> None:
    entries = [
        attributed(1, "o1", 5000),
        attributed(2, "o2", 3001),
        attributed(3, "o1", -1000),  # a refund of o1 in the same period
        attributed(4, "o9", 2000, "EUR"),
        revenue(5, "o1", 9000),  # another plan's figure: not billed here
        Booked("fee", "success_fee", 99, "USD", None),  # not revenue: left out
    ]
    eur, usd = settle(entries, ATTRIBUTED)
    assert (usd.currency, usd.incremental_minor, usd.base_minor, usd.fee_minor) == (
        "USD",
        7001,
        7001,
        1400,
    )
    assert [(x.order_id, x.amount_minor, x.entry_ids) for x in usd.lines] == [
        ("o1", 4000, ("a1", "a3")),
        ("o2", 3001, ("a2",)),
    ]
    assert usd.revenue_minor == 9000 and usd.expected_minor is None
    assert sum(x.fee_minor for x in usd.lines) == usd.fee_minor
    assert (eur.incremental_minor, eur.fee_minor) == (2000, 400)


def test_an_adjustment_period_with_more_reversals_issues_a_credit_note() -> None:
    (s,) = settle([attributed(1, "o1", -2500), attributed(2, "o2", 1000)], ATTRIBUTED)
    assert (s.incremental_minor, s.fee_minor) == (-1500, -300)
    assert sum(x.fee_minor for x in s.lines) == -300


def test_baseline_uplift_bills_revenue_above_the_grown_baseline() -> None:
    terms = Terms(Plan.BASELINE_UPLIFT, fee_bp=2000, growth_bp=10_500)
    entries = [
        revenue(1, "o1", 600_000),
        revenue(2, "o2", 500_000),
        revenue(3, "o1", -40_000),  # a refund
        attributed(4, "o2", 500_000),
        baseline(1_000_000),
    ]
    (s,) = settle(entries, terms)
    # 1,060,000 of revenue against 1,000,000 x 1.05: 10,000 of uplift, 20% of it.
    assert (s.revenue_minor, s.baseline_minor, s.expected_minor) == (
        1_060_000,
        1_000_000,
        1_050_000,
    )
    assert (s.base_minor, s.fee_minor) == (10_000, 2_000)
    assert [(x.order_id, x.amount_minor) for x in s.lines] == [("o1", 560_000), ("o2", 500_000)]
    assert sum(x.fee_minor for x in s.lines) == 2_000
    assert s.attributed == (("o2", 500_000, ("score-4",)),)


def test_baseline_uplift_floors_at_zero_and_needs_a_baseline() -> None:
    terms = Terms(Plan.BASELINE_UPLIFT, fee_bp=2000)
    (below,) = settle([revenue(1, "o1", 900), baseline(1000)], terms)
    assert (below.base_minor, below.fee_minor) == (0, 0)
    assert all(x.fee_minor == 0 for x in below.lines)
    # A currency without a booked baseline is not billed by this plan.
    assert settle([revenue(1, "o1", 900, "EUR"), baseline(1000)], terms)[0].currency == "USD"
    assert [s.currency for s in settle([revenue(1, "o1", 900, "EUR")], terms)] == []


def test_roas_profit_share_bills_a_share_of_revenue_above_the_baseline_roas() -> None:
    # The seeds' example: $1,000 of spend returning $4,470 at a 3.0 baseline leaves $1,470,
    # and 15% of it is $220.50.
    terms = Terms(Plan.ROAS_PROFIT_SHARE, fee_bp=1500, baseline_roas_bp=30_000)
    entries = [
        attributed(1, "o1", 300_000),
        attributed(2, "o2", 147_000),
        spend(3, 60_000),
        spend(4, 50_000),
        spend(5, -10_000),  # a restatement down
    ]
    (s,) = settle(entries, terms)
    assert (s.spend_minor, s.expected_minor, s.incremental_minor) == (100_000, 300_000, 447_000)
    assert (s.base_minor, s.fee_minor) == (147_000, 22_050)
    assert s.spend_entry_ids == ("s3", "s4", "s5")
    assert sum(x.fee_minor for x in s.lines) == 22_050
    (poor,) = settle([attributed(1, "o1", 200_000), spend(2, 100_000)], terms)
    assert (poor.base_minor, poor.fee_minor) == (0, 0)


def test_rates_round_half_to_even_once() -> None:
    assert scaled_minor(25, 2000) == 5 and scaled_minor(5, 5000) == 2 and scaled_minor(7, 5000) == 4
    assert scaled_minor(-25, 5000) == -12
    assert fee_minor(1_234_567, 1500) == 185_185  # 185,185.05


entries_strategy = st.lists(
    st.tuples(
        st.sampled_from(["attributed", "revenue", "spend"]),
        st.sampled_from("abcdef"),
        st.integers(-5000, 20_000).filter(bool),
    ),
    max_size=30,
)


@given(
    entries_strategy,
    st.sampled_from(list(Plan)),
    st.integers(0, 10_000),
    st.integers(1, 1_000_000),
    st.integers(0, 50_000),
)
def test_every_plan_s_proof_sums_to_its_invoice(
    moves: list[tuple[str, str, int]], plan: Plan, fee_bp: int, base: int, rate_bp: int
) -> None:
    make = {"attributed": attributed, "revenue": revenue}
    entries = [
        spend(n, amount) if kind == "spend" else make[kind](n, order, amount)
        for n, (kind, order, amount) in enumerate(moves)
    ]
    terms = Terms(plan, fee_bp, growth_bp=rate_bp, baseline_roas_bp=rate_bp)
    for s in settle([*entries, baseline(base)], terms):
        assert s.fee_minor == fee_minor(s.base_minor, fee_bp)
        assert sum(x.amount_minor for x in s.lines) == (
            s.revenue_minor if plan is Plan.BASELINE_UPLIFT else s.incremental_minor
        )
        assert sum(x.fee_minor for x in s.lines) == s.fee_minor
        assert all(x.amount_minor != 0 for x in s.lines)
        if plan is not Plan.ATTRIBUTED_INCREMENTAL:
            assert s.base_minor >= 0
