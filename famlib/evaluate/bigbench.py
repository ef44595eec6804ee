"""An English multiple-choice benchmark for the base language, from BIG-bench's task files on PyPI.

The offline suites have no English row for comprehension of their own: every English passage's candidates
would be a second English translation, and a paraphrase out-overlaps any distractor (README, "Evaluation").
The paper's comprehension axis (Belebele) has English, and forgetting English is what CPT into other
languages does first. So a scale may name one of BIG-bench's JSON tasks as its English comprehension row
(``evaluation.english_task``): a real benchmark, written by people for people, that ships in a registry
package (PyPI's ``bigbench`` 1.0.0 sdist carries ``bigbench/benchmark_tasks/<task>/task.json``).

Fetching. pip cannot download that sdist: with ``--no-deps`` it still builds the package's metadata,
which declares a direct-URL dependency (``bleurt @ file://...``) that pip refuses from PyPI. The file is
therefore fetched from PyPI's file host by its published URL and checked against its published sha256,
like every other source (:func:`famlib.data.sources.fetch`); only the task files are extracted.

Items. A task's examples with a single best ``target_scores`` entry become items: the ``task_prefix`` and
the example's ``input`` as the passage, "Answer:" as the question, the choices in an order drawn per item
(the files list the answer first in some tasks, last in others). Examples are taken in the order of a
salted hash of their index: the first ``FEWSHOT_POOL`` are the few-shot pool, the rest (up to
``evaluation.max_items``) the test items, so a prompt never contains its own answer. The word-trigram
shortcut is trained on the pool's passages and answers (the task's only text that is not a test item).
Scoring is BIG-bench's own ``multiple_choice_grade``: the choice of highest log-likelihood (lm-eval's
``acc``), the headline metric of these rows; PMI and length-normalised accuracy are recorded beside it.
"""

from __future__ import annotations

import json
import tarfile
import urllib.request
from pathlib import Path
from typing import Optional

from famlib.data.sources import Artifact, fetch
from famlib.errors import DataError, near, one_of
from famlib.io import atomic_write_json

ARTIFACT = Artifact("bigbench", "pypi", "bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
                    "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")
URL = ("https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
       "bigbench-1.0.0.tar.gz")  # https://pypi.org/pypi/bigbench/1.0.0/json, "urls"
TASKS_DIR = "bigbench-1.0.0/bigbench/benchmark_tasks"
PREFIX = "bigbench_"  # suite task name: bigbench_<task>
QUESTION = "Answer:"


def _download(artifact: Artifact, dest_dir: Path) -> Path:
    """Fetch the sdist from PyPI's file host (see the module docstring for why not ``pip download``)."""
    path = dest_dir / artifact.filename
    try:
        with urllib.request.urlopen(URL, timeout=120) as r, open(path, "wb") as fh:
            while chunk := r.read(1 << 20):
                fh.write(chunk)
    except OSError as exc:
        raise DataError(f"fetching {artifact.package}=={artifact.version} from {URL} failed: {exc}. It is PyPI's "
                        "file host (the package index's own download); behind a proxy set HTTPS_PROXY; where the "
                        f"index does not serve it, put {artifact.filename} (sha256 {artifact.sha256}) into "
                        f"{dest_dir.parent} by hand: it is checked and used from there") from exc
    return path


def tasks_root(cache_dir: Path, downloader=None) -> Path:
    """Fetch the sdist once and extract every task's ``task.json``; return ``<root>/<task>/task.json``'s root."""
    from famlib.checkpoint import atomic_directory
    from famlib.io import locked

    out = Path(cache_dir) / "extracted" / f"{ARTIFACT.package}-{ARTIFACT.version}"
    done = out / ".complete.json"

    def complete() -> bool:
        return done.exists() and json.loads(done.read_text()).get("sha256") == ARTIFACT.sha256

    if complete():
        return out
    with locked(out.with_name(f".{out.name}.lock")):
        if complete():
            return out
        archive = fetch(ARTIFACT, Path(cache_dir), downloader or _download)
        with atomic_directory(out) as tmp, tarfile.open(archive) as tf:
            wanted = [m for m in tf.getmembers() if m.isfile() and m.name.startswith(TASKS_DIR + "/")
                      and m.name.count("/") == TASKS_DIR.count("/") + 2 and m.name.endswith("/task.json")]
            if not wanted:
                raise DataError(f"{archive}: no {TASKS_DIR}/<task>/task.json inside")
            for m in wanted:
                m.name = m.name[len(TASKS_DIR) + 1:]
            tf.extractall(tmp, members=wanted, filter="data")
            atomic_write_json(tmp / ".complete.json", {"sha256": ARTIFACT.sha256, "package": ARTIFACT.package,
                                                       "version": ARTIFACT.version})
    return out


def load_task(root: Path, name: str) -> dict:
    """One task's JSON; a name the package does not have is an error that lists the near ones."""
    path = Path(root) / name / "task.json"
    if not path.exists():
        have = sorted(p.name for p in Path(root).iterdir() if (p / "task.json").exists())
        raise DataError(f"evaluation.english_task: BIG-bench has no task {name!r} (in {root}); "
                        f"{one_of(have)}. {near(name, have)}")
    return json.loads(path.read_text(encoding="utf-8"))


def examples(task: dict, name: str) -> list[tuple[int, str, list[str], int]]:
    """(index, passage, choices in the file's order, answer) of every example with one best choice."""
    prefix = (task.get("task_prefix") or "").strip()
    out = []
    for i, ex in enumerate(task.get("examples", [])):
        scores = ex.get("target_scores")
        if not isinstance(scores, dict) or len(scores) < 2:
            continue
        best = max(scores.values())
        gold = [c for c, s in scores.items() if s == best]
        if len(gold) != 1:
            continue
        choices = [str(c).strip() for c in scores]
        if len(set(choices)) < len(choices) or not all(choices):
            continue
        passage = " ".join(f"{prefix} {str(ex.get('input', '')).strip()}".split())
        out.append((i, passage, choices, list(scores).index(gold[0])))
    if not out:
        raise DataError(f"evaluation.english_task: BIG-bench task {name!r} has no multiple-choice example "
                        "(target_scores with one best choice): pick a multiple-choice task")
    return out


def items(params, name: str, root: Path, cap: int, pool: int) -> tuple[list[dict], list[dict], dict]:
    """(test items, few-shot examples, info) of BIG-bench task ``name`` in famlib's item format."""
    from famlib.evaluate.items import _order_key, _rng

    rows = sorted(examples(load_task(root, name), name), key=lambda r: _order_key("bigbench", name, str(r[0])))
    out = []
    for i, passage, choices, gold in rows:
        rng = _rng(params, "bigbench", name, str(i))
        order = list(range(len(choices)))
        rng.shuffle(order)
        key = f"BB.{name}.{i:05d}"
        out.append({"id": f"{params.probe_language}:{key}", "key": key, "passage": passage,
                    "query": f"{passage}\n{QUESTION}", "choices": [choices[j] for j in order],
                    "label": order.index(gold)})
    fewshot, test = out[:pool], out[pool:pool + cap]
    return test, fewshot, {"source": f"{ARTIFACT.package}=={ARTIFACT.version}:{name}", "examples": len(rows),
                           "fewshot_from": f"the first {pool} examples in the suite's order"}


def chance(test: list[dict]) -> Optional[float]:
    """Expected accuracy of a uniform guess: the mean of 1/k (a task may mix 2- and 3-way examples)."""
    return sum(1 / len(x["choices"]) for x in test) / len(test) if test else None
