"""tests/promql_names.py: the metric names of a PromQL expression, and nothing that merely looks like one."""

import pytest

from tests.promql_names import PromQLSyntaxError, metric_names


@pytest.mark.parametrize("expr, names", [
    # grouping label lists, label matchers with values that look like numbers, group_left's label list
    ('sum by (pod) (rate(a_total{job="x",le="0.5"}[5m])) / on(pod) group_left(version) b_info',
     {"a_total", "b_info"}),
    ('absent(up{job="a/b"} == 1)', {"up"}),
    ("time() - x > 3600", {"x"}),
    ('(count(up{job="j"} == 1) or vector(0)) < 3', {"up"}),
    # Grafana's template query: the selector's metric, not the label
    ('label_values(mosquitto_up{job="mqtt/mosquitto"}, pod)', {"mosquitto_up"}),
    ("label_values(mosquitto_up, pod)", {"mosquitto_up"}),
    ("label_values(pod)", set()),
    # strings holding braces, keywords, functions and metric-like words
    ('foo{a="}{ and or sum(x) bar"} + baz', {"foo", "baz"}),
    ("foo{a='it\\'s {x}'} unless bar", {"foo", "bar"}),
    ('foo{a=`raw \\ {"y"}`}', {"foo"}),
    ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
    ('count_values("version", b_info)', {"b_info"}),
    # the __name__ matcher forms
    ('{__name__="x"}', {"x"}),
    ('{__name__="x", job="j"} + y', {"x", "y"}),
    ('{__name__=~"a_total|b_total"}', {"a_total", "b_total"}),
    ('{__name__=~"a_.*", job="j"}', set()),
    ('{__name__!="x", job="j"}', set()),
    ('{"metric.with.dots", job="j"}', {"metric.with.dots"}),
    # aggregation modifiers before and after, case-insensitive keywords
    ("sum(rate(x[5m])) by (pod) unless y offset 1h30m", {"x", "y"}),
    ("SUM BY (pod) (x) AND ON (pod) y", {"x", "y"}),
    ("topk(3, sum without(instance, job) (x)) and bool_metric", {"x", "bool_metric"}),
    ("a:recorded:rate5m * on() group_right c_d", {"a:recorded:rate5m", "c_d"}),
    ("a * ignoring(le) group_left b", {"a", "b"}),
    ("x > bool 2", {"x"}),
    # ranges, subqueries, offsets, @ modifiers, numbers
    ("max_over_time(rate(x[5m])[1h:1m])", {"x"}),
    ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
    ("x @ start() - x offset -5m", {"x"}),
    ("-Inf + NaN * y + 1e3 + 0x1F + .5 + 1.5e-3", {"y"}),
    ("quantile(0.5, x offset 1d)", {"x"}),
    # metric names that begin with keywords are metric names
    ("by_metric + on_metric + offset_metric + sum_total", {"by_metric", "on_metric", "offset_metric", "sum_total"}),
    # comments
    ("x # comment naming z\n+ w", {"x", "w"}),
    # Grafana variables left in
    ('rate(x{pod="$pod"}[$__rate_interval]) + y{pod=~"${pod:regex}"} > $threshold', {"x", "y"}),
    ("rate(x[[[interval]]])", {"x"}),
    ("rate(x[${__rate_interval}])", {"x"}),
    # a number alone, a function alone
    ("1", set()),
    ("vector(1)", set()),
])
def test_metric_names(expr, names):
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ['x{a="b}', "sum(x", "x)", 'x{a}', 'x{a="b" c="d"', "x[5m"])
def test_malformed_expressions_raise(expr):
    with pytest.raises(PromQLSyntaxError):
        metric_names(expr)


def test_string_escapes_are_decoded_for_name_matchers():
    assert metric_names('{__name__="a\\x5fb"}') == {"a_b"}
    assert metric_names('{__name__="a\\u005fc"}') == {"a_c"}
