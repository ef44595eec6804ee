"""Evaluate one model: a thin wrapper over ``lm_eval.simple_evaluate`` with explicit seeds and a cache.

``evaluate_model(params, "expert.slavic")`` finds the model directory, decides which languages it answers
for (:mod:`famlib.evaluate.assign`), builds or reuses the task suite, skips every (task, language) whose
result for these exact weights and this exact task config is already on disk, and runs the rest through
lm-eval, one ``simple_evaluate`` per axis so that the harness batches requests across languages. Rows go
to ``runs/<scale>/results/results.csv`` (:mod:`famlib.evaluate.results`).

lm-eval has no per-task error handling: one task that raises (a FLORES+ configuration that does not exist, a
gated dataset, a task name the installed harness lacks) ends the whole ``simple_evaluate`` call. So when an
axis's call raises, its tasks are run again one by one (:func:`run_isolated`): the others are measured, and
each task that raises on its own is recorded as failed, with its error, in ``results_failed.csv`` and
:attr:`EvalReport.failed`, and tried again by the next evaluation (``famlib paper`` re-runs a step that has
failed tasks: :func:`famlib.pipeline._tasks_failed`). Only when every task fails and none was cached does
``evaluate_model`` raise (nothing was measured: the fault is the model's or the set-up's).

The harness sees the model through :class:`famlib.evaluate.lm.SharedPrefixLM`, which runs a multiple-choice
context once for all its choices (2-2.3x faster on the tiny model, same log-likelihoods to 1e-4).

Two harness settings matter here:

* Perplexity runs with ``add_bos_token=False`` and windows of ``evaluation.perplexity_window`` tokens
  (default ``data.seq_len``). lm-eval's rolling log-likelihood already feeds ``<bos>`` as the first window's
  context; a tokenizer that also prepends ``<bos>`` (Gemma's, famlib's) would make it score a spurious
  ``<bos>`` after ``<bos>``. Only a document's first window gets ``<bos>``: later windows start mid-text
  with one token of context. For tiny, whose base was trained from scratch on the same packed rows (most
  without ``<bos>``), windows of the training length are in distribution for every model. A pretrained
  Gemma 3 was not trained that way: at 256-token windows the small base read English at 1.335 bits per
  byte and Dense at 1.155, which hid Dense's forgetting; read whole from ``<bos>`` (a window longer than
  any document), the same documents give base 1.000 and Dense 1.094
  (``benchmarks/check_bos_windows.py --window 4096``). So ``small`` and ``paper`` set a window longer
  than their documents, and the perplexity batch shrinks to keep ``batch_size * data.seq_len`` tokens.
* Per-token perplexity is not a harness metric: it is exp(-sum of log-likelihoods / tokens) over the
  logged samples, with the tokens counted as the harness encodes them (no ``<bos>``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from famlib.config import Params
from famlib.errors import ConfigError, FamlibError
from famlib.evaluate import records as rec
from famlib.evaluate import results as res
from famlib.evaluate.assign import evaluation_languages, model_identity
from famlib.evaluate.suite import AXES, Suite, build_suite
from famlib.io import sha256_json
from famlib.naming import model_path
from famlib.tokenizer import load_tokenizer

PAPER_PRIMARY = {"comprehension": "acc", "reasoning": "acc"}
EXAMPLES_KEPT = 20  # generations kept per translation task in its part file, to read what a model wrote


@dataclass
class EvalReport:
    """What one ``evaluate_model`` call did: its rows, and per axis the tasks run or reused and the time."""

    rows: "object"  # pandas DataFrame in results.COLUMNS
    ran: dict[str, list[str]] = field(default_factory=dict)
    cached: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # harness task -> its error (not in ``ran`` or ``rows``)


def load_model(model_dir: Path, dtype: str = "float32", device: Optional[str] = None):
    """Model (eval mode, on ``device``: CUDA when available) and tokenizer of a save_pretrained directory."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype)).to(device).eval()
    return model, tokenizer


