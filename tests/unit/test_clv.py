"""BG/NBD and Gamma-Gamma (domain/clv.py): published CDNOW estimates and model properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tessera.domain.clv import (
    BgNbdParams,
    GammaGammaParams,
    clv,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow"


def _load(name: str) -> npt.NDArray[np.float64]:
    return np.loadtxt(DATA / name, delimiter=",", skiprows=1, dtype=np.float64)


@pytest.fixture(scope="module")
def summary() -> npt.NDArray[np.float64]:
    """ID, frequency, recency, T (weeks) for the 2,357 CDNOW sample customers."""
    return _load("cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def with_value() -> npt.NDArray[np.float64]:
    """ID, x, t_x, T, zbar (mean repeat-transaction value)."""
    return _load("cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def bgnbd(summary: npt.NDArray[np.float64]) -> BgNbdParams:
    return fit_bgnbd(summary[:, 1], summary[:, 2], summary[:, 3])


@pytest.fixture(scope="module")
def gg(with_value: npt.NDArray[np.float64]) -> GammaGammaParams:
    return fit_gamma_gamma(with_value[:, 1], with_value[:, 4])


# --------------------------------------------------------------------------- published estimates


def test_cdnow_data_shape(summary: npt.NDArray[np.float64], with_value: npt.NDArray[np.float64]) -> None:
    assert summary.shape == (2357, 4)
    assert with_value.shape == (2357, 5)
    assert int(np.sum(with_value[:, 1] > 0)) == 946
    assert np.array_equal(summary[:, 1], with_value[:, 1])


def test_bgnbd_reproduces_fader_hardie_lee_2005(bgnbd: BgNbdParams) -> None:
    # FHL (2005), CDNOW 39-week calibration: r = 0.243, α = 4.414, a = 0.793, b = 2.426, LL = -9582.4.
    assert bgnbd.r == pytest.approx(0.243, abs=0.002)
    assert bgnbd.alpha == pytest.approx(4.414, abs=0.002)
    assert bgnbd.a == pytest.approx(0.793, abs=0.002)
    assert bgnbd.b == pytest.approx(2.426, abs=0.002)
    assert bgnbd.loglik == pytest.approx(-9582.4, abs=0.1)


def test_gamma_gamma_reproduces_fader_hardie_2013(gg: GammaGammaParams) -> None:
    # Fader & Hardie (2013), 946 repeat CDNOW customers: p = 6.25, q = 3.74, γ = 15.44.
    assert gg.p == pytest.approx(6.25, abs=0.02)
    assert gg.q == pytest.approx(3.74, abs=0.02)
    assert gg.v == pytest.approx(15.44, abs=0.02)


def test_penalizer_shrinks_parameters(summary: npt.NDArray[np.float64], bgnbd: BgNbdParams) -> None:
    shrunk = fit_bgnbd(summary[:, 1], summary[:, 2], summary[:, 3], penalizer=0.1)
    assert shrunk.alpha < bgnbd.alpha
    assert shrunk.loglik < bgnbd.loglik


# --------------------------------------------------------------------------- properties


def test_probability_alive(bgnbd: BgNbdParams, summary: npt.NDArray[np.float64]) -> None:
    x, t_x, t_end = summary[:, 1], summary[:, 2], summary[:, 3]
    alive = probability_alive(bgnbd, x, t_x, t_end)
    assert alive.shape == x.shape
    assert np.all(alive[x == 0] == 1.0)
    assert np.all((alive > 0) & (alive <= 1))
    # Same customer (x = 3, last purchase at week 10), observed for longer and longer: less likely alive.
    silence = probability_alive(bgnbd, 3, 10, [10, 15, 20, 30, 39])
    assert np.all(np.diff(silence) < 0)
    # With the same T, a later last purchase means more likely alive.
    recent = probability_alive(bgnbd, 3, [5, 15, 30, 39], 39)
    assert np.all(np.diff(recent) > 0)


def test_expected_purchases_grows_with_t(bgnbd: BgNbdParams) -> None:
    horizons = np.array([0.0, 1.0, 4.0, 13.0, 39.0, 52.0])
    for x, t_x, t_end in [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 35.0, 38.0), (1, 1.71, 38.86)]:
        values = expected_purchases(bgnbd, horizons, x, t_x, t_end)
        assert values[0] == 0.0
        assert np.all(np.diff(values) > 0)
    # Vectorised over customers with one horizon.
    many = expected_purchases(bgnbd, 39.0, [0, 2, 7], [0, 30.43, 35], [38.86, 38.86, 38])
    assert many.shape == (3,)
    assert np.all(many > 0)


def test_expected_purchases_matches_published_example(bgnbd: BgNbdParams) -> None:
    # FHL (2005), section 5: a customer with x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in
    # the next 39 weeks (with the published rounded parameters; ours are the unrounded optimum).
    assert expected_purchases(bgnbd, 39.0, 2, 30.43, 38.86)[0] == pytest.approx(1.226, abs=0.005)


def test_expected_average_value(gg: GammaGammaParams) -> None:
    population_mean = gg.p * gg.v / (gg.q - 1)
    values = expected_average_value(gg, [0, 1, 10, 100], [0.0, 50.0, 50.0, 50.0])
    assert values[0] == pytest.approx(population_mean)
    # More transactions pull the estimate towards the customer's own mean.
    assert np.all(np.diff(np.abs(values[1:] - 50.0)) < 0)


def test_clv_positive_and_grows_with_months(
    bgnbd: BgNbdParams, gg: GammaGammaParams, with_value: npt.NDArray[np.float64]
) -> None:
    x, t_x, t_end, m = with_value[:, 1], with_value[:, 2], with_value[:, 3], with_value[:, 4]
    six = clv(bgnbd, gg, x, t_x, t_end, m, months=6)
    twelve = clv(bgnbd, gg, x, t_x, t_end, m, months=12)
    assert six.shape == x.shape
    assert np.all(six > 0)
    assert np.all(twelve > six)
    assert np.all(clv(bgnbd, gg, x, t_x, t_end, m, months=0) == 0)
    # No discounting = expected purchases over the horizon × expected value.
    undiscounted = clv(bgnbd, gg, x[:10], t_x[:10], t_end[:10], m[:10], months=12, discount_rate=0.0)
    weeks = 12 * (365.25 / 12) / 7
    expected = expected_purchases(bgnbd, weeks, x[:10], t_x[:10], t_end[:10]) * expected_average_value(
        gg, x[:10], m[:10]
    )
    np.testing.assert_allclose(undiscounted, expected, rtol=1e-10)
    assert np.all(twelve[:10] < undiscounted)


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (([], [], []), "frequency"),
        (([1, -1], [1, 1], [2, 2]), "frequency"),
        (([1, 1], [1, -0.5], [2, 2]), "recency"),
        (([1, 1], [1, 1], [2, -2]), "T"),
        (([1, 1], [1, np.nan], [2, 2]), "recency"),
        (([1, 1], [3, 1], [2, 2]), "recency"),
        (([1, 1, 1], [1, 1], [2, 2]), "same length"),
    ],
)
def test_fit_bgnbd_rejects_bad_input(args: tuple[list[float], list[float], list[float]], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        fit_bgnbd(*args)


def test_fit_bgnbd_rejects_negative_penalizer() -> None:
    with pytest.raises(ValueError, match="penalizer"):
        fit_bgnbd([1], [1], [2], penalizer=-1)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (([], []), "frequency"),
        (([1, 2], [-3.0, 4.0]), "monetary_value"),
        (([1, -2], [3.0, 4.0]), "frequency"),
        (([0, 0], [3.0, 4.0]), "frequency"),
        (([1, 2], [0.0, 4.0]), "monetary_value"),
        (([1, 2], [1.0]), "same length"),
    ],
)
def test_fit_gamma_gamma_rejects_bad_input(args: tuple[list[float], list[float]], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        fit_gamma_gamma(*args)
