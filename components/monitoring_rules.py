"""The rules MonitoringStack's timing and labels follow, written once for the stack check (stacks/checks.py) and
the component's arguments (components/arguments.py), so a program in any language gets the same answer."""

from typing import Callable, Iterator, Mapping

from ..stacks import grammar

MIN_SCRAPE_MS, MAX_SCRAPE_MS = 1000, 120_000
"""A scrape interval of 1 s to 2 min: Prometheus looks back 5 min for a sample (--query.lookback-delta), so slower
scrapes make series vanish between samples and alerts flap."""


def problems(scrape_interval: str, alert_after: str, selector_labels: Mapping[str, str], runbook_url: str,
             key_name: Callable[[str], str] = str) -> Iterator[tuple[str, str]]:
    """(key, message) for each problem; keys are snake_case argument names, and a message names another key as
    `key_name` spells it (the stack file's camelCase)."""
    for key, value in (("scrape_interval", scrape_interval), ("alert_after", alert_after)):
        problem = grammar.prometheus_duration(value)
        if problem:
            yield key, problem
            return
    scrape = grammar.prometheus_duration_ms(scrape_interval)
    if not MIN_SCRAPE_MS <= scrape <= MAX_SCRAPE_MS:
        yield "scrape_interval", (f"{scrape_interval!r} is outside 1s to 2m (Prometheus looks back 5m for a sample, "
                                  "so a slower scrape makes alerts flap)")
    elif grammar.prometheus_duration_ms(alert_after) < scrape:
        yield "alert_after", (f"{alert_after!r} is shorter than {key_name('scrape_interval')} {scrape_interval!r} "
                              "(an alert would fire on a single missed scrape)")
    for key, value in selector_labels.items():
        problem = grammar.label_key(key) or grammar.label_value(value)
        if problem:
            yield "selector_labels", problem
    if not runbook_url.startswith(("https://", "http://")):
        yield "runbook_url", f"{runbook_url!r} is not an http(s) URL"
