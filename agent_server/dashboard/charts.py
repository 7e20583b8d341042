"""Server-rendered pictures: the usage bar chart (SVG geometry) and deposit-address QR codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent_server.kernel.money import usd_text
from billing.usage import Usage

# Narrow enough that a phone shows it near its own size (labels stay about 12 px at 390 px):
# each tool's name sits above its bar, the calls and cost right of it.
CHART_WIDTH = 360
VALUE_WIDTH = 160
BAR_HEIGHT = 18
NAME_HEIGHT = 20  # the tool's name above the bar
BAR_GAP = 12


@dataclass(frozen=True)
class Bar:
    """One tool's bar: its length stands for its calls; the label repeats calls and cost."""

    tool: str
    calls: int
    free_calls: int
    usd_micros: int
    x: int
    y: int
    width: int
    height: int

    @property
    def label(self) -> str:
        calls = "1 call" if self.calls == 1 else f"{self.calls} calls"
        return f"{calls} · {usd_text(self.usd_micros)}"


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    bar_area: int


def usage_chart(usage: Usage) -> Chart:
    """Horizontal bars, one per tool, longest for the most calls."""
    area = CHART_WIDTH - VALUE_WIDTH
    most = max((u.calls for u in usage.usage), default=0)
    bars = []
    for i, u in enumerate(usage.usage):
        width = max(2, round(area * u.calls / most)) if most else 0
        bars.append(
            Bar(
                tool=u.tool,
                calls=u.calls,
                free_calls=u.free_calls,
                usd_micros=u.price_usd_micros,
                x=0,
                y=i * (NAME_HEIGHT + BAR_HEIGHT + BAR_GAP) + NAME_HEIGHT,
                width=width,
                height=BAR_HEIGHT,
            )
        )
    height = max(1, len(bars)) * (NAME_HEIGHT + BAR_HEIGHT + BAR_GAP)
    return Chart(bars, CHART_WIDTH, height, area)


def recent_periods(now: datetime, count: int = 12) -> list[str]:
    """The ``YYYY-MM`` of this month and the ``count - 1`` before it, newest first."""
    year, month = now.year, now.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return out


def qr_svg(data: str, title: str) -> str:
    """An inline SVG QR code of ``data`` (dark on light, with its quiet zone)."""
    import segno  # loaded on first use: only the deposit page draws codes

    code = segno.make(data, error="m")
    return code.svg_inline(scale=5, border=4, dark="#000", light="#fff", title=title, svgclass="qr")


SERIES_WIDTH = 360
SERIES_HEIGHT = 120


@dataclass(frozen=True)
class DayPoint:
    day: str  # YYYY-MM-DD, UTC
    spent: int  # tool fees charged that day, base units
    balance: int  # the wallet's balance at the end of the day, base units
    x: int
    bar_y: int
    bar_height: int
    line_y: int


@dataclass(frozen=True)
class DailyChart:
    """Spend per day as bars and the balance at each day's end as a line, one currency."""

    currency: str
    points: list[DayPoint]
    width: int
    height: int
    step: int

    @property
    def line(self) -> str:
        return " ".join(f"{p.x + self.step // 2},{p.line_y}" for p in self.points)


def daily_chart(
    currency: str, days: list[str], spent: dict[str, int], balances: list[int]
) -> DailyChart:
    """``days`` oldest first, ``spent`` by day, ``balances`` at each day's end (same order)."""
    step = SERIES_WIDTH // max(1, len(days))
    top_spent = max(spent.values(), default=0)
    top_balance = max([*balances, 0])
    plot = SERIES_HEIGHT - 10
    points = []
    for i, day in enumerate(days):
        used = spent.get(day, 0)
        height = round(plot * used / top_spent) if top_spent else 0
        line_y = SERIES_HEIGHT - (round(plot * balances[i] / top_balance) if top_balance else 0)
        points.append(
            DayPoint(day, used, balances[i], i * step, SERIES_HEIGHT - height, height, line_y)
        )
    return DailyChart(currency, points, SERIES_WIDTH, SERIES_HEIGHT, step)
