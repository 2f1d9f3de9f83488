from __future__ import annotations

from rich.table import Table

from nnmark.verification.stats import Verdict, format_p_value


def verdict_table(rows: list[tuple[str, float | None, Verdict]], title: str | None = None) -> Table:
    """One row per (model name, test accuracy or None, verdict)."""
    table = Table(title=title)
    table.add_column("model")
    if any(accuracy is not None for _, accuracy, _ in rows):
        table.add_column("test acc", justify="right")
    table.add_column("agreement k/n", justify="right")
    table.add_column("p-value", justify="right")
    table.add_column("verdict")
    for name, accuracy, verdict in rows:
        cells = [name]
        if len(table.columns) == 5:
            cells.append("-" if accuracy is None else f"{100 * accuracy:.1f}%")
        cells += [f"{verdict.matches}/{verdict.total}", format_p_value(verdict.p_value),
                  "[bold green]OWNED[/]" if verdict.owned else "[yellow]not owned[/]"]
        table.add_row(*cells)
    return table
