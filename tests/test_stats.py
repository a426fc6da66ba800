"""Tail probabilities against exact arithmetic, identities and extreme inputs."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_sentinel.stats import _stirlerr, binom_sf, log_binom_pmf, log_poisson_pmf, poisson_sf

REL = 1e-11


def exact_binom_tails(n: int, p: float) -> list[float]:
    """P(X >= k) for k = 0..n+1, exactly: integer numerators over den**n.

    Int / int true division is correctly rounded, so no Fraction (and no gcd
    of huge integers) is needed.
    """
    num, den = Fraction(p).as_integer_ratio()
    rest = den - num
    pow_num = [1] * (n + 1)
    pow_rest = [1] * (n + 1)
    for j in range(1, n + 1):
        pow_num[j] = pow_num[j - 1] * num
        pow_rest[j] = pow_rest[j - 1] * rest
    whole = den**n
    tails, acc = [0.0] * (n + 2), 0
    for j in range(n, -1, -1):
        acc += math.comb(n, j) * pow_num[j] * pow_rest[n - j]
        tails[j] = acc / whole
    return tails


def exact_binom_sf(k: int, n: int, p: float) -> float:
    return exact_binom_tails(n, p)[min(max(k, 0), n + 1)]


def decimal_poisson_sf(k: int, lam: float) -> float:
    """Upper tail summed directly (no 1 - x) at 60 digits."""
    with localcontext() as ctx:
        ctx.prec = 60
        x = Decimal(lam)
        term = (-x).exp()
        for j in range(1, k + 1):
            term = term * x / j
        total = Decimal(0)
        j = k
        while term > total * Decimal("1e-40") or j <= lam:
            total += term
            j += 1
            term = term * x / j
        return float(total)


def log_space_binom_sf(k: int, n: int, p: float, terms: int) -> float:
    """Reference for huge n: ln C(n, k) by fsum of logs, then the ratio recurrence."""
    log_c = math.fsum(math.log((n - k + i) / i) for i in range(1, k + 1))
    log_t = log_c + k * math.log(p) + (n - k) * math.log1p(-p)
    ratio_base = p / (1.0 - p)
    t, total = 1.0, 0.0
    for j in range(k, min(n, k + terms) + 1):
        total += t
        t *= (n - j) / (j + 1) * ratio_base
    return math.exp(log_t) * total


def assert_close(got: float, want: float, rel: float = REL) -> None:
    assert math.isfinite(got) and 0.0 <= got <= 1.0
    if want < 1e-290:  # below this the exact value is subnormal or zero in a float
        assert got <= 1e-280
    else:
        assert abs(got - want) <= rel * want, (got, want)


probabilities = st.one_of(
    st.sampled_from([1e-9, 1e-4, 0.001, 0.01, 0.1, 0.5, 0.9, 0.999, 1 - 1e-9]),
    st.floats(min_value=1e-12, max_value=1 - 1e-12),
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 60), data=st.data(), p=probabilities)
def test_binom_sf_matches_exact_sum(n: int, data: st.DataObject, p: float) -> None:
    k = data.draw(st.integers(-2, n + 2))
    assert_close(binom_sf(k, n, p), exact_binom_sf(k, n, p))


@pytest.mark.parametrize("n", [1, 7, 100, 250])
@pytest.mark.parametrize("p", [1e-4, 0.003, 0.2, 0.5, 0.97])
def test_binom_sf_every_k_for_fixed_n(n: int, p: float) -> None:
    tails = exact_binom_tails(n, p)
    for k in range(n + 2):
        assert_close(binom_sf(k, n, p), tails[k])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 80), data=st.data(), p=probabilities)
def test_log_binom_pmf_matches_exact(n: int, data: st.DataObject, p: float) -> None:
    k = data.draw(st.integers(0, n))
    q = Fraction(p)
    exact = math.comb(n, k) * q**k * (1 - q) ** (n - k)
    if exact > Fraction(1, 10**290):
        want = math.log(exact.numerator) - math.log(exact.denominator)
        assert abs(log_binom_pmf(k, n, p) - want) <= 1e-12 * max(1.0, abs(want))


@settings(max_examples=200, deadline=None)
@given(
    lam=st.one_of(st.sampled_from([1e-6, 0.3, 1.0, 15.0, 150.0]), st.floats(1e-6, 200.0)),
    data=st.data(),
)
def test_poisson_sf_matches_decimal_sum(lam: float, data: st.DataObject) -> None:
    k = data.draw(st.integers(-1, int(3 * lam) + 30))
    want = 1.0 if k <= 0 else decimal_poisson_sf(k, lam)
    assert_close(poisson_sf(k, lam), want)


def test_log_poisson_pmf_small_values() -> None:
    for lam in (0.5, 3.0, 40.0):
        for k in range(60):
            want = -lam + k * math.log(lam) - math.lgamma(k + 1)
            assert abs(log_poisson_pmf(k, lam) - want) <= 1e-12 * max(1.0, abs(want))


@pytest.mark.parametrize(
    ("n", "p", "offset_sd"),
    [
        (10_000_000, 1e-3, 0.0),
        (10_000_000, 1e-3, 3.0),
        (10_000_000, 1e-3, 12.0),
        (10_000_000, 1e-4, 5.0),
        (2_000_000, 0.3, 4.0),
    ],
)
def test_binom_sf_huge_windows(n: int, p: float, offset_sd: float) -> None:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    k = int(mean + offset_sd * sd)
    want = log_space_binom_sf(k, n, p, terms=int(40 * sd))
    assert_close(binom_sf(k, n, p), want, rel=1e-9)


def test_branches_agree_with_pmf_across_the_switch() -> None:
    # The two evaluation branches meet at k ~ n p; consecutive tails must
    # differ by exactly the point probability on both sides of the switch.
    n, p = 10_000_000, 1e-3
    for k in range(9_990, 10_012):
        diff = binom_sf(k, n, p) - binom_sf(k + 1, n, p)
        assert diff == pytest.approx(math.exp(log_binom_pmf(k, n, p)), rel=1e-8)
    lam = 1e7
    for k in range(9_999_990, 10_000_012):
        diff = poisson_sf(k, lam) - poisson_sf(k + 1, lam)
        assert diff == pytest.approx(math.exp(log_poisson_pmf(k, lam)), rel=1e-6)


def test_huge_poisson_against_normal_approximation() -> None:
    lam = 1e7
    sd = math.sqrt(lam)
    for z in (0.0, 1.0, 2.0, 3.0):
        k = math.ceil(lam + z * sd)
        normal = 0.5 * math.erfc((k - 0.5 - lam) / sd / math.sqrt(2))
        assert poisson_sf(k, lam) == pytest.approx(normal, rel=2e-3)


def test_binomial_tends_to_poisson() -> None:
    n, lam = 10_000_000, 12.0
    for k in (1, 5, 12, 20, 40):
        assert binom_sf(k, n, lam / n) == pytest.approx(poisson_sf(k, lam), rel=1e-5)


def test_tiny_p_values_underflow_to_zero_not_nan() -> None:
    assert binom_sf(1_000_000, 1_000_000, 1e-4) == 0.0
    assert binom_sf(10_000_000, 10_000_000, 0.5) == 0.0
    assert poisson_sf(10_000_000, 1.0) == 0.0
    # far in the tail but still representable: must not be flushed to 0
    tiny = binom_sf(200, 1_000, 0.01)
    assert 0.0 < tiny < 1e-150
    assert_close(tiny, exact_binom_sf(200, 1_000, 0.01))


def test_edge_cases() -> None:
    assert binom_sf(0, 0, 0.5) == 1.0
    assert binom_sf(0, 10, 0.5) == 1.0
    assert binom_sf(-3, 10, 0.5) == 1.0
    assert binom_sf(11, 10, 0.5) == 0.0
    assert binom_sf(1, 0, 0.5) == 0.0
    assert binom_sf(1, 10, 0.0) == 0.0
    assert binom_sf(10, 10, 1.0) == 1.0
    assert binom_sf(10, 10, 1.5) == 1.0
    assert binom_sf(1, 10, -0.5) == 0.0
    assert poisson_sf(0, 0.0) == 1.0
    assert poisson_sf(1, 0.0) == 0.0
    assert poisson_sf(1, math.inf) == 1.0
    assert binom_sf(1, 1, 0.25) == pytest.approx(0.25, rel=1e-15)
    assert poisson_sf(1, 2.0) == pytest.approx(1 - math.exp(-2.0), rel=1e-14)
    with pytest.raises(ValueError, match=r"^p must be a number$"):
        binom_sf(1, 2, math.nan)
    with pytest.raises(ValueError, match=r"^lam must be a number$"):
        poisson_sf(1, math.nan)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 10_000_000),
    p=st.floats(1e-12, 1 - 1e-12),
    frac=st.floats(0.0, 1.0),
)
def test_binom_sf_is_a_decreasing_probability_in_k(n: int, p: float, frac: float) -> None:
    k = int(frac * n)
    here, there = binom_sf(k, n, p), binom_sf(k + 1, n, p)
    assert 0.0 <= there <= here <= 1.0
    # and increasing in p
    assert binom_sf(k, n, min(p * 1.5, 1.0)) >= here - 1e-12


@settings(max_examples=150, deadline=None)
@given(lam=st.floats(1e-9, 1e7), frac=st.floats(0.0, 3.0))
def test_poisson_sf_is_monotone(lam: float, frac: float) -> None:
    k = int(frac * lam) + 1
    here = poisson_sf(k, lam)
    assert 0.0 <= poisson_sf(k + 1, lam) <= here <= 1.0
    assert poisson_sf(k, lam * 1.1) >= here - 1e-12


PI_50 = Decimal("3.14159265358979323846264338327950288419716939937510")


def exact_stirling_error(n: int) -> float:
    """ln(n!) - ln(sqrt(2 pi n) (n/e)^n) at 50 digits."""
    with localcontext() as ctx:
        ctx.prec = 50
        big_n = Decimal(n)
        log_sqrt_2pi = (2 * PI_50).ln() / 2
        exact = Decimal(math.factorial(n)).ln() - (big_n + Decimal("0.5")) * big_n.ln()
        return float(exact + big_n - log_sqrt_2pi)


def test_stirling_error_series_to_the_last_bit() -> None:
    # Every p-value rests on this: a wrong coefficient or sign deep in the
    # series moves it by 1e-15..1e-12, too little for the tail tests above
    # to see, yet a systematic error. Each branch is checked next to its edges
    # (16, 35/36, 80/81, 500/501) at the series' own accuracy.
    for n in [*range(16, 120), 200, 499, 500, 501, 502, 1000, 3000]:
        assert abs(_stirlerr(float(n)) - exact_stirling_error(n)) <= 3e-16, n
    for n in range(1, 16):  # lgamma's cancellation costs at most ~1e-14 here
        assert abs(_stirlerr(float(n)) - exact_stirling_error(n)) <= 2e-14, n
