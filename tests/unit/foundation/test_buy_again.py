"""Buy again: frequency and recency in the user's own event time."""

from __future__ import annotations

from streamrec.foundation.buy_again import buy_again
from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.schema import Event

DAY = 86_400.0
CONFIG = FeatureConfig(purchased_items_max=10)


def _bought(*purchases: tuple[str, float]) -> UserFeatures:
    user = UserFeatures("u")
    for n, (item, day) in enumerate(purchases):
        apply_event(user, Event(f"e{n}", "purchase", "u", item, day * DAY), None, CONFIG)
    return user


def test_often_and_lately_bought_items_come_first():
    user = _bought(("soap", 0), ("soap", 10), ("soap", 20), ("tea", 25), ("lamp", 1), ("tea", 29), ("rice", 30))
    ranked = buy_again(user, half_life_s=30 * DAY, k=3)
    assert [item for item, *_ in ranked] == ["soap", "tea", "rice"]
    soap = ranked[0]
    assert soap[2] == 3 and soap[3] == 20 * DAY and abs(soap[1] - 3 * 2 ** (-10 / 30)) < 1e-9


def test_the_half_life_trades_frequency_for_recency():
    user = _bought(("soap", 0), ("soap", 1), ("soap", 2), ("tea", 100))
    assert buy_again(user, half_life_s=1e9, k=1)[0][0] == "soap"  # frequency
    assert buy_again(user, half_life_s=DAY, k=1)[0][0] == "tea"  # recency


def test_ages_count_from_the_users_latest_event_not_the_wall_clock():
    user = _bought(("soap", 0), ("soap", 1), ("soap", 1.5), ("tea", 2))  # a log of long ago, replayed
    assert buy_again(user, half_life_s=DAY, k=2)[0][0] == "soap"
    assert buy_again(UserFeatures("nobody"), half_life_s=DAY, k=5) == []
