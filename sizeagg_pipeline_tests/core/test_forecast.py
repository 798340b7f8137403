"""core/forecast.py: the capacity forecast against synthetic series with known slopes.

Tolerances (stated here, and in the README):
* exact linear series, with or without missing days: slope and fitted size within 1e-6;
* whole-MB rounded linear series: slope within 0.01 MB/day;
* noisy (σ = 3 MB) with 10 % of days off by ±200–2000 MB, or 25 % of days all on one
  side: slope within 0.25 MB/day for every one of 300 series (median error < 0.05),
  where least squares is off by more than 2 MB/day.

The asset that writes the forecast is tested in defs/forecast/test_asset.py.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sizeagg_pipeline.core import forecast
from sizeagg_pipeline.core.forecast import ForecastSettings, forecast_frame, robust_trend

AS_OF = date(2026, 3, 31)
W = 90
T = np.arange(-(W - 1), 1, dtype=np.float64)  # day offsets, 0 = as_of


def long_frame(y: np.ndarray, instance_id: int = 1, database: str | None = "db") -> pd.DataFrame:
    """One series (NaN = no data that day) as the long frame forecast_frame reads."""
    days = [AS_OF + timedelta(days=int(t)) for t in T]
    frame = pd.DataFrame({"day": days, "size_mb": y})
    frame["instance_id"] = instance_id
    frame["database_name"] = database
    return frame.dropna(subset=["size_mb"])


def one_row(y: np.ndarray, threshold: int = 1_000_000, **settings: int) -> pd.Series:
    out = forecast_frame(long_frame(y), AS_OF, ForecastSettings(**settings), threshold)
    assert len(out) == 1
    return out.iloc[0]


def test_exact_linear_growth() -> None:
    y = 5000 + 12.5 * T
    row = one_row(y, threshold=6000)
    assert row["slope_mb_per_day"] == pytest.approx(12.5, abs=1e-6)
    assert row["fitted_size_mb"] == 5000
    assert (row["projected_30d_mb"], row["projected_90d_mb"], row["projected_180d_mb"]) == (5375, 6125, 7250)
    assert row["days_until_threshold"] == 80  # (6000 − 5000) / 12.5
    assert row["r_squared"] == pytest.approx(1.0)
    assert row["outlier_days"] == 0
    assert row["sample_days"] == W
    assert (row["first_day"], row["last_day"]) == (AS_OF - timedelta(days=W - 1), AS_OF)


def test_whole_mb_rounding_does_not_make_outliers() -> None:
    y = np.rint(1000 + 7.3 * T)
    row = one_row(y)
    assert row["slope_mb_per_day"] == pytest.approx(7.3, abs=0.01)
    assert row["outlier_days"] == 0


def test_flat_series() -> None:
    row = one_row(np.full(W, 800.0), threshold=1000)
    assert row["slope_mb_per_day"] == pytest.approx(0.0, abs=1e-9)
    assert row["projected_180d_mb"] == 800
    assert pd.isna(row["days_until_threshold"])  # never reached
    assert pd.isna(row["r_squared"])  # undefined for a constant series


def test_flat_series_that_wobbles_by_one_mb() -> None:
    rng = np.random.default_rng(3)
    y = 119 + rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], W)
    row = one_row(y)
    assert abs(row["slope_mb_per_day"]) < 0.01
    assert row["outlier_days"] == 0


def test_shrinking_series_never_projects_below_zero() -> None:
    y = 3000 - 25.0 * T  # T ≤ 0: 3000 MB at as_of, more before: shrinking 25 MB/day
    row = one_row(y, threshold=5000)
    assert row["slope_mb_per_day"] == pytest.approx(-25.0, abs=1e-6)
    assert row["projected_90d_mb"] == 750
    assert row["projected_180d_mb"] == 0  # 3000 − 4500 is clamped
    assert pd.isna(row["days_until_threshold"])


def test_already_over_threshold_is_zero_days() -> None:
    row = one_row(2000 + 1.0 * T, threshold=1500)
    assert row["days_until_threshold"] == 0


def test_gaps_are_ignored_not_filled() -> None:
    rng = np.random.default_rng(7)
    y = 400 + 3.25 * T
    y[rng.random(W) < 0.4] = np.nan
    y[20:40] = np.nan  # a three-week collector outage
    y[-3:] = np.nan  # and nothing for the last three days
    row = one_row(y)
    assert row["slope_mb_per_day"] == pytest.approx(3.25, abs=1e-6)
    assert row["fitted_size_mb"] == 400  # still the line's value at as_of
    assert row["sample_days"] == int((~np.isnan(y)).sum())
    assert row["last_day"] == AS_OF - timedelta(days=3)


def test_too_few_days_gives_no_forecast() -> None:
    y = np.full(W, np.nan)
    y[-10:] = 100.0
    out = forecast_frame(long_frame(y), AS_OF, ForecastSettings(min_points=14), 1000)
    assert out.empty


def test_noisy_series_with_outliers_many_at_once() -> None:
    """300 series in one vectorized call; the robust fit ignores the bad days."""
    rng = np.random.default_rng(42)
    n = 300
    slopes = rng.uniform(-20, 50, n)
    levels = rng.uniform(5_000, 50_000, n)
    y = levels[:, None] + slopes[:, None] * T + rng.normal(0, 3, (n, W))
    bad = rng.random((n, W)) < 0.10
    y[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(200, 2000, bad.sum())
    y[rng.random((n, W)) < 0.2] = np.nan

    fit = robust_trend(y, T)
    error = np.abs(fit.slope - slopes)
    assert error.max() < 0.25
    assert np.median(error) < 0.05
    assert np.abs(fit.level - levels).max() < 10
    assert (fit.outliers >= 1).mean() > 0.9  # the bad days were recognised

    mask = ~np.isnan(y)
    _, ols_slope = forecast._wls(np.where(mask, y, 0.0), np.broadcast_to(T, y.shape), mask * 1.0)
    assert np.abs(ols_slope - slopes).max() > 2  # what the robust fit protects against


def test_one_sided_outliers() -> None:
    """A quarter of the days inflated (temporary bulk loads): the trend still holds."""
    rng = np.random.default_rng(11)
    n = 300
    slopes = rng.uniform(-20, 50, n)
    y = 20_000 + slopes[:, None] * T + rng.normal(0, 3, (n, W))
    bad = rng.random((n, W)) < 0.25
    y[bad] += rng.uniform(200, 2000, bad.sum())
    error = np.abs(robust_trend(y, T).slope - slopes)
    assert error.max() < 0.25
    assert np.median(error) < 0.05


def test_series_are_keyed_by_instance_and_database() -> None:
    frames = [
        long_frame(100 + 1.0 * T, instance_id=1, database="a"),
        long_frame(200 + 2.0 * T, instance_id=1, database="b"),
        long_frame(300 + 3.0 * T, instance_id=2, database="a"),
        long_frame(600 + 6.0 * T, instance_id=1, database=None),  # the instance's own row
    ]
    out = forecast_frame(pd.concat(frames), AS_OF, ForecastSettings(), 10_000)
    slopes = {(r.instance_id, r.database_name): r.slope_mb_per_day for r in out.itertuples()}
    assert slopes == pytest.approx({(1, "a"): 1.0, (1, "b"): 2.0, (2, "a"): 3.0, (1, None): 6.0})


def test_window_limits_the_history() -> None:
    """Only the last window_days count: an old, different trend is not fitted."""
    y = np.where(T > -30, 1000 + 10.0 * T, 1000 - 50.0 * T)  # a V: only the last 30 days rise
    row = one_row(y, window_days=30, min_points=14)
    assert row["slope_mb_per_day"] == pytest.approx(10.0, abs=1e-6)
    assert row["sample_days"] == 30


def test_days_until_is_capped() -> None:
    assert math.isnan(forecast.days_until(np.array([0.0]), np.array([1e-9]), np.array([1e6]))[0])


# --------------------------------------------------------------------------- capacity limits


def limited(y: np.ndarray, limit: int, database: str | None = "db", **settings: Any) -> pd.Series:
    out = forecast_frame(
        long_frame(y, database=database),
        AS_OF,
        ForecastSettings(**settings),
        1_000_000,
        {(1, database): limit},
    )
    assert len(out) == 1
    return out.iloc[0]


@pytest.mark.parametrize(
    ("slope", "limit", "days", "used", "severity"),
    [
        (10.0, 2000, 100, 50.0, "normal"),  # half full, 100 days away
        (10.0, 1300, 30, 76.92, "warning"),  # the limit within the warning horizon (30 days)
        (10.0, 1080, 8, 92.59, "warning"),  # one day past the critical horizon, below 95 % used
        (10.0, 1070, 7, 93.46, "critical"),  # the limit within 7 days
        (0.0, 1176, None, 85.03, "warning"),  # flat at 85 % used
        (0.0, 1052, None, 95.06, "critical"),  # flat at 95 % used
        (-5.0, 1100, None, 90.91, "warning"),  # shrinking, but 85 % used
        (10.0, 1000, 0, 100.0, "critical"),  # already at the limit
    ],
)
def test_days_until_the_limit_and_severity_are_exact(
    slope: float, limit: int, days: int | None, used: float, severity: str
) -> None:
    row = limited(1000 + slope * T, limit)
    assert row["limit_mb"] == limit
    assert row["used_percent"] == pytest.approx(used)
    assert (None if pd.isna(row["days_until_limit"]) else row["days_until_limit"]) == days
    assert row["severity"] == severity
    if days is not None:  # an exact line has no uncertainty: the interval is the day itself
        assert (row["days_until_limit_low"], row["days_until_limit_high"]) == (days, days)
    assert row["interval_percent"] == 90


def test_severity_thresholds_are_configurable() -> None:
    row = limited(1000 + 10 * T, 1300, warning_within_days=20, critical_within_days=5)
    assert (row["days_until_limit"], row["severity"]) == (30, "normal")
    row = limited(1000 + 0 * T, 1250, warning_used_percent=80, critical_used_percent=90)
    assert row["severity"] == "warning"  # 80 % used


def test_an_instance_limit_applies_to_the_instance_total_only() -> None:
    frame = pd.concat([long_frame(1000 + 10 * T, database=None), long_frame(1000 + 10 * T, database="db")])
    out = forecast_frame(frame, AS_OF, ForecastSettings(), 1_000_000, {(1, None): 1100})
    total = out[out["database_name"].isna()].iloc[0]
    database = out[out["database_name"].notna()].iloc[0]
    assert (total["days_until_limit"], total["severity"]) == (10, "warning")
    assert pd.isna(database["limit_mb"]) and database["severity"] == "normal"


def test_without_a_limit_the_threshold_rule_decides() -> None:
    soon = one_row(1000 + 10 * T, threshold=1200)  # threshold in 20 days: flagged
    later = one_row(1000 + 10 * T, threshold=1500)  # 50 days
    over = one_row(1000 + 10 * T, threshold=900)  # already over it: not news
    assert [r["severity"] for r in (soon, later, over)] == ["warning", "normal", "normal"]
    assert pd.isna(soon["limit_mb"]) and pd.isna(soon["days_until_limit"])


def test_the_interval_contains_the_true_crossing_at_the_stated_rate() -> None:
    """Noise σ = 100 MB around 3 MB/day; the true line reaches the limit in 40.5 days.

    The 90 % interval must contain that day in about 90 % of 400 series (binomial
    σ of the rate: 1.5 points), and not by being uselessly wide.
    """
    rng = np.random.default_rng(20261202)
    series = 400
    rows = [long_frame(np.rint(5000 + 3.0 * T + rng.normal(0, 100, W)), instance_id=i) for i in range(series)]
    limit = 5000 + int(3.0 * 40.5)
    true_day = (limit - 5000) / 3.0
    out = forecast_frame(
        pd.concat(rows), AS_OF, ForecastSettings(), 10**9, {(i, "db"): limit for i in range(series)}
    )
    low = out["days_until_limit_low"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    high = out["days_until_limit_high"].astype("Float64").to_numpy(dtype=float, na_value=np.inf)
    coverage = np.mean((low <= true_day) & (true_day <= high))
    assert 0.86 <= coverage <= 0.94, coverage
    assert np.median(high - low) < 80  # about ±20 days around 40
    for percent, lower, upper in ((50, 0.42, 0.58), (99, 0.97, 1.0)):
        other = forecast_frame(
            pd.concat(rows),
            AS_OF,
            ForecastSettings(interval_percent=percent),
            10**9,
            {(i, "db"): limit for i in range(series)},
        )
        lo = other["days_until_limit_low"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        hi = other["days_until_limit_high"].astype("Float64").to_numpy(dtype=float, na_value=np.inf)
        assert lower <= np.mean((lo <= true_day) & (true_day <= hi)) <= upper, percent
