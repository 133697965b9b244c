"""Hold every measured file to a floor of line coverage (the suite's total can hide one file).

    python scripts/coverage_floor.py COVERAGE_JSON [--floor 90]

Reads the JSON report of coverage.py (`pytest --cov --cov-report=json:PATH`, or
`coverage json -o PATH`), prints each file below the floor with its covered and missing
lines, and exits 1 if there is one, 0 if every file is at the floor or above. scripts/test.sh
runs it after the suite. A file without statements (an empty __init__) counts as covered.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_FLOOR = 90.0


@dataclass(frozen=True)
class FileCoverage:
    path: str
    statements: int
    covered: int
    missing: tuple[int, ...]

    @property
    def percent(self) -> float:
        return 100.0 if self.statements == 0 else 100.0 * self.covered / self.statements

    def below(self, floor: float) -> bool:
        # In whole numbers of lines, not a rounded percentage: 89.96% is below 90%.
        return self.covered * 100 < floor * self.statements


def read_report(path: Path) -> list[FileCoverage]:
    """Every file of a coverage.py JSON report, sorted by path."""
    try:
        report: dict[str, Any] = json.loads(path.read_text())
        files: dict[str, Any] = report["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f"coverage_floor: cannot read a coverage JSON report at {path}: {error}"
        ) from None
    return sorted(
        (
            FileCoverage(
                path=name,
                statements=int(data["summary"]["num_statements"]),
                covered=int(data["summary"]["covered_lines"]),
                missing=tuple(data.get("missing_lines", ())),
            )
            for name, data in files.items()
        ),
        key=lambda file: file.path,
    )


def describe_lines(lines: tuple[int, ...]) -> str:
    """1, 2, 3, 7 -> "1-3, 7"."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def check(files: list[FileCoverage], floor: float) -> list[str]:
    """One line per file below the floor (empty: every file is at the floor or above)."""
    return [
        f"{file.percent:5.1f}%  {file.path}: {file.covered} of {file.statements} lines; "
        f"missing {describe_lines(file.missing)}"
        for file in files
        if file.below(floor)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="coverage.py's JSON report")
    parser.add_argument(
        "--floor", type=float, default=DEFAULT_FLOOR, help="percent of lines (default: 90)"
    )
    options = parser.parse_args(argv)
    files = read_report(options.report)
    if not files:
        print(f"coverage_floor: {options.report} measured no file", file=sys.stderr)
        return 1
    failures = check(files, options.floor)
    if failures:
        print(f"{len(failures)} of {len(files)} files below {options.floor:g}% line coverage:")
        print("\n".join(failures))
        return 1
    print(f"all {len(files)} files at {options.floor:g}% line coverage or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
