#!/usr/bin/env python3
"""Checks that the headers under include/anweddol/ keep the layering that
README.md states (its Layout table):

  1. No detail header includes a public one. A header under detail/ includes
     no public header (include/anweddol/*.hpp), neither directly nor through
     the impl/ files it includes: the public headers are built on the detail
     ones, never the other way round.
  2. detail/errc.hpp, detail/diagnostics.hpp and detail/random.hpp are at the
     bottom: they include no anweddol header but each other and
     detail/config.hpp (the build mode's macros), again directly or through
     the impl/ files they include.

Every `#include <anweddol/...>` (or "anweddol/...") line counts, wherever it
is in the file and whatever #if surrounds it. Prints each violation as
FILE:LINE: `#include <X>`: why, and exits 1 if there is any.

  python3 scripts/check_layering.py [REPO]    (REPO: this script's repository)
"""

import re
import sys
from pathlib import Path

BOTTOM = {"anweddol/detail/errc.hpp", "anweddol/detail/diagnostics.hpp", "anweddol/detail/random.hpp"}
BOTTOM_MAY_INCLUDE = BOTTOM | {"anweddol/detail/config.hpp"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](anweddol/[^>"]+)[>"]')

PUBLIC_FROM_DETAIL = (
    "a detail header includes no public one (README, Layout): move what it needs "
    "from {public} down into a detail header, which {public} then includes with "
    "every public name spelled as before; or forward-declare what it only names; "
    "or, if this code implements a public class, move it to impl/")
ABOVE_BOTTOM = (
    "errc.hpp, diagnostics.hpp and random.hpp are the bottom of detail/ (README, "
    "Layout) and include no anweddol header but each other and detail/config.hpp: "
    "move what they need down into one of them, or the code that needs it out of the bottom")


def kind(name):
    """'public', 'detail' or 'impl' for a path such as anweddol/detail/errc.hpp."""
    parts = name.split("/")
    if len(parts) == 2:
        return "public"
    return parts[1] if parts[1] in ("detail", "impl") else "other"


def read_includes(include_dir):
    """{header: [(line number, included header)]} for every file under include/anweddol/."""
    headers = {}
    for path in sorted((include_dir / "anweddol").rglob("*")):
        if not path.is_file() or path.suffix not in (".hpp", ".ipp"):
            continue
        name = path.relative_to(include_dir).as_posix()
        found = []
        with path.open(encoding="utf-8") as text:
            for number, line in enumerate(text, 1):
                match = INCLUDE.match(line)
                if match:
                    found.append((number, match.group(1)))
        headers[name] = found
    return headers


def reached(headers, start):
    """(file, line, included) for each anweddol include of `start` and of the impl/ files it
    includes, transitively; each impl/ file followed once."""
    seen = {start}
    pending = [start]
    while pending:
        current = pending.pop()
        for number, included in headers.get(current, []):
            yield current, number, included
            if kind(included) == "impl" and included not in seen:
                seen.add(included)
                pending.append(included)


def violations(headers):
    found = set()
    for header in headers:
        if kind(header) != "detail":
            continue
        for where, number, included in reached(headers, header):
            through = "" if where == header else f" (reached from {header})"
            if kind(included) == "public":
                found.add((where, number, included,
                           PUBLIC_FROM_DETAIL.format(public=included) + through))
            elif header in BOTTOM and kind(included) != "impl" and included not in BOTTOM_MAY_INCLUDE:
                found.add((where, number, included, ABOVE_BOTTOM + through))
    return sorted(found)


def main():
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    include_dir = repo / "include"
    headers = read_includes(include_dir)
    if not headers:
        print(f"check_layering: no headers under {include_dir / 'anweddol'}", file=sys.stderr)
        return 1
    found = violations(headers)
    for where, number, included, why in found:
        print(f"include/{where}:{number}: `#include <{included}>`: {why}")
    if found:
        print(f"check_layering: {len(found)} include(s) break the layering README.md states",
              file=sys.stderr)
        return 1
    print(f"check_layering: {len(headers)} headers keep the layering README.md states")
    return 0


if __name__ == "__main__":
    sys.exit(main())