def settings(params: Params, max_length: Optional[int], limit, axis: Optional[str] = None) -> dict:
    """The evaluation settings a result depends on besides weights and task config (part of the cache key).

    ``ppl_window`` is the perplexity window for the perplexity axis. The other axes keep ``data.seq_len``
    under that name, as every key has since format 1, so that setting ``evaluation.perplexity_window``
    re-runs perplexity only.
    """
    import lm_eval

    e = params.evaluation
    window = perplexity_window(params) if axis == "perplexity" else params.data.seq_len
    # format 4: per-item records kept (3: multiple choice by SharedPrefixLM, float32 log-softmax everywhere).
    return {"shots": axis_shots(params, axis) if axis else e.shots, "seed": params.seed, "max_length": max_length, "ppl_window": window,
            "limit": limit, "lm_eval": lm_eval.__version__, "format": 4, "dtype": eval_dtype(params)}


def perplexity_window(params: Params) -> int:
    """Tokens per perplexity window, ``<bos>`` included: ``evaluation.perplexity_window``, else ``data.seq_len``."""
    return params.evaluation.perplexity_window or params.data.seq_len


def perplexity_batch_size(params: Params, batch_size: int) -> int:
    """Windows per perplexity batch: as many tokens as ``batch_size`` windows of ``data.seq_len`` (at least 1).

    lm-eval takes a float32 log-softmax over the whole vocabulary at every position of a batch, so a
    4096-token window at the training-length batch size would need 16x the memory (68 GB on Gemma 3).
    """
    return max(1, batch_size * params.data.seq_len // perplexity_window(params))


def eval_dtype(params: Params) -> str:
    """The dtype the weights are evaluated in: ``evaluation.dtype``, else ``model.dtype``."""
    return params.evaluation.dtype or params.model.dtype


def _lm(model, tokenizer, params: Params, axis: str, max_length: Optional[int], batch_size: int):
    """The harness's view of the model: ``SharedPrefixLM`` (HFLM that runs a multiple-choice context once).

    Log-softmax in float32 on every path: lm-eval's default takes it in the model's dtype, and in bf16 that
    moved multiple-choice log-likelihoods by 0.19 nats on average (against 0.04 with a float32 log-softmax)
    and tiny's bits per byte by up to 0.0014.
    """
    from famlib.evaluate.lm import SharedPrefixLM as HFLM

    kwargs = {"batch_size": batch_size, "max_length": max_length}
    if axis == "perplexity":
        window, positions = perplexity_window(params), getattr(model.config, "max_position_embeddings", None)
        if positions is not None and window > positions:
            raise ConfigError(params.origin, "evaluation.perplexity_window", window,
                              f"at most the model's max_position_embeddings, {positions}")
        kwargs = {"batch_size": perplexity_batch_size(params, batch_size), "max_length": window,
                  "add_bos_token": False}
    with ExpectedNotices(axis_shots(params, axis)):  # HFLM notes, on being built, that it got a model object
        return HFLM(pretrained=model, tokenizer=tokenizer, softmax_dtype="float32", **kwargs)


class ExpectedNotices(logging.Filter):
    """Drops lm-eval's warnings about choices famlib makes on purpose; every other record passes.

    Every call would otherwise print, per task, that ``num_fewshot`` is overridden (famlib sets
    ``evaluation.shots`` for all tasks: the suite's configs leave it unset), and per axis that the model
    was passed as an object rather than a name (famlib loads it once for all axes). Only these exact
    messages, with these exact values, are dropped.
    """

    LOGGERS = ("lm_eval.evaluator", "lm_eval.models.huggingface")

    def __init__(self, shots: int):
        super().__init__()
        self.prefixes = ("`pretrained` model kwarg is not of type `str`",
                         "Passed an already-initialized model through `pretrained`")
        self.shots = shots

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Overwriting default num_fewshot of ") and msg.endswith(f" from None to {self.shots}"):
            return False
        return not msg.startswith(self.prefixes)

    def __enter__(self) -> "ExpectedNotices":
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


def axis_shots(params: Params, axis: str) -> int:
    """Shots of an axis: ``evaluation.mc_shots`` for multiple choice (when set), ``evaluation.shots`` else."""
    from famlib.evaluate.items import mc_shots

    return mc_shots(params) if axis in ("comprehension", "reasoning") else params.evaluation.shots


_TASK_MANAGERS: dict = {}


def task_manager(suite: Suite):
    """lm-eval's ``TaskManager`` over the suite's folder (and, at the paper scale, the installed tasks), built once
    per suite and process: indexing lm-eval's 14,000 task configs takes about 20 s, which every axis of every
    model, and every task of a per-task rerun after a failure (:func:`run_isolated`), would otherwise pay again."""
    from lm_eval.tasks import TaskManager

    include_defaults = bool(suite.manifest.get("include_defaults"))
    key = (str(suite.path), suite.manifest.get("key"), include_defaults)
    if key not in _TASK_MANAGERS:
        _TASK_MANAGERS.clear()  # one suite at a time: a rebuilt suite (new key) is indexed again
        _TASK_MANAGERS[key] = TaskManager(include_path=str(suite.path), include_defaults=include_defaults)
    return _TASK_MANAGERS[key]


def run_harness(lm, tasks: list[str], suite: Suite, params: Params, limit=None, shots: Optional[int] = None) -> dict:
    """``simple_evaluate`` on ``tasks`` of ``suite`` with the run's seeds and ``shots`` (default
    ``evaluation.shots``); returns its result dict."""
    from lm_eval import simple_evaluate

    tm = task_manager(suite)
    seed = params.seed
    shots = params.evaluation.shots if shots is None else shots
    with ExpectedNotices(shots):
        return simple_evaluate(
            model=lm, tasks=tasks, task_manager=tm, num_fewshot=shots, limit=limit,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            bootstrap_iters=0,  # intervals come from the per-item records (famlib.evidence), paired and clustered
            log_samples=True, fewshot_as_multiturn=False,
        )


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, on one line, for the log and ``results_failed.csv``."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def run_isolated(lm, tasks: list[str], suite: Suite, params: Params, limit=None, shots: Optional[int] = None,
                 log: Callable[[str], None] = print) -> tuple[dict, dict[str, str]]:
    """:func:`run_harness` on ``tasks`` together; if that raises, on each task alone.

    Returns ``(out, failed)``: simple_evaluate's ``results``, ``samples`` and ``n-samples`` of the tasks that
    ran, and ``task -> error`` for each one that raised on its own. Together first, because the harness
    batches requests across tasks; alone only after a failure, since lm-eval cannot say which task raised.
    """
    try:
        return run_harness(lm, tasks, suite, params, limit, shots), {}
    except Exception as exc:  # noqa: BLE001  (any task's error; KeyboardInterrupt still stops the run)
        if len(tasks) == 1:
            return {}, {tasks[0]: error_text(exc)}
        log(f"{len(tasks)} tasks together raised {error_text(exc)[:300]}; running each alone to find which")
    out: dict = {"results": {}, "samples": {}, "n-samples": {}}
    failed: dict[str, str] = {}
    for task in tasks:
        try:
            one = run_harness(lm, [task], suite, params, limit, shots)
        except Exception as exc:  # noqa: BLE001
            failed[task] = error_text(exc)
            log(f"{task} failed: {failed[task][:500]}")
            continue
        for k in out:
            out[k].update(one.get(k, {}))
    return out, failed


