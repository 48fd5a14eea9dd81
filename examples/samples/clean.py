"""Summarise temperature readings: a module that passes every code-review rule."""

from __future__ import annotations

import logging
from statistics import mean

logger = logging.getLogger(__name__)


def summarise(readings: list[float], unit: str = "°C") -> dict[str, float] | None:
    """The lowest, highest and mean reading, or None when there are none."""
    if not readings:
        logger.warning("no readings in %s", unit)
        return None
    summary = {"min": min(readings), "max": max(readings), "mean": mean(readings)}
    logger.info("summary in %s: %s", unit, summary)
    return summary


def parse_reading(text: str, default: float | None = None) -> float | None:
    """A reading from text such as `21.5`, or `default` when the text is not a number."""
    try:
        return float(text)
    except ValueError:
        return default


def report(readings: list[float], labels: tuple[str, ...] = ()) -> None:
    """Log the summary of `readings`, or that there is nothing to report."""
    summary = summarise(readings)
    if summary is None:
        logger.info("nothing to report for %s", ", ".join(labels) or "anyone")
        return
    for name, value in summary.items():
        logger.info("%s = %.1f", name, value)
