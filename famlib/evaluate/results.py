"""The results table: one row per measurement, written atomically, and the evaluation cache behind it.

Every evaluation of one model on one harness task is a *part file*,
``runs/<scale>/results/parts/<model>/<harness task>.json`` = ``{"key", "rows", "examples"}``, where ``key``
hashes the model's weights (sha256 of its safetensors), the task's config hash (its YAML and data files)
and the evaluation settings. An evaluation whose part file carries the same key is not redone.
``runs/<scale>/results/results.csv`` is the union of all part files, rewritten whole under a lock and
swapped in by a rename, so a reader never sees half a table and two writers never lose each other's rows.

A second *collection*, ``interpolation``, holds the layer-interpolation analysis (notebook 06) apart from
the strategies' table: its part files live in ``results/interpolation_parts/`` and merge into
``results/interpolation.csv``, whose rows carry two more columns, ``group`` and ``alpha``.

A task that raised (a dataset that will not load, a configuration the harness refuses) has a part file too,
``{"key", "rows": [], "failed": "<error>"}``: it measures nothing, is never taken as a cached result (the
next evaluation tries it again), and is listed, with its error, in ``results/<collection>_failed.csv``
beside the collection's table (``results_failed.csv`` for the strategies), which the same merge rewrites
and removes when nothing failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from famlib.io import atomic_path, atomic_write_json, locked, sha256_file  # noqa: F401 (locked: used here and re-exported)
from famlib.paths import results_dir

# The offline suite's headline metric per axis. Multiple choice is scored by pointwise mutual information: see
# famlib.evaluate.suite.TASKS (the paper scale's Belebele and Global-PIQA, and BIG-bench's English row, keep
# lm-eval's acc; famlib.evaluate.run.primary_metric decides per task).
PRIMARY = {"perplexity": "bits_per_byte", "comprehension": "acc_mutual_info", "reasoning": "acc_mutual_info",
           "translation": "chrf"}
# Metrics where a lower value is better (the perplexity axis's); every other metric is an accuracy or chrF.
LOWER_IS_BETTER = frozenset({"bits_per_byte", "token_perplexity", "word_perplexity", "byte_perplexity"})

# design.md's schema first, then what helps to read a row on its own.
COLUMNS = [
    "model", "strategy", "expert_family", "language", "language_family", "split", "task", "direction",
    "metric", "value", "n",
    "task_name",  # what the task really measures (passage_verse_4way, belebele, ...)
    "primary",  # True for the headline metric of the task (acc, chrf, bits_per_byte)
    "stderr",  # binomial standard error of an accuracy; empty otherwise
    "chance",  # accuracy of a uniform guess (multiple choice)
    "empty_baseline", "copy_baseline",  # chrF of an empty output and of copying the source (translation)
    "constant_baseline",  # chrF of one fixed target-language sentence for every item: fluent but source-blind
    "truncated",  # items whose prompt did not fit the model's context (the harness cut it from the left)
    "empty_rate",  # translation: share of hypotheses empty after the paper's truncation rule
    "limit",  # the sample limit the run used; empty for a complete run (never report limited rows as complete)
    "scale", "harness_task", "model_sha256", "task_config_hash", "cache_key", "lm_eval", "evaluated_at",
]


# collection -> (part folder under results/, merged CSV, extra columns)
COLLECTIONS = {
    "results": ("parts", "results.csv", []),
    "interpolation": ("interpolation_parts", "interpolation.csv", ["group", "alpha"]),
    "gates": ("gates_parts", "gates.csv", []),  # the random-model gate (famlib.evaluate.gates)
    "dose": ("dose_parts", "dose.csv", ["lr", "steps"]),  # the dose-response study (famlib.dose, notebook 08)
}


def _collection(name: str) -> tuple[str, str, list[str]]:
    try:
        return COLLECTIONS[name]
    except KeyError:
        raise ValueError(f"results collection {name!r}: allowed {', '.join(COLLECTIONS)}") from None


def columns(collection: str = "results") -> list[str]:
    """The columns of a collection's merged CSV."""
    return COLUMNS + _collection(collection)[2]


def results_path(scale: str, collection: str = "results") -> Path:
    return results_dir(scale) / _collection(collection)[1]


