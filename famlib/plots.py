"""Figures. Each function takes tidy data, returns a matplotlib Figure, and can save PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    # Scripts, tests and CI have no display. Inside a Jupyter kernel (JupyterLab, papermill) the inline
    # backend stays, so a figure left as a cell's last value is drawn in the notebook.
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, path_stem: Path) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` (150 dpi) and ``<stem>.pdf``; return both paths.

    The PDF carries no creation date, so the same figure gives the same bytes (no churn in committed figures).
    """
    from famlib.io import atomic_path

    path_stem = Path(path_stem)
    out = []
    for ext in ("png", "pdf"):
        target = path_stem.with_name(f"{path_stem.name}.{ext}")  # not with_suffix: ids contain dots
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(target)
    return out


def corpus_figure(stats, title: str = ""):
    """Stacked bars of MB per language and split, languages grouped by family and role."""
    import pandas as pd

    df = stats.groupby(["family", "role", "language", "split"], as_index=False)["bytes"].sum()
    table = df.pivot_table(index=["family", "role", "language"], columns="split", values="bytes", fill_value=0)
    table = table.reindex(columns=[c for c in ("train", "validation", "evaluation") if c in table.columns])
    role_order = {"base": 0, "held_in": 1, "held_out": 2}
    table = table.sort_index(key=lambda idx: idx.map(role_order) if idx.name == "role" else idx)
    fig, ax = plt.subplots(figsize=(max(6, 0.38 * len(table)), 4))
    (table / 1e6).plot.bar(stacked=True, ax=ax, color=["#4C72B0", "#DD8452", "#55A868"], width=0.8)
    ax.set_xticklabels([f"{lang}\n{'*' if role == 'held_out' else ''}" for fam, role, lang in table.index], rotation=0)
    ax.set_xlabel("language (* = held out); groups left to right: " + ", ".join(pd.unique(table.index.get_level_values(0))))
    ax.set_ylabel("text (MB, UTF-8)")
    ax.set_title(title or "Offline corpus per language and split")
    ax.legend(title="split")
    fig.tight_layout()
    return fig


def read_metrics(run_dir: Path):
    """``metrics.jsonl`` of a training run as a DataFrame (one row per optimiser step)."""
    import pandas as pd

    return pd.read_json(Path(run_dir) / "metrics.jsonl", lines=True)


def loss_curve(metrics, title: str = "", smooth: int = 20):
    """Training loss (raw and smoothed) and validation loss against tokens seen."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = metrics["tokens"] / 1e6
    ax.plot(x, metrics["loss"], color="#4C72B0", alpha=0.25, lw=0.8, label="train (per step)")
    ax.plot(x, metrics["loss"].rolling(smooth, min_periods=1).mean(), color="#4C72B0", label=f"train ({smooth}-step mean)")
    if "val_loss" in metrics:
        v = metrics.dropna(subset=["val_loss"])
        ax.plot(v["tokens"] / 1e6, v["val_loss"], "o-", color="#C44E52", label="validation")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title or "Training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def base_knowledge(languages, title: str = ""):
    """Bits per byte of the base vs a unigram model, per language (held-out languages marked *)."""
    import numpy as np

    df = languages.dropna(subset=["bits_per_byte"])
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(df)), 4))
    x = np.arange(len(df))
    ax.bar(x - 0.2, df["unigram_bpb"], 0.4, label="unigram (same language's training text)", color="#BBBBBB")
    ax.bar(x + 0.2, df["bits_per_byte"], 0.4, label="base model", color="#4C72B0")
    ax.set_xticks(x, [f"{lang}{'*' if role == 'held_out' else ''}" for lang, role in zip(df.index, df["role"])])
    ax.set_ylabel("bits per byte (evaluation split)")
    ax.set_title(title or "Base model vs unigram")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
