"""Two-sample statistics for the bench: Welch's confidence interval of a difference of means.

Plain Python (no SciPy in the environment): Student's t distribution from the regularized
incomplete beta function (continued fraction, Numerical Recipes 6.4), its quantile by bisection.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of I_x(a, b)'s continued fraction; converges for x < (a+1)/(a+b+2)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m)),
            -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1 - front * _beta_continued_fraction(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (possibly fractional) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection (t_cdf is monotonic)."""
    low, high = -1e6, 1e6
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class WelchInterval:
    """mean(a) - mean(b) and its confidence interval, without assuming equal variances."""

    difference: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite degrees of freedom
    standard_error: float
    confidence: float


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> WelchInterval:
    """Welch's t interval for mean(a) - mean(b); each side needs at least two values."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    difference = statistics.fmean(a) - statistics.fmean(b)
    standard_error = math.sqrt(va + vb)
    if standard_error == 0:
        return WelchInterval(difference, difference, difference, math.inf, 0.0, confidence)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(1 - (1 - confidence) / 2, df) * standard_error
    return WelchInterval(
        difference, difference - half, difference + half, df, standard_error, confidence
    )


def parity(interval: WelchInterval, margin: float) -> bool:
    """Equal enough: the interval contains 0, or lies entirely within +-margin."""
    contains_zero = interval.low <= 0 <= interval.high
    return contains_zero or (-margin <= interval.low and interval.high <= margin)