def task_label(entry: dict, probe: str) -> str:
    """How a harness task is named in the log: its language, or ``src-tgt`` for translation."""
    if entry.get("direction") == "en-xx":
        return f"{probe}-{entry['language']}"
    if entry.get("direction") == "xx-en":
        return f"{entry['language']}-{probe}"
    return entry["language"]


def primary_metric(entry: dict) -> str:
    """The headline metric of a suite task: PMI accuracy for famlib's multiple choice, lm-eval's acc for the
    paper's own multiple-choice tasks and BIG-bench's (its multiple_choice_grade)."""
    from famlib.evaluate.bigbench import PREFIX

    if entry["task"] in ("belebele", "global_piqa") or entry["task"].startswith(PREFIX):
        return PAPER_PRIMARY[entry["axis"]]
    return res.PRIMARY[entry["axis"]]


def _rows_of(task: str, entry: dict, out: dict, tokenizer, base: dict,
             records: Optional[list[dict]] = None) -> tuple[list[dict], list[dict]]:
    """Result rows (and a few translation examples) of one harness task from simple_evaluate's output."""
    metrics = {}
    for k, v in out["results"][task].items():
        if "," in k and "_stderr" not in k and isinstance(v, (int, float)):
            metrics[k.split(",")[0]] = float(v)
    samples = out.get("samples", {}).get(task, [])
    n = out.get("n-samples", {}).get(task, {}).get("effective", len(samples))
    examples = []
    if entry["axis"] == "perplexity" and samples:
        ll = sum(float(s["filtered_resps"][0]) for s in samples)
        n_tok = sum(len(tokenizer(s["target"], add_special_tokens=False)["input_ids"]) for s in samples)
        metrics["token_perplexity"] = math.exp(-ll / max(1, n_tok))
    if entry["axis"] == "translation":
        examples = [{"id": s["doc"].get("id"), "query": s["doc"].get("query"), "output": s["filtered_resps"][0],
                     "reference": s["target"]} for s in samples[:EXAMPLES_KEPT]]
    counts = rec.summary(records or [])
    rows = []
    for metric, value in metrics.items():
        acc = metric.startswith("acc")
        rows.append({**base, "metric": metric, "value": value, "n": n,
                     "primary": metric == primary_metric(entry),
                     "stderr": math.sqrt(value * (1 - value) / n) if acc and n else None,
                     "truncated": counts["truncated"] if records is not None else None,
                     "empty_rate": counts["empty"] / n if "empty" in counts and n else None})
    return rows, examples


