"""Record, and compare, the tables of fixed-seed runs of the entry points (a refactor must not change them).

``python benchmarks/behaviour_snapshot.py record --out DIR [--repo CHECKOUT] [--osie ../shared/data/osie]`` runs,
as subprocesses of the checkout's ``train.py`` / ``probe.py``:

- ``train``: a 2-job training sweep (``task=saliency,scene``, conv5_3 tuned, 1 epoch, 64 px synthetic set);
- ``probe``: ``probe.py sweep=<that sweep>`` with the default analyses (inner, output, scene attention);
- ``popout``: ``probe.py analyses=[popout]`` on a small generated pop-out set (random trunk, 64 px);
- ``benchmark``: ``probe.py analyses=[benchmark] benchmark.limit=8`` on the real OSIE data (when present).

``python benchmarks/behaviour_snapshot.py compare BEFORE AFTER [--rtol 1e-9]`` compares every table (CSV,
Markdown, ``.npz``, JSON) and the training summaries' metrics of two records: identical text, or numbers equal
within ``rtol``. Exit 1 on a
difference, with each differing file and cell named.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

SMALL = [
    "data.num_train=12", "data.num_val=6", "data.num_probe=8", "data.salicon_hw=[96,128]",
    "data.osie_hw=[120,160]", "data.num_observers=6", "data.image_size=64", "seed=0",
]
QUIET = ["logger=none", "print_config=false"]


def _run(repo: Path, args: list[str], log: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, env=env)
    log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(args)}\n{result.stderr[-3000:]}")


def record(out: Path, repo: Path, osie: Path | None) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "synthetic"
    small = [f"data.root={data}", *SMALL]
    _run(repo, ["train.py", "-m", "task=saliency,scene", "finetune.layers=1", "trainer.max_epochs=1",
                "++task.hidden_features=16", "~callbacks.progress_bar", *small, *QUIET,
                f"hydra.sweep.dir={out / 'train'}"], out / "train.log")
    _run(repo, ["probe.py", f"sweep={out / 'train'}", *small, *QUIET, "layers=[conv4_3,conv5_3]",
                "figures.search_images=2", "scene_attention.n_resamples=199", "progress_bar=false",
                f"hydra.run.dir={out / 'probe'}"], out / "probe.log")
    _run(repo, ["-m", "saliency_probe.data.popout", "--out", str(out / "popout_set"), "--num", "8", "--seed", "1",
                "--image-size", "128", "--grid", "3"], out / "popout_set.log")
    _run(repo, ["probe.py", "analyses=[popout]", "data=popout", f"data.root={out / 'popout_set'}", *QUIET,
                "popout.image_size=64", "layers=[conv4_3,conv5_3]", "figures.enabled=false", "progress_bar=false",
                f"hydra.run.dir={out / 'popout'}"], out / "popout.log")
    if osie is not None and (osie / "data" / "eye" / "fixations.mat").is_file():
        _run(repo, ["probe.py", "analyses=[benchmark]", "data=osie", f"data.root={osie.resolve()}",
                    "benchmark.limit=8", "benchmark.figure_images=0", *QUIET, "progress_bar=false",
                    f"hydra.run.dir={out / 'benchmark'}"], out / "benchmark.log")
    print(f"recorded in {out}")


def _tables(root: Path) -> dict[str, Path]:
    found = {str(p.relative_to(root)): p for suffix in ("csv", "md", "npz", "json")
             for p in root.glob(f"*/tables/*.{suffix}")}
    for summary in sorted((root / "train").glob("*/summary.json")):
        found[str(summary.relative_to(root))] = summary
    return found


def _close(a: str, b: str, rtol: float) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) and math.isnan(y):
        return True
    return math.isclose(x, y, rel_tol=rtol, abs_tol=1e-12)


def _compare_csv(a: Path, b: Path, rtol: float) -> list[str]:
    with open(a, newline="") as fa, open(b, newline="") as fb:
        rows_a, rows_b = list(csv.reader(fa)), list(csv.reader(fb))
    if len(rows_a) != len(rows_b):
        return [f"{len(rows_a)} rows != {len(rows_b)} rows"]
    problems = []
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=True)):
        if len(ra) != len(rb):
            problems.append(f"row {i}: {len(ra)} != {len(rb)} cells")
            continue
        problems += [f"row {i} col {j}: {x!r} != {y!r}" for j, (x, y) in enumerate(zip(ra, rb, strict=True))
                     if not _close(x, y, rtol)]
    return problems


def _compare_summary(a: Path, b: Path, rtol: float) -> list[str]:
    ma, mb = json.loads(a.read_text())["metrics"], json.loads(b.read_text())["metrics"]
    if set(ma) != set(mb):
        return [f"metric keys {sorted(ma)} != {sorted(mb)}"]
    return [f"{k}: {ma[k]} != {mb[k]}" for k in ma if not _close(str(ma[k]), str(mb[k]), rtol)]


def _normalised_text(path: Path, root: Path) -> str:
    """A Markdown table's text with the record's own folder and the measured timings masked."""
    text = re.sub(r"wall time [0-9.]+ s", "wall time <t> s", path.read_text().replace(str(root), "<root>"))
    lines, timed = [], []
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and any("s/img" in cell for cell in cells):
            timed = [i for i, cell in enumerate(cells) if "s/img" in cell]
        elif not line.startswith("|"):
            timed = []
        elif timed and not set(line) <= set("|- "):
            cells = ["<t>" if i in timed else cell for i, cell in enumerate(cells)]
        lines.append("|".join(cells))
    return "\n".join(lines)


def _compare_text(a: Path, b: Path, rtol: float) -> list[str]:
    root_a, root_b = a.parents[2], b.parents[2]
    return [] if _normalised_text(a, root_a) == _normalised_text(b, root_b) else ["text differs"]


def _compare_npz(a: Path, b: Path, rtol: float) -> list[str]:
    import numpy as np

    with np.load(a) as xa, np.load(b) as xb:
        if set(xa.files) != set(xb.files):
            return [f"arrays {sorted(xa.files)} != {sorted(xb.files)}"]
        return [f"{k} differs" for k in xa.files if xa[k].dtype.kind in "fc"
                and not np.allclose(xa[k], xb[k], rtol=rtol, atol=1e-12, equal_nan=True)
                or xa[k].dtype.kind not in "fc" and not np.array_equal(xa[k], xb[k])]


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): str(value)}


def _compare_json(a: Path, b: Path, rtol: float) -> list[str]:
    fa, fb = _flatten(json.loads(a.read_text())), _flatten(json.loads(b.read_text()))
    if set(fa) != set(fb):
        return [f"keys differ: {sorted(set(fa) ^ set(fb))[:5]}"]
    return [f"{k}: {fa[k]} != {fb[k]}" for k in fa if not _close(fa[k], fb[k], rtol)]


CHECKS = {".csv": _compare_csv, ".md": _compare_text, ".npz": _compare_npz, ".json": _compare_json}


def compare(before: Path, after: Path, rtol: float) -> int:
    a, b = _tables(before), _tables(after)
    failures = [f"only in {before}: {name}" for name in sorted(set(a) - set(b))]
    failures += [f"only in {after}: {name}" for name in sorted(set(b) - set(a))]
    for name in sorted(set(a) & set(b)):
        check = _compare_summary if name.endswith("summary.json") else CHECKS[Path(name).suffix]
        failures += [f"{name}: {p}" for p in check(a[name], b[name], rtol)[:5]]
    print(f"compared {len(set(a) & set(b))} files: {len(failures)} difference(s)")
    for line in failures:
        print("  " + line)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    rec.add_argument("--osie", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/osie")
    cmp = commands.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.out, args.repo.resolve(), args.osie)
        return 0
    return compare(args.before, args.after, args.rtol)


if __name__ == "__main__":
    sys.exit(main())
