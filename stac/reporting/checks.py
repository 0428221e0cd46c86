"""``stac verify``'s checks as a table with a PASS / FAIL column and a count."""

from __future__ import annotations

from stac.runtime.verify import Check


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  result  detail"]
    lines += [f"{c.name:<{width}}  {'PASS' if c.passed else 'FAIL':<6}  {c.detail}" for c in checks]
    failed = sum(not c.passed for c in checks)
    lines.append(
        f"\n{len(checks) - failed} of {len(checks)} checks passed"
        + (f"; {failed} FAILED" if failed else "")
    )
    return "\n".join(lines)


__all__ = ["format_checks"]
