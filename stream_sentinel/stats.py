"""Upper-tail probabilities for the significance tests, in pure Python.

``binom_sf`` and ``poisson_sf`` must stay accurate for windows of ten million
events and for p-values far below 1e-300 (they then round to 0.0, never NaN).
Two ingredients keep them precise:

* the point probabilities use Loader's saddle-point form (Stirling error plus
  the deviance ``bd0``) instead of differences of ``lgamma`` values, which at
  n = 1e7 are ~1.5e8 and would cancel away eight significant digits;
* the tails are the regularized incomplete beta / gamma functions, evaluated
  by the continued fraction (or series) on the side where it converges fast
  and has no cancellation: a tiny upper tail is never computed as ``1 - x``.
"""

from __future__ import annotations

import math

_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_EPS = 1e-16
# Lentz's method replaces exact zeros by this so no division by zero can occur.
_TINY = 1e-300


def _iteration_cap(size: float) -> int:
    """Generous bound: near the mean both expansions need O(sqrt(size)) terms."""
    return 200 + 20 * math.isqrt(int(size) + 1)


def _stirlerr(n: float) -> float:
    """ln(n!) - ln(sqrt(2 pi n) (n/e)^n) for n > 0."""
    if n <= 15.0:
        # lgamma is exact enough here: the operands are < 50, so the
        # cancellation costs at most ~1e-14 absolute.
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - _LN_SQRT_2PI
    nn = n * n
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, m: float) -> float:
    """Deviance x ln(x/m) + m - x, without cancellation when x is close to m."""
    if abs(x - m) < 0.1 * (x + m):
        v = (x - m) / (x + m)
        s = (x - m) * v
        ej = 2.0 * x * v
        v2 = v * v
        for j in range(1, 1000):
            ej *= v2
            s1 = s + ej / (2 * j + 1)
            if s1 == s:
                return s1
            s = s1
    return x * (math.log(x) - math.log(m)) + m - x


def log_binom_pmf(k: int, n: int, p: float) -> float:
    """ln P(X = k) for X ~ Binomial(n, p), 0 <= k <= n, 0 < p < 1."""
    q = 1.0 - p
    if k == 0:
        return n * math.log1p(-p)
    if k == n:
        return n * math.log(p)
    lc = _stirlerr(n) - _stirlerr(k) - _stirlerr(n - k) - _bd0(k, n * p) - _bd0(n - k, n * q)
    return lc - _LN_SQRT_2PI - 0.5 * (math.log(k) + math.log1p(-k / n))


def log_poisson_pmf(k: int, lam: float) -> float:
    """ln P(X = k) for X ~ Poisson(lam), k >= 0, lam > 0."""
    if k == 0:
        return -lam
    return -_stirlerr(k) - _bd0(k, lam) - _LN_SQRT_2PI - 0.5 * math.log(k)


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _iteration_cap(max(a, b))):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def _clamp01(x: float) -> float:
    if not x > 0.0:  # also maps a NaN to 0, though none can arise from valid input
        return 0.0
    return min(x, 1.0)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided test's p-value."""
    if math.isnan(p):
        raise ValueError("p must be a number")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    # P(X >= k) = I_p(k, n - k + 1); the prefactor of the fraction equals
    # pmf(k) * (1 - p) on this side and pmf(k - 1) * p on the other.
    a, b = float(k), float(n - k + 1)
    if p < (a + 1.0) / (a + b + 2.0):
        log_front = log_binom_pmf(k, n, p) + math.log1p(-p)
        return _clamp01(math.exp(log_front) * _beta_cf(a, b, p))
    log_front = log_binom_pmf(k - 1, n, p) + math.log(p)
    return _clamp01(1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - p))


def _gamma_series(a: float, x: float) -> float:
    """Sum of x^j / ((a+1)...(a+j)), j >= 0: P(a, x) = pmf * this."""
    term = total = 1.0
    ap = a
    for _ in range(_iteration_cap(a)):
        ap += 1.0
        term *= x / ap
        total += term
        if term < total * _EPS:
            break
    return total


def _gamma_cf(a: float, x: float) -> float:
    """Continued fraction with Q(a, x) = a * pmf * this (modified Lentz)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _iteration_cap(max(a, x))):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam): the regularized lower gamma P(k, lam)."""
    if math.isnan(lam):
        raise ValueError("lam must be a number")
    if k <= 0:
        return 1.0
    if lam <= 0.0:
        return 0.0
    if math.isinf(lam):
        return 1.0
    a = float(k)
    log_pmf = log_poisson_pmf(k, lam)
    if lam < a + 1.0:
        return _clamp01(math.exp(log_pmf) * _gamma_series(a, lam))
    return _clamp01(1.0 - math.exp(log_pmf + math.log(a)) * _gamma_cf(a, lam))
