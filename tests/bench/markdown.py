"""Reading the tables of a benchmark section back, for the harness's tests."""

from __future__ import annotations

import re


def section(markdown: str, name: str) -> str:
    """The text of scenario `name`'s section."""
    found = re.search(
        rf"<!-- bench:{name}:begin -->\n(.*?)<!-- bench:{name}:end -->", markdown, re.S
    )
    assert found, f"no section {name}"
    return found.group(1)


def table(markdown: str, first_header: str = "| tool | step |") -> list[dict[str, str]]:
    """The rows of the first table whose header line starts with `first_header`, as
    {header: cell} dictionaries."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    headers = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def by_tool_step(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["tool"], r["step"]): r for r in rows}


def number(cell: str) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)×?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group(1))


def verdicts(markdown: str) -> dict[str, str]:
    """The targets table: goal -> pass / **FAIL** / n/a."""
    return {r["target"]: r["result"] for r in table(markdown, "| target | measured |")}