def drop_stale_parts(scale: str, suite: Suite, collection: str = "results", log=print) -> list[str]:
    """Move aside (to ``<model>/stale/``) every model's part files and item records of harness tasks that
    ``suite`` no longer has but whose axis, language and direction a task of ``suite`` now holds (another
    ``evaluation.english_task``, a replaced task): they would stay in the results beside the current task,
    and be averaged or paired with it. Parts of tasks the suite merely skips now are left alone. Returns
    ``model/task`` of each part moved."""
    from famlib.evaluate.records import items_path

    held = {(e["axis"], e["language"], e.get("direction") or "") for e in suite.tasks.values()}
    root = res.part_path(scale, "m", "t", collection).parent.parent
    moved = []
    for f in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        if f.stem in suite.tasks:
            continue
        try:
            rows = json.loads(f.read_text()).get("rows") or []
        except (OSError, ValueError):
            continue
        if not any((r.get("task"), r.get("language"), r.get("direction") or "") in held for r in rows):
            continue
        model = f.parent.name
        for src in (f, items_path(scale, model, f.stem, collection)):
            if src.exists():
                (src.parent / "stale").mkdir(exist_ok=True)
                src.replace(src.parent / "stale" / src.name)
        moved.append(f"{model}/{f.stem}")
    if moved:
        res.merge_results(scale, collection)
        log(f"moved aside {len(moved)} results of tasks the suite replaced ({', '.join(moved[:4])}"
            f"{', ...' if len(moved) > 4 else ''}): runs/{scale}/results/.../stale/")
    return moved


