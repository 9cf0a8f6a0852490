"""Result tables as CSV, Markdown (the paper's layout) and W&B tables, plus ``.npz`` arrays; all written
atomically so an interrupted run never leaves half a file. Reused by every probe analysis."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saliency_probe.io_utils import write_text

Row = Mapping[str, Any]


def _cell(value: Any) -> Any:
    """CSV cell: floats at full precision (``repr``), NaN as ``nan``, numpy scalars as Python values."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def csv_text(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """The rows as CSV text with a header; every row must hold every column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for number, row in enumerate(rows):
        missing = [column for column in columns if column not in row]
        if missing:
            raise KeyError(f"row {number} lacks column(s) {missing}")
        writer.writerow([_cell(row[column]) for column in columns])
    return buffer.getvalue()


def write_csv(path: str | os.PathLike[str], rows: Sequence[Row], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) as CSV with the given column order, atomically."""
    return write_text(path, csv_text(rows, columns))


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a CSV written by :func:`write_csv` back as a list of dicts of strings."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def format_number(value: Any, digits: int = 2) -> str:
    """A table cell: integers as is, floats rounded to ``digits``, NaN/None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in body)])


def pivot(
    rows: Sequence[Row],
    row_key: str | Callable[[Row], str],
    column_key: str,
    value_key: str,
    row_order: Sequence[str] | None = None,
    column_order: Sequence[str] | None = None,
) -> tuple[list[str], list[str], dict[tuple[str, str], Any]]:
    """``(row labels, column labels, {(row, column): value})``; orders default to first appearance."""
    label = row_key if callable(row_key) else (lambda row: str(row[row_key]))
    cells: dict[tuple[str, str], Any] = {}
    seen_rows: list[str] = []
    seen_columns: list[str] = []
    for row in rows:
        r, c = label(row), str(row[column_key])
        cells[(r, c)] = row[value_key]
        if r not in seen_rows:
            seen_rows.append(r)
        if c not in seen_columns:
            seen_columns.append(c)
    row_labels = [r for r in row_order if r in seen_rows] if row_order is not None else seen_rows
    column_labels = (
        [c for c in column_order if c in seen_columns] if column_order is not None else seen_columns
    )
    return row_labels, column_labels, cells


def pivot_markdown(
    rows: Sequence[Row],
    row_key: str | Callable[[Row], str],
    column_key: str,
    value_key: str,
    corner: str = "",
    digits: int = 2,
    row_order: Sequence[str] | None = None,
    column_order: Sequence[str] | None = None,
) -> str:
    """One statistic as a Markdown table: ``row_key`` values as rows, ``column_key`` values as columns."""
    row_labels, column_labels, cells = pivot(rows, row_key, column_key, value_key, row_order, column_order)
    body = [[r, *(format_number(cells.get((r, c)), digits) for c in column_labels)] for r in row_labels]
    return markdown_table([corner, *column_labels], body)


def log_wandb_table(logger: Any, key: str, rows: Sequence[Row], columns: Sequence[str]) -> bool:
    """Log the rows as a W&B table through a Lightning ``WandbLogger``; False (and nothing) for other loggers."""
    if logger is None or not hasattr(logger, "log_table"):
        return False
    data = [[_wandb_cell(row[column]) for column in columns] for row in rows]
    logger.log_table(key=key, columns=list(columns), data=data)
    return True


def _wandb_cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
