"""Writing PromQL safely from configuration values: the alert rules and the dashboards build their selectors here."""

import re


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(metric: str, **matchers: str) -> str:
    """`metric{a="x", b=~"y"}`: a matcher value starting with `=~` or `!=` uses that operator."""
    parts = []
    for name, value in matchers.items():
        op = "="
        for candidate in ("=~", "!="):
            if value.startswith(candidate):
                op, value = candidate, value[len(candidate):]
        parts.append(f"{name}{op}{quote(value)}")
    return f"{metric}{{{', '.join(parts)}}}"


def alternatives(names) -> str:
    """An RE2 alternation matching exactly these names (Prometheus anchors label regexes)."""
    return "|".join(re.sub(r"([.\\+*?()|\[\]{}^$])", r"\\\1", name) for name in names)
