"""Pod mount paths -> local directories, substituted in one pass (a local path may itself start with a
mounted path such as /tmp, so replacing one mount after another would rewrite twice)."""

from __future__ import annotations

import re


def rewrite_paths(line: str, paths: dict[str, str]) -> str:
    if not paths:
        return line
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    pattern = re.compile(rf"(?<=[\s\"])({alternatives})(?=/|\s|\"|$)")
    return pattern.sub(lambda m: paths[m.group(1)], line)