def evaluate_model(params: Params, model: str = "base", *, corpus=None, model_dir: Optional[Path] = None,
                   strategy: Optional[str] = None, family: Optional[str] = None, axes=None, languages=None,
                   limit=None, max_length: Optional[int] = None, batch_size: Optional[int] = None,
                   force: bool = False, collection: str = "results", extra: Optional[dict] = None,
                   reuse: Optional[tuple[str, str]] = None, log: Callable[[str], None] = print) -> EvalReport:
    """Evaluate one model on every task and language it answers for; update results.csv; return its rows.

    Args:
        params: the scale's parameters.
        model: a model id under ``runs/<scale>/models/`` (``base``, ``dense``, ``expert.slavic``, ...).
        corpus: the built corpus (built here when None).
        model_dir: evaluate this directory instead of ``runs/<scale>/models/<model>``.
        strategy, family: the model's identity when its id and provenance do not say.
        axes: a subset of ``perplexity, comprehension, reasoning, translation`` (all by default).
        languages: restrict to these of the model's languages.
        limit: lm-eval's sample limit, for quick looks only; rows record it and must not be reported as complete.
        max_length: context length for the task prompts (default: the model config's).
        batch_size: default ``evaluation.batch_size``.
        force: re-run even where a cached result matches.
        collection: ``results`` (results.csv) or ``interpolation`` (interpolation.csv, notebook 06).
        extra: more columns for every row (``{"group": "middle", "alpha": 0.5}`` for the interpolation).
        reuse: ``(collection, model)`` whose cached parts count too when their key matches (same weights,
            task and settings): the interpolation's alpha = 1 point reuses Dense's own evaluation.

    Raises:
        FamlibError / ConfigError: a missing model directory, an unknown strategy, family, axis or language.
    """
    import pandas as pd

    t_start = time.time()
    model_dir = Path(model_dir) if model_dir is not None else model_path(params, model, must_exist=True)
    strategy, family = model_identity(params, model, model_dir, strategy, family)
    langs = _languages_of(params, model, strategy, family, languages)
    if corpus is None:
        from famlib.data import build_corpus

        corpus = build_corpus(params)
    # The perplexity cap and the translation prompts' fit (a from-scratch base's small context) count tokens;
    # every model of a scale shares the base's tokenizer.
    from famlib.evaluate.items import prompt_budget

    counts_tokens = params.evaluation.perplexity_max_tokens or prompt_budget(params) is not None
    suite = build_suite(params, corpus, tokenizer=load_tokenizer(model_dir) if counts_tokens else None)
    selected = suite.select(langs, axes)
    drop_stale_parts(params.scale, suite, collection, log)
    job = _Job(params, suite, model, strategy, family, collection, extra or {}, limit, max_length,
               res.model_sha256(model_dir, res.results_dir(params.scale) / ".model_sha256.json"), log)
    report = EvalReport(rows=None)
    todo: dict[str, list[str]] = {}
    for task in selected:
        axis = suite.tasks[task]["axis"]
        if _cached(job, task, force, reuse):
            report.cached.setdefault(axis, []).append(task)
        else:
            todo.setdefault(axis, []).append(task)
    if todo:
        model_obj, tok = load_model(model_dir, eval_dtype(params))
        logging.getLogger("lm_eval").setLevel(logging.WARNING)  # the harness logs every task at INFO
        for axis in AXES:
            if todo.get(axis):
                _run_axis(job, model_obj, tok, axis, todo[axis], batch_size or params.evaluation.batch_size, report)
        del model_obj
    res.merge_results(params.scale, collection)
    if report.failed and not report.ran and not report.cached:
        raise FamlibError(f"{model}: every task failed, nothing was measured (an error of the model or the set-up, "
                          "not of one task): " + "; ".join(f"{t}: {e[:300]}" for t, e in report.failed.items()))
    if report.failed:
        log(f"{model}: {len(report.failed)} task(s) failed and are listed with their errors in "
            f"{res.failed_path(params.scale, collection)}: {', '.join(report.failed)}")
    rows = [r for task in selected for r in (res.read_part(params.scale, model, task, collection) or {}).get("rows", [])]
    report.rows = pd.DataFrame(rows, columns=res.columns(collection))
    report.seconds["total"] = time.time() - t_start
    return report


@dataclass
class _Job:
    """One model's evaluation as :func:`evaluate_model` set it up: who answers, where results go, the settings
    every task's cache key is made of (internal)."""

    params: Params
    suite: Any
    model: str
    strategy: str
    family: Optional[str]
    collection: str
    extra: dict
    limit: Any
    max_length: Optional[int]
    sha: str  # the weights' sha256
    log: Callable[[str], None]
    keys: dict = field(default_factory=dict)  # harness task -> cache key

    def key(self, task: str) -> str:
        if task not in self.keys:
            entry = self.suite.tasks[task]
            setting = settings(self.params, self.max_length, self.limit, entry["axis"])
            self.keys[task] = sha256_json({"model": self.sha, "task": entry["config_hash"], "settings": setting})
        return self.keys[task]

    def context(self, task: str) -> dict:
        """A row's description: who answered, for which language and task, and the reference levels."""
        p, entry = self.params, self.suite.tasks[task]
        lang = entry["language"]
        return {"model": self.model, "strategy": self.strategy, "expert_family": self.family or "all",
                "language": lang, "language_family": p.family_of(lang) or "probe", "split": p.split_of(lang),
                "task": entry["axis"], "direction": entry["direction"], "task_name": entry["task"],
                "chance": entry.get("chance"), "empty_baseline": entry.get("empty_baseline"),
                "copy_baseline": entry.get("copy_baseline"), "constant_baseline": entry.get("constant_baseline"),
                "scale": p.scale, "harness_task": task, "task_config_hash": entry["config_hash"], **self.extra}


