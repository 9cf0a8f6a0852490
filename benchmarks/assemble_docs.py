"""Assemble docs/benchmarks.md from the summary and the reports each benchmark script writes.

Run after re-running a benchmark: ``python benchmarks/assemble_docs.py``. Each report's headings are shifted so
that it sits one level below the page title (code blocks are left alone).
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
SECTIONS = [
    "benchmarks_train", "benchmarks_metrics", "benchmarks_probe", "benchmarks_classical", "benchmarks_osie",
    "benchmarks_backbones", "benchmarks_precision", "benchmarks_cache",
]


def demote(text: str) -> str:
    """Make the report's top heading level 2 (and its sub-headings one level deeper), outside code fences."""
    lines = text.splitlines()
    fenced, headings = False, []
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            headings.append(number)
    levels = [len(lines[n]) - len(lines[n].lstrip("#")) for n in headings]
    shift = max(0, 2 - min(levels)) if levels else 0
    for number in headings:
        lines[number] = "#" * shift + lines[number]
    return "\n".join(lines)


def main() -> None:
    parts = [(DOCS / "benchmarks_summary.md").read_text().rstrip()]
    parts += [demote((DOCS / f"{name}.md").read_text()).rstrip() for name in SECTIONS]
    (DOCS / "benchmarks.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