# ----------------------------------------------------------------------------------------------------
# Model content hash
# ----------------------------------------------------------------------------------------------------
def model_sha256(model_dir: Path, cache_file: Optional[Path] = None) -> str:
    """sha256 over the sorted (file name, file sha256) of a model directory's ``*.safetensors``.

    File hashes are remembered in ``cache_file`` by (path, size, mtime), so an unchanged multi-GB model
    is hashed once. Raises FileNotFoundError naming the directory when it holds no safetensors.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files; is it a save_pretrained() directory?")
    memo: dict = {}
    if cache_file is not None and Path(cache_file).exists():
        try:
            memo = json.loads(Path(cache_file).read_text())
        except ValueError:
            memo = {}
    parts, changed = [], False
    for f in files:
        st = f.stat()
        stamp = f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if stamp not in memo:
            memo[stamp] = sha256_file(f)
            changed = True
        parts.append(f"{f.name}:{memo[stamp]}")
    if cache_file is not None and changed:
        with locked(Path(cache_file).with_suffix(".lock")):
            atomic_write_json(Path(cache_file), memo)
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# Part files and the merged table
# ----------------------------------------------------------------------------------------------------
def part_path(scale: str, model: str, harness_task: str, collection: str = "results") -> Path:
    return results_dir(scale) / _collection(collection)[0] / model / f"{harness_task}.json"


def read_part(scale: str, model: str, harness_task: str, collection: str = "results") -> Optional[dict]:
    try:
        return json.loads(part_path(scale, model, harness_task, collection).read_text())
    except (OSError, ValueError):
        return None


def write_part(scale: str, model: str, harness_task: str, key: str, rows: list[dict],
               examples: Optional[list[dict]] = None, collection: str = "results") -> None:
    atomic_write_json(part_path(scale, model, harness_task, collection),
                      {"key": key, "rows": rows, "examples": examples or []})


FAILED_COLUMNS = ["model", "harness_task", "task", "language", "direction", "error", "cache_key", "evaluated_at"]


def write_failed_part(scale: str, model: str, harness_task: str, key: str, failure: dict,
                      collection: str = "results") -> None:
    """Record that ``harness_task`` raised for ``model``: ``failure`` holds :data:`FAILED_COLUMNS`' values."""
    atomic_write_json(part_path(scale, model, harness_task, collection),
                      {"key": key, "rows": [], "examples": [], "failed": failure["error"], "failure": failure})


def failed_path(scale: str, collection: str = "results") -> Path:
    return results_dir(scale) / f"{Path(_collection(collection)[1]).stem}_failed.csv"


def _failures(scale: str, collection: str) -> list[dict]:
    root = results_dir(scale) / _collection(collection)[0]
    out = []
    for f in sorted(root.glob("*/*.json")):
        try:
            part = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if part.get("failed"):
            out.append(part["failure"])
    return out


def _all_rows(scale: str, collection: str = "results") -> Iterable[dict]:
    root = results_dir(scale) / _collection(collection)[0]
    for f in sorted(root.glob("*/*.json")):
        try:
            yield from json.loads(f.read_text())["rows"]
        except (OSError, ValueError, KeyError):
            continue  # a part being replaced right now; the next merge includes it


def merge_results(scale: str, collection: str = "results") -> Path:
    """Rewrite ``results.csv`` (or another collection's CSV) from its part files, atomically and under a lock."""
    import pandas as pd

    out = results_path(scale, collection)
    with locked(results_dir(scale) / f".{collection}.lock"):
        df = pd.DataFrame(list(_all_rows(scale, collection)), columns=columns(collection))
        df = df.sort_values(["model", "task", "language", "direction", "metric"], kind="stable")
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
        failed, failures = failed_path(scale, collection), _failures(scale, collection)
        if failures:
            with atomic_path(failed) as tmp:
                pd.DataFrame(failures, columns=FAILED_COLUMNS).to_csv(tmp, index=False)
        elif failed.exists():
            failed.unlink()
    return out


def load_failures(scale: str, collection: str = "results"):
    """The tasks whose last evaluation raised, with the error (``results_failed.csv``; empty if none)."""
    import pandas as pd

    path = failed_path(scale, collection)
    if not path.exists():
        return pd.DataFrame(columns=FAILED_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"direction": str})


def load_results(scale: str, collection: str = "results"):
    """``results.csv`` (or ``interpolation.csv``) of a scale as a DataFrame (empty, with the schema's
    columns, if there is none)."""
    import pandas as pd

    path = results_path(scale, collection)
    if not path.exists():
        return pd.DataFrame(columns=columns(collection))
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={"direction": str, "expert_family": str, "language_family": str, "group": str,
                              "limit": "Float64"})


def evaluated_at() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S")
