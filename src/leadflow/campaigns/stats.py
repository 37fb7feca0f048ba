"""The statistics of the analytics dashboard, pure: percentiles of counted values, the A/B test, ratios.

No I/O and no clock (DESIGN.md §4 rule 4): ``campaigns.analytics`` feeds these with the sums
``campaigns.repository`` computed in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SIGNIFICANCE = 0.05  # a difference with p below this is "unlikely to be chance"
FISHER_BELOW = 5  # an expected cell count below this: Fisher's exact test instead of the z-test


def ratio(part: float, whole: float, digits: int = 4) -> float:
    """``part / whole`` rounded, 0 when there is no whole."""
    return round(part / whole, digits) if whole else 0.0


def roi(revenue: float, cost: float) -> float | None:
    """Return on investment, (revenue - cost) / cost; None without a cost."""
    return round((revenue - cost) / cost, 4) if cost else None


def percentile(counted: Iterable[tuple[float, int]], q: float) -> float | None:
    """The ``q`` quantile (0 < q ≤ 1, nearest rank) of values given as (value, how many times).

    None for no values. The median is ``percentile(values, 0.5)``, p90 ``percentile(values, 0.9)``.
    """
    pairs = sorted((v, n) for v, n in counted if n > 0)
    total = sum(n for _, n in pairs)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, n in pairs:
        seen += n
        if seen >= rank:
            return value
    return pairs[-1][0]  # pragma: no cover - rank ≤ total


def two_proportion_p(a_hits: int, a_n: int, b_hits: int, b_n: int) -> float:
    """Two-sided p-value of the two-proportion z-test (pooled variance); 1 when it cannot be computed."""
    if not a_n or not b_n:
        return 1.0
    pooled = (a_hits + b_hits) / (a_n + b_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a_n + 1 / b_n))
    if se == 0:
        return 1.0
    z = (a_hits / a_n - b_hits / b_n) / se
    return math.erfc(abs(z) / math.sqrt(2))


def fisher_exact_p(a_hits: int, a_n: int, b_hits: int, b_n: int) -> float:
    """Two-sided p-value of Fisher's exact test of the 2x2 table (hits, misses) by (A, B)."""
    hits, n = a_hits + b_hits, a_n + b_n

    def log_p(x: int) -> float:  # the hypergeometric probability of x hits in A, in logs
        return (
            math.lgamma(hits + 1)
            - math.lgamma(x + 1)
            - math.lgamma(hits - x + 1)
            + math.lgamma(n - hits + 1)
            - math.lgamma(a_n - x + 1)
            - math.lgamma(n - hits - a_n + x + 1)
            - (math.lgamma(n + 1) - math.lgamma(a_n + 1) - math.lgamma(n - a_n + 1))
        )

    low, high = max(0, a_n - (n - hits)), min(a_n, hits)
    observed = log_p(a_hits)
    total = sum(math.exp(log_p(x)) for x in range(low, high + 1) if log_p(x) <= observed + 1e-7)
    return min(1.0, total)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    leads: int
    converted: int

    @property
    def rate(self) -> float:
        return ratio(self.converted, self.leads)


@dataclass(frozen=True, slots=True)
class Verdict:
    a: str
    b: str
    test: str  # "fisher_exact" | "two_proportion_z" | "none"
    p_value: float | None
    significant: bool
    summary: str


def compare(variants: Sequence[Variant]) -> Verdict | None:
    """The A/B test of the two variants with the most leads (A is the first by name), in plain words.

    Fisher's exact test when an expected count is below :data:`FISHER_BELOW`, else the two-proportion
    z-test. None with fewer than two variants.
    """
    if len(variants) < 2:
        return None
    top = sorted(variants, key=lambda v: (-v.leads, v.name))[:2]
    a, b = sorted(top, key=lambda v: v.name)
    hits, n = a.converted + b.converted, a.leads + b.leads
    if not hits or hits == n:
        word = "none" if not hits else "all"
        return Verdict(
            a.name, b.name, "none", None, False, f"Not enough evidence yet: {word} of the leads converted."
        )
    expected = min(a.leads, b.leads) * min(hits, n - hits) / n
    if expected < FISHER_BELOW:
        test, p = "fisher_exact", fisher_exact_p(a.converted, a.leads, b.converted, b.leads)
    else:
        test, p = "two_proportion_z", two_proportion_p(a.converted, a.leads, b.converted, b.leads)
    p = round(p, 4)
    better, worse = (b, a) if b.rate > a.rate else (a, b)
    shown = f"{p:.2g}" if p >= 0.001 else "< 0.001"
    shown = f"p = {shown}" if p >= 0.001 else f"p {shown}"
    if p < SIGNIFICANCE and better.rate != worse.rate:
        summary = (
            f"{better.name} converts better than {worse.name} ({better.rate:.1%} vs {worse.rate:.1%}); "
            f"the difference is unlikely to be chance ({shown})."
        )
        return Verdict(a.name, b.name, test, p, True, summary)
    summary = (
        f"Not enough evidence yet: {a.name} converts {a.rate:.1%} and {b.name} {b.rate:.1%}, "
        f"a difference that could be chance ({shown})."
    )
    return Verdict(a.name, b.name, test, p, False, summary)
