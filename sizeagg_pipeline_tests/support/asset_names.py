"""The asset names and groups the issues require, as the UI lists them."""

from __future__ import annotations

AGGREGATES = [
    f"{lvl}_size_{p}" for lvl in ("database", "instance") for p in ("daily", "weekly", "monthly", "quarterly")
]
GROUPS = {"raw", "aggregates", "sessions"}
