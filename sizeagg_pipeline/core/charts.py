"""Growth leaders of a period: who grew most over the last 12 periods, as a PNG and a table.

The weekly and monthly assets attach both to their materialization, so the asset
page answers "what grows fastest?" without a BI tool. Growth is measured in MB
between a series' first and last period with data among the 12 (absolute, not
percent: a 1 MB database that triples matters less to capacity than a 500 GB one
that grows 5 %). One SQL query reads the ≤ 12 periods; ranking is vectorized pandas.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import date

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
import pandas as pd
import sqlalchemy as sa
from PIL import Image

from .levels import Level
from .periods import Period, Window, span_text, window_containing
from .schema import instances

PERIODS_SHOWN = 12
TOP = 10


@dataclass(frozen=True)
class GrowthReport:
    period: Period
    first: Window
    last: Window
    series: int  # series with data in ≥ 2 of the periods
    leaders: pd.DataFrame  # ranked rows: label, first/last period and size, growth
    history: pd.DataFrame  # period_start × label sizes of the leaders

    @property
    def subject(self) -> str:
        return "databases" if "database_name" in self.leaders.columns else "instances"


def last_windows(period: Period, last_start: date, count: int = PERIODS_SHOWN) -> list[Window]:
    windows = [window_containing(period, last_start)]
    while len(windows) < count:
        windows.insert(0, windows[0].previous())
    return windows


def growth_report(conn: sa.Connection, level: Level, period: Period, last_start: date) -> GrowthReport:
    """The TOP series of `level` by MB growth over the PERIODS_SHOWN periods ending at `last_start`."""
    windows = last_windows(period, last_start)
    target = level.target
    size = target.c[level.size_column]
    keys = [target.c[k] for k in level.keys]
    query = (
        sa.select(
            *keys, instances.c.name.label("instance_name"), target.c.period_start, size.label("size_mb")
        )
        .select_from(target.outerjoin(instances, instances.c.id == target.c.instance_id))
        .where(
            target.c.period_type == period.value,
            target.c.period_start.between(windows[0].start, windows[-1].start),
        )
    )
    result = conn.execute(query)
    frame = pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))
    key_names = list(level.keys)
    columns = [*key_names, "label", "first_period", "last_period", "first_mb", "last_mb", "growth_mb"]
    if frame.empty:
        empty = pd.DataFrame(columns=[*columns, "growth_percent", "mb_per_period", "periods"])
        return GrowthReport(period, windows[0], windows[-1], 0, empty, pd.DataFrame())
    frame["instance_name"] = frame["instance_name"].fillna("#" + frame["instance_id"].astype(str))
    frame["label"] = frame["instance_name"]
    for key in key_names[1:]:  # the database level: "instance / database"
        frame["label"] = frame["label"] + " / " + frame[key]
    frame = frame.sort_values([*key_names, "period_start"])
    grouped = frame.groupby(key_names, sort=False)
    summary = grouped.agg(
        label=("label", "first"),
        first_period=("period_start", "first"),
        last_period=("period_start", "last"),
        first_mb=("size_mb", "first"),
        last_mb=("size_mb", "last"),
        periods=("size_mb", "size"),
    ).reset_index()
    summary = summary[summary["periods"] >= 2]
    summary["growth_mb"] = summary["last_mb"] - summary["first_mb"]
    summary["growth_percent"] = (
        summary["growth_mb"] / summary["first_mb"].where(summary["first_mb"] > 0) * 100
    ).round(1)
    summary["mb_per_period"] = (summary["growth_mb"] / (summary["periods"] - 1)).round(1)
    leaders = (
        summary[summary["growth_mb"] > 0]
        .sort_values(["growth_mb", *key_names], ascending=[False, *[True] * len(key_names)])
        .head(TOP)
        .reset_index(drop=True)
    )
    history = (
        frame[frame["label"].isin(leaders["label"])]
        .pivot_table(index="period_start", columns="label", values="size_mb", aggfunc="first")
        .reindex(columns=list(leaders["label"]))
    )
    return GrowthReport(period, windows[0], windows[-1], len(summary), leaders, history)


def markdown_table(frame: pd.DataFrame) -> str:
    """A markdown table as the UI shows it: numbers with thousands separators, one decimal."""
    return frame.to_markdown(index=False, intfmt=",", floatfmt=",.1f")


def chart_label(period: Period) -> str:
    """The metadata label of the growth chart: says what it is next to the UI's Show Markdown link."""
    return f"Top {TOP} growth, {period} — chart"


def table_label(period: Period) -> str:
    return f"Top {TOP} growth, {period} — table"


def _title(report: GrowthReport) -> str:
    return (
        f"Top {len(report.leaders)} fastest-growing {report.subject}, "
        f"{report.period} {span_text(report.first.start, report.last.end)}"
    )


def render_png(report: GrowthReport) -> bytes:
    """A line chart of the leaders' size per period (GB when sizes are large)."""
    history = report.history
    scale, unit = (1024.0, "GB") if len(history) and history.max().max() >= 10 * 1024 else (1.0, "MB")
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=80)
    try:
        for rank, label in enumerate(history.columns, start=1):
            series = history[label].dropna()
            ax.plot(
                pd.to_datetime(series.index),
                series.to_numpy() / scale,
                marker="o",
                ms=3,
                label=f"{rank}. {label}",
            )
        ax.set_title(_title(report), fontsize=11)
        ax.set_ylabel(f"average size ({unit})")
        ax.grid(True, alpha=0.3)
        if len(history.columns):
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {report.subject} grew", ha="center", va="center", transform=ax.transAxes)
        fig.autofmt_xdate()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return _palette_png(buffer.getvalue())


def _palette_png(png: bytes) -> bytes:
    """64 colours are plenty for ten lines: a quarter of the bytes in every event that stores it."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def chart_markdown(report: GrowthReport) -> str:
    """The chart as a markdown image with a base64 data URI (what the UI renders)."""
    encoded = base64.b64encode(render_png(report)).decode("ascii")
    return f"![{_title(report)}](data:image/png;base64,{encoded})"


def table_markdown(report: GrowthReport) -> str:
    """The leaders in the few columns that fit the asset page's side panel, and their period range."""
    span = f"{report.period} {span_text(report.first.start, report.last.end)}"
    if report.leaders.empty:
        return f"_no {report.subject} grew over {span}_"
    unit = report.period.value.removesuffix("ly").replace("dai", "day")
    shown = pd.DataFrame(
        {
            "#": range(1, len(report.leaders) + 1),
            "instance / database" if report.subject == "databases" else "instance": report.leaders["label"],
            "size MB": report.leaders["last_mb"],
            "growth MB": report.leaders["growth_mb"],
            "growth %": report.leaders["growth_percent"],
            f"MB per {unit}": report.leaders["mb_per_period"],
        }
    )
    return (
        markdown_table(shown) + f"\n\nGrowth between each one's first and last {unit} with data, {span}; "
        "the chart above has the same ten."
    )
