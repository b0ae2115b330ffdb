"""Printing tables so that no cell is ever cut: the one helper the CLI and the reports share.

rich shortens cells with "…" when a table is wider than the console (80 columns when the output is
not a terminal). Outside a terminal the console is widened to the table's natural width; in a
terminal, cells that do not fit fold onto more lines instead of being cut.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(console: Console, table: Table) -> None:
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    if console.is_terminal:
        console.print(table)
        return
    width = max(console.width, console.measure(table, options=console.options.update(width=10_000)).maximum)
    wide = Console(file=console.file, width=width, no_color=True, highlight=False, force_terminal=False)
    wide.print(table)
