"""The bench's statistics (tests/bench/stats.py) against values worked out by hand and t tables."""

import math

import pytest

from tests.bench.stats import parity, t_cdf, t_quantile, welch_interval

# Two-sided 95% critical values of Student's t from printed tables (e.g. NIST/SEMATECH 1.3.6.7.2).
T_975 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_the_tables(df):
    assert t_quantile(0.975, df) == pytest.approx(T_975[df], abs=1e-4)
    assert t_cdf(T_975[df], df) == pytest.approx(0.975, abs=1e-5)


def test_t_distribution_is_symmetric_with_fractional_df():
    assert t_cdf(0.0, 5.5) == pytest.approx(0.5)
    assert t_quantile(0.025, 5.5) == pytest.approx(-t_quantile(0.975, 5.5))
    # Between its integer neighbours, as a fractional Welch df must be.
    assert T_975[4] > t_quantile(0.975, 4.5) > t_quantile(0.975, 5)


def test_welch_interval_worked_by_hand():
    # means 2 and 5, both variances 1: SE = sqrt(1/3 + 1/3), df = (2/3)^2 / (2 (1/3)^2 / 2) = 4,
    # half width = t(0.975, 4) x SE = 2.776445 x 0.816497 = 2.266958.
    interval = welch_interval([1, 2, 3], [4, 5, 6])
    assert interval.difference == -3
    assert interval.df == pytest.approx(4)
    assert interval.standard_error == pytest.approx(math.sqrt(2 / 3))
    assert (interval.low, interval.high) == pytest.approx((-5.266958, -0.733042), abs=1e-5)


def test_welch_interval_with_unequal_variances_and_sizes():
    # a: mean 3, variance 2.5, n 5; b: mean 6, variance 10, n 5 -> SE^2 = 0.5 + 2 = 2.5,
    # df = 2.5^2 / (0.5^2/4 + 2^2/4) = 6.25 / 1.0625 = 5.88235.
    interval = welch_interval([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert interval.df == pytest.approx(6.25 / 1.0625)
    half = t_quantile(0.975, 6.25 / 1.0625) * math.sqrt(2.5)
    assert (interval.low, interval.high) == pytest.approx((-3 - half, -3 + half))
    assert 2.4469 < half / math.sqrt(2.5) < 2.5706  # between t(0.975, 6) and t(0.975, 5)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([87.0, 88.0, 89.0], [87.5, 88.5, 88.0], True),  # interval contains 0
        ([88.10, 88.11, 88.12], [88.00, 88.01, 88.02], True),  # [0.08, 0.12]: inside +-0.3
        ([88.40, 88.41, 88.42], [88.00, 88.01, 88.02], False),  # [0.38, 0.42]: outside
        ([89.0, 89.1, 89.2], [88.0, 88.1, 88.2], False),  # a whole point apart
    ],
)
def test_parity_passes_on_zero_or_within_the_margin(a, b, expected):
    assert parity(welch_interval(a, b), margin=0.3) is expected
