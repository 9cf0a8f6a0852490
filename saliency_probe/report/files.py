"""The run folder's layout: every file name that an analysis writes and the report reads (one home for each).

``<run>/tables/`` holds CSV, Markdown, JSON and ``.npz`` tables, ``<run>/figures/`` the PNG figures, and the run
folder itself ``probe_summary.json`` and ``report.md``. Names that depend on a model or layer are functions.
"""

from __future__ import annotations

TABLES_DIR = "tables"
FIGURES_DIR = "figures"
SUMMARY = "probe_summary.json"
REPORT = "report.md"
#: The files a run produced (saliency_probe/run_folder.py writes it at the end of every run).
MANIFEST = "manifest.json"

# inner representations (Eq. 1, Section 4.3; Tables 2, 3, 7; Figs. 3, 4)
INNER_CSV = "inner_representation.csv"
INNER_MD = "inner_representation.md"
#: Section 5.2: ANOVA and Tukey HSD across categories of the fine-tuning improvements, per fine-tuned model.
STATISTICS_FINETUNE = "statistics_finetune.json"


def inner_units_npz(model: str) -> str:
    """Per-unit category means of one model (``model`` already made file-safe)."""
    return f"inner_units_{model}.npz"


def inner_units_png(model: str, layer: str) -> str:
    return f"inner_units_{model}_{layer}.png"


def inner_improvement_png(layer: str) -> str:
    return f"inner_improvement_{layer}.png"


# output analysis (Eqs. 2-3, Fig. 7; Figs. 5, 6, 11)
OUTPUT_CSV = "output_saliency.csv"
OUTPUT_REGIONS_CSV = "output_regions.csv"
OUTPUT_MD = "output_saliency.md"
OUTPUT_STATISTICS = "statistics.json"


def output_fig7_png(model: str) -> str:
    return f"output_fig7_{model}.png"


# unit figures before/after fine-tuning and across tasks (Figs. 5, 6, 11): PNG stems
FIG5_UNIT_GAIN = "fig5_unit_gain"


def fig6_unit(category: str) -> str:
    return f"fig6_unit_{category}"


def fig11_tasks(layers: str) -> str:
    return f"fig11_tasks_layers{layers}"


# scene attention (Table 8)
SCENE_CSV = "scene_attention.csv"
SCENE_PER_IMAGE_CSV = "scene_attention_per_image.csv"
SCENE_MD = "scene_attention.md"

# pop-out (Tables 4-6, Fig. 8); each table also as <stem>.md where it has a Markdown form
POPOUT_MODELS = "popout_models"
POPOUT_PER_IMAGE = "popout_per_image"
POPOUT_LEVELS = "popout_levels"
POPOUT_LAYERS = "popout_layers"
POPOUT_SWEEP = "popout_sweep"
POPOUT_EXAMPLES = "popout_examples"


def popout_psychometric(score: str) -> str:
    return f"popout_psychometric_{score}"


def popout_fig9(model: str) -> str:
    """Fig. 9 of one probed trunk (``model`` already made file-safe): PNG stem."""
    return f"popout_fig9_{model}"


# benchmark on human fixations
BENCHMARK_CSV = "benchmark.csv"
BENCHMARK_PER_IMAGE_CSV = "benchmark_per_image.csv"
BENCHMARK_MD = "benchmark.md"
BENCHMARK_FIGURE = "benchmark_examples.png"


def in_tables(name: str) -> str:
    """``tables/<name>`` relative to the run folder."""
    return f"{TABLES_DIR}/{name}"
