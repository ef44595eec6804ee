"""Per-item records: what every model answered on every item, kept beside the aggregate rows.

One gzipped JSONL file per model and harness task (a task in one language and direction),
``runs/<scale>/results/items/<model>/<harness task>.jsonl.gz`` (``interpolation_items/`` for the layer
interpolation), written atomically from lm-eval's logged samples and kept by the evaluation cache with the
part file: a re-run whose cache key matches reads both instead of recomputing. Every record carries the
item's ``key`` (its alignment key: the same verse in every language of a source), so paired statistics
(:mod:`famlib.stats`) can resample items across languages together.

Fields, by axis:

* every record: ``model, harness_task, task_name, axis, language, direction, id, key, cache_key``,
  ``truncated`` (the prompt and answer did not fit the model's context: the harness cut tokens from the
  left) and ``prompt_tokens``.
* multiple choice: ``context`` (the whole prompt, shots included), ``choices``, ``gold``, ``ll`` (per choice,
  log-likelihood of `` <choice>`` after the prompt), ``ll_uncond`` (the same after ``<bos>`` alone),
  ``pmi`` (their difference), ``pred`` and ``pred_pmi`` (argmax of each), ``correct`` and ``correct_pmi``.
* perplexity: ``ll`` (sum of token log-likelihoods, nats), ``n_bytes`` (UTF-8), ``n_words``, ``n_tokens``.
* translation: ``source``, ``reference``, ``raw`` (the generation as the model wrote it), ``hypothesis``
  (after the paper's truncation rule), ``empty`` (the hypothesis is empty).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Optional

from famlib.io import atomic_path

ITEM_DIRS = {"results": "items", "interpolation": "interpolation_items", "gates": "gates_items", "dose": "dose_items"}


def items_path(scale: str, model: str, harness_task: str, collection: str = "results") -> Path:
    from famlib.evaluate.results import results_dir

    if collection not in ITEM_DIRS:
        raise ValueError(f"results collection {collection!r}: allowed {', '.join(ITEM_DIRS)}")
    return results_dir(scale) / ITEM_DIRS[collection] / model / f"{harness_task}.jsonl.gz"


def write_items(scale: str, model: str, harness_task: str, records: list[dict], collection: str = "results") -> Path:
    """Write one model's records of one harness task, atomically (a reader never sees half a file)."""
    path = items_path(scale, model, harness_task, collection)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with atomic_path(path) as tmp:
        # mtime 0: the same records give the same bytes (a prompt's few-shot text repeats: gzip makes it ~10x smaller)
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(text.encode("utf-8"))
    return path


def read_items(scale: str, model: str, harness_task: str, collection: str = "results") -> Optional[list[dict]]:
    """The records of one model and harness task, or None when there is no (readable) file."""
    try:
        with gzip.open(items_path(scale, model, harness_task, collection), "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError, EOFError):
        return None


def _argmax(values) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # ties to the first, as numpy's argmax


def _prompt_fits(lm, context: str, continuation: str, generate: bool, max_gen: int) -> tuple[int, bool]:
    """Prompt length in tokens and whether the harness would cut it (its own encoding and limits)."""
    if lm is None:
        return 0, False
    if generate:
        n = len(lm.tok_encode(context))
        return n, n > lm.max_length - max_gen
    if context == "":
        return 1, False
    ctx, cont = lm._encode_pair(context, continuation)
    return len(ctx), len(ctx) + len(cont) > lm.max_length + 1


def records_of(entry: dict, samples: list[dict], *, lm=None, tokenizer=None, base: Optional[dict] = None,
               max_gen: int = 0) -> list[dict]:
    """Per-item records of one harness task from ``simple_evaluate(..., log_samples=True)``'s samples.

    Args:
        entry: the suite manifest's entry of the task (axis, language, direction, task).
        samples: ``out["samples"][task]``.
        lm: the harness model, to count prompt tokens and truncation as the harness does (optional).
        tokenizer: counts a perplexity document's tokens (optional).
        base: fields copied into every record (model, harness task, cache key, ...).
        max_gen: the generation limit, for the translation prompt's room.
    """
    base = dict(base or {})
    out = []
    for s in samples:
        doc = s["doc"]
        rec = {**base, "axis": entry["axis"], "task_name": entry["task"], "language": entry["language"],
               "direction": entry.get("direction", ""), "id": doc.get("id"), "key": doc.get("key", doc.get("doc"))}
        if entry["axis"] == "perplexity":
            text = s["target"]
            rec.update({"key": doc.get("doc") or doc.get("id"), "ll": float(s["filtered_resps"][0]),
                        "n_bytes": len(text.encode("utf-8")), "n_words": len(text.split()),
                        "n_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else None,
                        "prompt_tokens": None, "truncated": False})
        elif entry["axis"] == "translation":
            context = s["arguments"][0][0]
            n, cut = _prompt_fits(lm, context, "", True, max_gen)
            hyp = s["filtered_resps"][0]
            rec.update({"source": doc.get("source"), "reference": s["target"], "raw": s["resps"][0][0],
                        "hypothesis": hyp, "empty": hyp == "", "prompt_tokens": n, "truncated": cut})
        else:
            choices = list(doc["choices"])
            k = len(choices)
            lls = [float(r[0]) for r in s["filtered_resps"]]
            cond, uncond = lls[:k], (lls[k:2 * k] if len(lls) >= 2 * k else None)
            context = s["arguments"][0][0]
            fits = [_prompt_fits(lm, a[0], a[1], False, 0) for a in s["arguments"][:k]]
            pred = _argmax(cond)
            rec.update({"context": context, "choices": choices, "gold": int(doc["label"]), "ll": cond,
                        "pred": pred, "correct": pred == int(doc["label"]),
                        "prompt_tokens": max(f[0] for f in fits), "truncated": any(f[1] for f in fits)})
            if uncond is not None:
                pmi = [c - u for c, u in zip(cond, uncond)]
                rec.update({"ll_uncond": uncond, "pmi": pmi, "pred_pmi": _argmax(pmi),
                            "correct_pmi": _argmax(pmi) == int(doc["label"])})
        out.append(rec)
    return out


def headline_correct(rec: dict) -> bool:
    """Whether a multiple-choice record is right by its task's headline metric: PMI for famlib's own tasks
    (``correct_pmi``), the highest log-likelihood for BIG-bench's (its multiple_choice_grade) and the paper's."""
    from famlib.evaluate.bigbench import PREFIX

    if str(rec.get("task_name", "")).startswith(PREFIX):
        return bool(rec["correct"])
    return bool(rec.get("correct_pmi", rec["correct"]))


def summary(records: list[dict]) -> dict:
    """What the report shows of a task's records: items, truncated prompts, empty translations."""
    n = len(records)
    out = {"items": n, "truncated": sum(bool(r.get("truncated")) for r in records)}
    if records and records[0].get("axis") == "translation":
        out["empty"] = sum(bool(r.get("empty")) for r in records)
    return out
