"""Number formatting and fixed-width / Markdown tables shared by the reports."""

from __future__ import annotations


def fmt(x: float) -> str:
    """A figure for a table: 0, 3 significant digits when very large or small, else 2 places."""
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-2:
        return f"{x:.3g}"
    return f"{x:,.2f}"


def text_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [
        max([len(h)] + [len(r[i]) for r in rows if len(r) == len(head)]) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    for r in rows:
        if len(r) != len(head):  # a row with a message instead of figures
            lines.append("  ".join([r[0].rjust(widths[0])] + list(r[1:])))
        else:
            lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def md_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = list(r) + [""] * (len(head) - len(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["fmt", "md_table", "text_table"]
