"""The metric names a PromQL expression reads, without a PromQL parser: a tokenizer that knows what in PromQL is
*not* a metric name.

Lexical rules followed (Prometheus promql/parser/lex.go and the querying docs):

- identifiers are `[a-zA-Z_:][a-zA-Z0-9_:]*`; one is a metric name unless it is a keyword (`and`, `or`, `unless`,
  `atan2`, `bool`, `offset`, the grouping keywords `by`, `without`, `on`, `ignoring`, `group_left`,
  `group_right`), an aggregation operator (`sum`, `count`, `topk`, ...), a function (an identifier followed by
  `(`), or `inf`/`nan` (numbers); keywords and aggregators are case-insensitive;
- the parenthesised label list after a grouping keyword holds label names, not metrics;
- `{...}` holds label matchers (`name op "value"`); only `__name__="x"` names a metric (and `__name__=~"a|b"`
  when the regex is a plain alternation of names); Prometheus 3's quoted form `{"metric.name", job="x"}` names
  `metric.name`;
- string literals ("...", '...' with Go escapes, `...` raw) and `# comments` are skipped;
- `[...]` (range, subquery `[5m:1m]`, a Grafana `[$__rate_interval]`) is skipped, so are numbers and durations
  (`5m`, `1h30m`, `1e3`, `0x1f`, `.5`) and Grafana variables (`$pod`, `${pod}`, `${pod:regex}`, `[[pod]]`);
- Grafana's template query `label_values(selector, label)` / `label_values(label)`: its last argument is a label.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool", "offset"})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATORS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                         "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
NUMBERS = frozenset({"inf", "nan"})

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[a-zA-Z0-9_.]*")
_MATCH_OP = re.compile(r"=~|!~|!=|=")
_NAME_ALTERNATION = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?:\|[a-zA-Z_:][a-zA-Z0-9_:]*)*")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z0-9_]+|\[\[[^\]]*\]\]")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'",
            '"': '"'}


class PromQLSyntaxError(ValueError):
    pass


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` reads (see the module docstring for what counts)."""
    return _Scanner(expr).run()