def _languages_of(params: Params, model: str, strategy: str, family: Optional[str], languages) -> list[str]:
    """The languages ``model`` answers for, limited to ``languages`` when given (each must be one of them)."""
    langs = evaluation_languages(params, strategy, family)
    if languages is None:
        return langs
    for lang in languages:
        if lang not in langs:
            raise FamlibError(f"language {lang!r} is not one that model {model!r} ({strategy}) answers for; "
                              f"its languages: {', '.join(langs)}")
    return [lang for lang in langs if lang in languages]


def _cached(job: _Job, task: str, force: bool, reuse: Optional[tuple[str, str]]) -> bool:
    """Whether ``task`` has a stored result of the same key, with its per-item records (or one that ``reuse``
    names, copied over); its rows' description is brought up to date. False: the task must run."""
    scale, model, collection, key = job.params.scale, job.model, job.collection, job.key(task)
    part = None if force else res.read_part(scale, model, task, collection)
    if part is not None and part.get("failed"):
        part = None  # a task that raised measured nothing: try it again
    if part is not None and rec.read_items(scale, model, task, collection) is None:
        part = None  # a result without its per-item records is re-run: every difference needs them
    if reuse is not None and not force and (part is None or part.get("key") != key):
        other = res.read_part(scale, reuse[1], task, reuse[0])
        other_items = rec.read_items(scale, reuse[1], task, reuse[0])
        if other is not None and other.get("key") == key and not other.get("failed") and other_items is not None:
            part = {**other, "rows": [{**r, "model": model} for r in other["rows"]]}
            rec.write_items(scale, model, task, [{**r, "model": model} for r in other_items], collection)
            res.write_part(scale, model, task, part["key"], part["rows"], part.get("examples"), collection)
    if part is None or part.get("key") != key:
        return False
    # The measurement stands; its description follows the current params and suite (a renamed family, a
    # reference level added since) without re-running the model.
    fresh = [{**r, **job.context(task)} for r in part["rows"]]
    if fresh != part["rows"]:
        res.write_part(scale, model, task, part["key"], fresh, part.get("examples"), collection)
    return True


def _run_axis(job: _Job, model_obj, tok, axis: str, tasks: list[str], batch_size: int, report: EvalReport) -> None:
    """Run one axis's tasks through the harness (a failing task does not stop the others) and write each
    task's rows and per-item records."""
    import lm_eval

    p, model, suite = job.params, job.model, job.suite
    t0 = time.time()
    labels = ", ".join(task_label(suite.tasks[t], p.probe_language) for t in tasks)
    job.log(f"{model}: {axis}, {len(tasks)} tasks ({labels})")
    lm = _lm(model_obj, tok, p, axis, job.max_length, batch_size)
    out, failed = run_isolated(lm, tasks, suite, p, job.limit, axis_shots(p, axis),
                               log=lambda msg: job.log(f"{model}: {axis}: {msg}"))
    stamp = res.evaluated_at()
    for task, error in failed.items():
        entry = suite.tasks[task]
        res.write_failed_part(p.scale, model, task, job.key(task), {
            "model": model, "harness_task": task, "task": entry["axis"], "language": entry["language"],
            "direction": entry["direction"], "error": error, "cache_key": job.key(task),
            "evaluated_at": stamp}, job.collection)
    report.failed.update(failed)
    tasks = [t for t in tasks if t not in failed]
    for task in tasks:
        key = job.key(task)
        base = {**job.context(task), "limit": job.limit, "model_sha256": job.sha, "cache_key": key,
                "lm_eval": lm_eval.__version__, "evaluated_at": stamp}
        records = rec.records_of(suite.tasks[task], out.get("samples", {}).get(task, []), lm=lm, tokenizer=tok,
                                 max_gen=p.evaluation.max_gen_tokens,
                                 base={"model": model, "harness_task": task, "cache_key": key})
        rows, examples = _rows_of(task, suite.tasks[task], out, tok, base, records)
        rec.write_items(p.scale, model, task, records, job.collection)
        res.write_part(p.scale, model, task, key, rows, examples, job.collection)
        cut = sum(r["truncated"] for r in records)
        if cut:
            job.log(f"{model}: {task}: {cut} of {len(records)} prompts did not fit the model's context "
                    f"({lm.max_length} tokens) and lost tokens from the left")
    report.seconds[axis] = time.time() - t0
    if tasks:
        report.ran[axis] = tasks
    job.log(f"{model}: {axis} done in {report.seconds[axis]:.1f} s"
            + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
