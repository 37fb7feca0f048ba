"""The dashboard's pure statistics against textbook values."""

from __future__ import annotations

from datetime import date

import pytest

from leadflow.campaigns import stats
from leadflow.campaigns.analytics import dashboard_period
from leadflow.campaigns.stats import Variant


def test_percentiles_of_counted_values_nearest_rank() -> None:
    values = [(10.0, 1), (20.0, 1), (30.0, 1), (60.0, 1), (180.0, 1)]
    assert stats.percentile(values, 0.5) == 30
    assert stats.percentile(values, 0.9) == 180
    assert stats.percentile([(5.0, 9), (500.0, 1)], 0.9) == 5  # counts weigh
    assert stats.percentile([(5.0, 8), (500.0, 2)], 0.9) == 500
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([(1.0, 0)], 0.5) is None


def test_ratio_and_roi() -> None:
    assert stats.ratio(1, 3) == 0.3333 and stats.ratio(1, 0) == 0.0
    assert stats.roi(1500, 1147.5) == 0.3072
    assert stats.roi(100, 0) is None


def test_fisher_exact_matches_the_tea_tasting_lady() -> None:
    assert stats.fisher_exact_p(3, 4, 1, 4) == pytest.approx(0.4857142857)  # Fisher 1935
    assert stats.fisher_exact_p(3, 5, 1, 5) == pytest.approx(0.5238095238)
    assert stats.fisher_exact_p(5, 5, 0, 5) == pytest.approx(0.0079365079)


def test_two_proportion_z_test() -> None:
    assert stats.two_proportion_p(30, 100, 50, 100) == pytest.approx(0.003892, abs=1e-6)  # z = -2.887
    assert stats.two_proportion_p(0, 0, 1, 1) == 1.0
    assert stats.two_proportion_p(5, 10, 5, 10) == pytest.approx(1.0)


def test_compare_says_it_in_words() -> None:
    assert stats.compare([Variant("only", 10, 3)]) is None
    big = stats.compare([Variant("A", 1000, 220), Variant("B", 1000, 270), Variant("C", 3, 3)])
    assert big is not None
    assert (big.a, big.b, big.test, big.significant) == ("A", "B", "two_proportion_z", True)
    assert big.summary.startswith("B converts better than A (27.0% vs 22.0%); the difference is unlikely")
    assert "(p = 0.0093)" in big.summary

    small = stats.compare([Variant("ad-b", 5, 1), Variant("ad-a", 5, 3)])
    assert small is not None
    assert (small.a, small.test, small.significant, small.p_value) == ("ad-a", "fisher_exact", False, 0.5238)
    assert small.summary.startswith("Not enough evidence yet")

    none = stats.compare([Variant("A", 5, 0), Variant("B", 5, 0)])
    assert none is not None and none.test == "none" and not none.significant and none.p_value is None

    tiny_p = stats.compare([Variant("A", 5000, 500), Variant("B", 5000, 1000)])
    assert tiny_p is not None and "(p < 0.001)" in tiny_p.summary


def test_default_period() -> None:
    assert dashboard_period(None, None, date(2025, 3, 31)) == (date(2025, 3, 2), date(2025, 3, 31))
    assert dashboard_period(date(2025, 1, 1), None, date(2025, 1, 5)) == (date(2025, 1, 1), date(2025, 1, 5))