class _Scanner:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.names: set[str] = set()
        self.calls: list[str] = []
        """One entry per open `(`: the function or aggregator it calls, or "" for a plain group."""

    # -- low level ---------------------------------------------------------------------------------------------

    def _skip_space(self) -> None:
        s = self.s
        while self.i < len(s):
            if s[self.i].isspace():
                self.i += 1
            elif s[self.i] == "#":
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end + 1
            else:
                return

    def _peek(self) -> str:
        self._skip_space()
        return self.s[self.i] if self.i < len(self.s) else ""

    def _string(self) -> str:
        """The string literal at self.i (which must be a quote), decoded; self.i moves past it."""
        s, quote = self.s, self.s[self.i]
        start = self.i
        self.i += 1
        if quote == "`":
            end = s.find("`", self.i)
            if end < 0:
                raise PromQLSyntaxError(f"unterminated raw string at {start}: {s!r}")
            value, self.i = s[self.i:end], end + 1
            return value
        out = []
        while self.i < len(s):
            c = s[self.i]
            if c == quote:
                self.i += 1
                return "".join(out)
            if c == "\n":
                break
            if c == "\\":
                self.i += 1
                out.append(self._escape())
                continue
            out.append(c)
            self.i += 1
        raise PromQLSyntaxError(f"unterminated string at {start}: {s!r}")

    def _escape(self) -> str:
        s = self.s
        if self.i >= len(s):
            raise PromQLSyntaxError(f"dangling backslash: {s!r}")
        c = s[self.i]
        if c in _ESCAPES:
            self.i += 1
            return _ESCAPES[c]
        for prefix, width in (("x", 2), ("u", 4), ("U", 8)):
            if c == prefix:
                digits = s[self.i + 1:self.i + 1 + width]
                if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise PromQLSyntaxError(f"bad \\{prefix} escape at {self.i}: {s!r}")
                self.i += 1 + width
                return chr(int(digits, 16))
        digits = s[self.i:self.i + 3]
        if len(digits) == 3 and all(d in "01234567" for d in digits):
            self.i += 3
            return chr(int(digits, 8))
        raise PromQLSyntaxError(f"unknown escape \\{c} at {self.i}: {s!r}")

    def _skip_brackets(self) -> None:
        """From `[` to its `]`: a range, subquery or Grafana interval, never a metric."""
        end = self.s.find("]", self.i)
        if end < 0:
            raise PromQLSyntaxError(f"unterminated [ at {self.i}: {self.s!r}")
        self.i = end + 1

    def _label_list(self) -> None:
        """After a grouping keyword: its optional `(label, ...)`."""
        if self._peek() != "(":
            return
        self.i += 1
        while True:
            c = self._peek()
            if not c:
                raise PromQLSyntaxError(f"unterminated label list: {self.s!r}")
            if c == ")":
                self.i += 1
                return
            if c == ",":
                self.i += 1
            elif c in "\"'`":
                self._string()  # Prometheus 3 allows quoted label names
            else:
                m = _LABEL.match(self.s, self.i)
                if not m:
                    raise PromQLSyntaxError(f"expected a label name at {self.i}: {self.s!r}")
                self.i = m.end()

    def _matchers(self) -> None:
        """From `{` to its `}`: label matchers; records a metric named by `__name__` or a bare quoted name."""
        self.i += 1
        while True:
            c = self._peek()
            if not c:
                raise PromQLSyntaxError(f"unterminated {{: {self.s!r}")
            if c == "}":
                self.i += 1
                return
            if c == ",":
                self.i += 1
                continue
            if c in "\"'`":
                label = self._string()
                quoted = True
            else:
                m = _LABEL.match(self.s, self.i)
                if not m:
                    raise PromQLSyntaxError(f"expected a label matcher at {self.i}: {self.s!r}")
                label, quoted = m.group(), False
                self.i = m.end()
            self._skip_space()
            op = _MATCH_OP.match(self.s, self.i)
            if not op:
                if quoted:  # {"metric.name", ...}
                    self.names.add(label)
                    self._end_of_matcher()
                    continue
                raise PromQLSyntaxError(f"expected a match operator at {self.i}: {self.s!r}")
            self.i = op.end()
            if self._peek() not in ("\"", "'", "`"):
                raise PromQLSyntaxError(f"expected a string at {self.i}: {self.s!r}")
            value = self._string()
            if label == "__name__":
                if op.group() == "=":
                    self.names.add(value)
                elif op.group() == "=~" and _NAME_ALTERNATION.fullmatch(value):
                    self.names.update(value.split("|"))
            self._end_of_matcher()

    def _end_of_matcher(self) -> None:
        if self._peek() not in (",", "}"):
            raise PromQLSyntaxError(f"expected , or }} after a label matcher at {self.i}: {self.s!r}")

    # -- the scan ----------------------------------------------------------------------------------------------

    def run(self) -> set[str]:
        s = self.s
        while True:
            c = self._peek()
            if not c:
                break
            if c in "\"'`":
                self._string()
            elif c == "{":
                self._matchers()
            elif c == "[":
                if s.startswith("[[", self.i):
                    m = _GRAFANA_VARIABLE.match(s, self.i)
                    if not m:
                        raise PromQLSyntaxError(f"unterminated [[ at {self.i}: {s!r}")
                    self.i = m.end()
                else:
                    self._skip_brackets()
            elif c == "$":
                m = _GRAFANA_VARIABLE.match(s, self.i)
                if not m:
                    raise PromQLSyntaxError(f"stray $ at {self.i}: {s!r}")
                self.i = m.end()
            elif c == "(":
                self.calls.append("")
                self.i += 1
            elif c == ")":
                if not self.calls:
                    raise PromQLSyntaxError(f"unbalanced ) at {self.i}: {s!r}")
                self.calls.pop()
                self.i += 1
            elif c.isdigit() or (c == "." and self.s[self.i + 1:self.i + 2].isdigit()):
                self.i = _NUMBER.match(s, self.i).end()
            elif _IDENT.match(s, self.i):
                self._identifier()
            else:  # operators, commas, @
                self.i += 1
        if self.calls:
            raise PromQLSyntaxError(f"unbalanced ( in {s!r}")
        return self.names

    def _identifier(self) -> None:
        m = _IDENT.match(self.s, self.i)
        word = m.group()
        self.i = m.end()
        lower = word.lower()
        if lower in GROUPING:
            self._label_list()
            return
        if lower in KEYWORDS or lower in NUMBERS:
            return
        if lower in AGGREGATORS:
            # `sum by (pod) (x)` / `sum (x) by (pod)`: grouping keywords are handled when they come up
            if self._peek() == "(":
                self.calls.append(lower)
                self.i += 1
            return
        if self._peek() == "(":  # a function call
            self.calls.append(word)
            self.i += 1
            return
        if self.calls and self.calls[-1] == "label_values" and self._peek() == ")":
            return  # Grafana's label_values(..., label): the last argument is a label name
        self.names.add(word)
