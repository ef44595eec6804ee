"""One model against the base: the headline metric per task, language and direction, as a table and a figure."""

from __future__ import annotations

from famlib.evaluate.results import LOWER_IS_BETTER
from famlib.evaluate.suite import AXES


def against_base(rows, base_rows):
    """Primary metric of ``rows`` next to the base's: one row per (task, language, direction).

    Columns: task, task_name, language, split, direction, metric, model, base, delta (model - base),
    better (True when the model beats the base), chance, empty_baseline, copy_baseline, constant_baseline, n.
    """
    import pandas as pd

    keys = ["task", "task_name", "language", "direction", "metric"]
    cols = keys + ["split", "value", "chance", "empty_baseline", "copy_baseline", "constant_baseline", "n"]
    mine = rows[rows["primary"].astype(bool)][cols].rename(columns={"value": "model"})
    base = base_rows[base_rows["primary"].astype(bool)][keys + ["value"]].rename(columns={"value": "base"})
    table = mine.merge(base, on=keys, how="left")
    table["delta"] = table["model"] - table["base"]
    lower = table["metric"].isin(LOWER_IS_BETTER)
    table["better"] = (table["delta"] < 0).where(lower, table["delta"] > 0)
    table["task"] = pd.Categorical(table["task"], categories=list(AXES), ordered=True)
    # one group per task name too: the English comprehension row (BIG-bench's) is another task and metric
    table = table.sort_values(["task", "task_name", "direction", "split", "language"]).reset_index(drop=True)
    table["task"] = table["task"].astype(str)
    return table[["task", "task_name", "language", "split", "direction", "metric", "model", "base", "delta",
                  "better", "chance", "empty_baseline", "copy_baseline", "constant_baseline", "n"]]


def summary(table, model: str) -> str:
    """One line per task, task name and direction: mean of the model vs the base, and the reference levels."""
    lines = []
    for (task, name, direction), g in table.groupby(["task", "task_name", "direction"], sort=False):
        label = f"{task} {direction}".strip() + f" [{name}]"
        ref = ""
        if g["chance"].notna().any():
            ref = f", chance {g['chance'].mean():.2f}"
        if g["copy_baseline"].notna().any():
            ref = (f", empty output {g['empty_baseline'].mean():.1f}, copy the source {g['copy_baseline'].mean():.1f}, "
                   f"one fixed sentence {g['constant_baseline'].mean():.1f}")
        lines.append(f"{label} ({g['metric'].iloc[0]}, {len(g)} languages): {model} {g['model'].mean():.3g} vs base "
                     f"{g['base'].mean():.3g}; {int(g['better'].sum())} of {len(g)} languages better than base{ref}")
    return "\n".join(lines)


def against_base_figure(table, model: str):
    """One panel per task, task name and direction: the model's and the base's score per language, chance/baselines dashed."""
    import numpy as np

    from famlib.plots import plt  # famlib's headless backend

    panels = [((t, d), g) for (t, _, d), g in table.groupby(["task", "task_name", "direction"], sort=False)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7, 0.35 * table["language"].nunique() + 3) + 1.8, 2.6 * len(panels)),
                             squeeze=False)
    for ax, ((task, direction), g) in zip(axes[:, 0], panels):
        x = np.arange(len(g))
        ax.bar(x - 0.2, g["base"], width=0.4, label="base", color="#8C8C8C")
        ax.bar(x + 0.2, g["model"], width=0.4, label=model, color="#4C72B0")
        for col, style, color, name in (("chance", "--", "#C44E52", "chance"),
                                        ("copy_baseline", "--", "#C44E52", "copy the source"),
                                        ("constant_baseline", ":", "#8172B2", "one fixed sentence")):
            if g[col].notna().any():  # one short line over each language's pair of bars
                ax.hlines(g[col], x - 0.45, x + 0.45, linestyles=style, colors=color, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{lang}{'*' if split == 'held_out' else ''}" for lang, split in zip(g["language"], g["split"])])
        metric = g["metric"].iloc[0]
        ax.set_ylabel(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.set_title(f"{task} {direction}".strip() + f" ({g['task_name'].iloc[0]})", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # never over a bar
    axes[-1, 0].set_xlabel("language (* = held out)")
    fig.tight_layout()
    return fig
