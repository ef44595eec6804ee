"""The offline evaluation suite as lm-eval tasks: generated YAML over local JSONL files.

``build_suite(params, corpus)`` writes, under ``runs/<scale>/evaluation/tasks/``::

    famlib_harness.py                        the hooks the YAMLs name with !function (the FLORES filter)
    _<task>_template_yaml                    one template per task: format, metrics, generation settings
    famlib_<task>_<lang>.yaml                per language: `include:` the template + its data files
    famlib_translation_<src>-<tgt>.yaml      per language and direction
    data/<task>/<name>.{test,fewshot}.jsonl  test items, and few-shot examples from units no test item uses
    suite.json                               manifest: every task's axis, language, sizes, chance, baselines,
                                             config hash, and the (task, language) pairs skipped and why

Load it with ``TaskManager(include_path=<dir>, include_defaults=False)``; the paper scale differs only in
task names (:mod:`famlib.evaluate.paper`). The directory is rebuilt only when its inputs change (the
evaluation parameters, the seed, the corpus, this module's format), and atomically.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from famlib.config import Params
from famlib.errors import DataError, FamlibError, one_of
from famlib.evaluate import items as it
from famlib.evaluate.harness import HARNESS_FILE, HARNESS_MODULE
from famlib.evaluate.shortcuts import TrigramLM, baseline_scores, train_shortcut_lm
from famlib.evaluate.truncation import scoring_yaml
from famlib.io import atomic_write_json, atomic_write_text, sha256_file, sha256_json
from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER

SUITE_FORMAT = 4  # bump when the generated files change for the same inputs
AXES = ("perplexity", "comprehension", "reasoning", "translation")  # the results' `task` column
DIRECTIONS = ("en-xx", "xx-en")
MIN_TEST_ITEMS = 5  # fewer items than this measure nothing: the (task, language) is skipped, with a reason


@dataclass(frozen=True)
class TaskSpec:
    """One offline task: what it measures, which paper axis it stands for, and how it is scored."""

    name: str  # what it really measures, e.g. "passage_verse_4way"
    axis: str  # perplexity | comprehension | reasoning | translation
    output_type: str  # lm-eval output_type
    metrics: tuple[str, ...]  # reported metrics; the first is the headline (`primary`) one
    chance: Optional[float] = None  # accuracy of a uniform guess (multiple choice)


TASKS: dict[str, TaskSpec] = {
    # Bits per byte first: per-token perplexity depends on how well the tokenizer fits each script, so only
    # bits per byte compares across languages; per-token perplexity compares models within one language.
    "heldout_perplexity": TaskSpec("heldout_perplexity", "perplexity", "loglikelihood_rolling",
                                   ("bits_per_byte", "token_perplexity", "word_perplexity", "byte_perplexity")),
    # Multiple choice: scored by pointwise mutual information first (log P(choice | prompt) - log P(choice |
    # <bos>), lm-eval's acc_mutual_info): the candidates are real English verses whose prior probability
    # differs by tens of nats, which raw log-likelihood would read as an answer.
    "passage_verse_4way": TaskSpec("passage_verse_4way", "comprehension", "multiple_choice",
                                ("acc_mutual_info", "acc", "acc_norm"), chance=0.25),
    "verse_match_2way": TaskSpec("verse_match_2way", "reasoning", "multiple_choice",
                                 ("acc_mutual_info", "acc", "acc_norm"), chance=0.5),
    "translation": TaskSpec("translation", "translation", "generate_until", ("chrf",)),
}
AXIS_TASK = {spec.axis: name for name, spec in TASKS.items()}  # which offline task stands for each axis


def english_spec(params: Params) -> Optional[TaskSpec]:
    """The probe language's comprehension task from BIG-bench (``evaluation.english_task``), or None. Scored
    by BIG-bench's own multiple_choice_grade, the highest log-likelihood (acc), first; chance is per item."""
    from famlib.evaluate.bigbench import PREFIX

    name = params.evaluation.english_task
    if name is None or params.data.source != "offline":
        return None
    return TaskSpec(PREFIX + name, "comprehension", "multiple_choice", ("acc", "acc_norm", "acc_mutual_info"))


def task_specs(params: Params) -> dict[str, TaskSpec]:
    """Every task of a scale's suite: :data:`TASKS`, and the English comprehension task where one is named."""
    extra = english_spec(params)
    return {**TASKS, **({extra.name: extra} if extra else {})}


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid double-quoted YAML scalar


def _templates(params: Params) -> dict[str, str]:
    """Template YAML per task (shared by every language), from the evaluation parameters."""
    mc = f"""dataset_path: json
output_type: multiple_choice
test_split: test
fewshot_split: fewshot   # validation (or reserved) units: never the test items
doc_to_text: query       # "<Language>: <passage>\\n<question>", the question in English
doc_to_choice: choices
doc_to_target: label
target_delimiter: {_q(TARGET_DELIMITER)}
fewshot_delimiter: {_q(FEWSHOT_DELIMITER)}
metric_list:
  - metric: acc_mutual_info
    aggregation: mean
    higher_is_better: true
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
    english = english_spec(params)
    out = {} if english is None else {english.name: (
        f"# Generated by famlib.evaluate.suite: BIG-bench's {params.evaluation.english_task}, an English "
        "multiple-choice task (famlib.evaluate.bigbench).\n" + mc + f"metadata:\n  version: {SUITE_FORMAT}\n")}
    return out | {
        "heldout_perplexity": f"""# Generated by famlib.evaluate.suite: rolling log-likelihood of held-out documents.
dataset_path: json
output_type: loglikelihood_rolling
test_split: test
num_fewshot: 0   # rolling log-likelihood has no prompt: never let a run's num_fewshot reach it
doc_to_text: ""
doc_to_target: text
metric_list:
  - metric: word_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
metadata:
  version: {SUITE_FORMAT}
""",
        "passage_verse_4way": "# Generated by famlib.evaluate.suite: a passage of verses in one language; choose "
                              "the English rendering of one of its verses among 4 of its chapter.\n" + mc + f"metadata:\n  version: {SUITE_FORMAT}\n",
        "verse_match_2way": "# Generated by famlib.evaluate.suite: a verse in one language; of two English verses "
                            "of its passage, choose the one that says the same.\n" + mc + f"metadata:\n  version: {SUITE_FORMAT}\n",
        "translation": f"""# Generated by famlib.evaluate.suite: {params.evaluation.shots}-shot greedy translation, the paper's FLORES rule, corpus chrF.
dataset_path: json
output_type: generate_until
test_split: test
fewshot_split: fewshot
doc_to_text: query
doc_to_target: target
{scoring_yaml(params.evaluation.max_gen_tokens)}metadata:
  version: {SUITE_FORMAT}
""",
    }


@dataclass
class Suite:
    """A generated task directory and its manifest."""

    path: Path
    manifest: dict

    @property
    def tasks(self) -> dict[str, dict]:
        """Harness task name -> ``{"task", "axis", "language", "direction", "n", "config_hash", ...}``."""
        return self.manifest["tasks"]

    @property
    def skipped(self) -> dict[str, str]:
        return self.manifest["skipped"]

    def select(self, languages, axes=None) -> list[str]:
        """Harness task names of the given languages and axes (all axes by default), in suite order."""
        axes = set(axes or AXES)
        bad = axes - set(AXES)
        if bad:
            raise FamlibError(f"unknown axis {sorted(bad)[0]!r}; {one_of(AXES)}")
        langs = set(languages)
        return [name for name, t in self.tasks.items() if t["language"] in langs and t["axis"] in axes]


def suite_dir(params: Params) -> Path:
    from famlib.paths import tasks_dir

    return tasks_dir(params.scale)


def suite_key(params: Params, corpus, out: Path, tokenizer=None) -> str:
    """What the generated files depend on."""
    from famlib.tokenizer import tokenizer_fingerprint

    d = params.to_dict()
    uses = params.evaluation.perplexity_max_tokens or it.prompt_budget(params) is not None  # the two token rules
    tok = tokenizer_fingerprint(tokenizer) if (tokenizer is not None and uses) else None
    # The code that builds items and writes tasks is part of the key: a changed rule rebuilds the suite.
    from famlib.evaluate import bigbench

    code = {Path(m.__file__).name: sha256_file(Path(m.__file__)) for m in (it, bigbench, sys.modules[__name__])}
    english = bigbench.ARTIFACT.sha256 if english_spec(params) else None
    return sha256_json({"format": SUITE_FORMAT, "code": code, "evaluation": d["evaluation"], "english": english,
                        "seed": params.seed, "probe": params.probe_language, "languages": params.languages,
                        "texts": d["data"]["texts"], "corpus": corpus.fingerprint, "tokenizer": tok,
                        "path": str(Path(out).resolve())})


def load_suite(path: Path) -> Suite:
    return Suite(Path(path), json.loads((Path(path) / "suite.json").read_text()))


def build_suite(params: Params, corpus, out: Optional[Path] = None, tokenizer=None) -> Suite:
    """Generate (or reuse) the offline suite for every language of ``params``; return it.

    Args:
        params: the scale's parameters (evaluation section: shots, max_items, max_gen_tokens, ...).
        corpus: the built corpus (:func:`famlib.data.build_corpus`).
        out: target directory; default ``runs/<scale>/evaluation/tasks``.
        tokenizer: the evaluated models' tokenizer, needed when ``evaluation.perplexity_max_tokens`` caps the
            perplexity text and when translation prompts must fit a small context
            (:func:`famlib.evaluate.items.prompt_budget`, the from-scratch bases).
    """
    from famlib.io import locked

    out = Path(out or suite_dir(params)).resolve()
    key = suite_key(params, corpus, out, tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / ".suite.lock"):  # two notebooks starting at once build it once
        manifest = out / "suite.json"
        if manifest.exists():
            suite = load_suite(out)
            if suite.manifest.get("key") == key:
                return suite
        from famlib.checkpoint import atomic_directory

        with atomic_directory(out) as tmp:
            m = _generate(params, corpus, tmp, out, tokenizer)
            m["key"] = key
            atomic_write_json(tmp / "suite.json", m)
    return load_suite(out)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _chrf(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)  # lm-eval's `chrf` aggregation, same defaults


@dataclass
class _Writer:
    """Writes one task's data files and YAML into the staging folder and records it in the manifest."""

    params: Params
    tmp: Path  # staging folder, renamed to ``final`` when the suite is whole
    final: Path
    templates: dict[str, str]
    specs: dict[str, TaskSpec]
    tasks: dict = field(default_factory=dict)  # harness task -> its manifest entry
    skipped: dict = field(default_factory=dict)  # harness task -> why it was not built

    def emit(self, harness: str, task: str, lang: str, direction: str, test: list[dict],
             fewshot: Optional[list[dict]], info: dict, extra: Optional[dict] = None) -> None:
        spec = self.specs[task]
        least = 1 if spec.axis == "perplexity" else MIN_TEST_ITEMS  # one long document is a fine sample
        if len(test) < least:
            self.skipped[harness] = f"{len(test)} test items (at least {least} needed)"
            return
        shots = it.mc_shots(self.params) if spec.output_type == "multiple_choice" else self.params.evaluation.shots
        if fewshot is not None and len(fewshot) < shots:
            self.skipped[harness] = f"{len(fewshot)} few-shot examples for {shots} shots"
            return
        stem = f"data/{task}/{harness.removeprefix('famlib_')}"
        files = {"test": f"{stem}.test.jsonl"}
        _write_jsonl(self.tmp / files["test"], test)
        if fewshot is not None:
            files["fewshot"] = f"{stem}.fewshot.jsonl"
            _write_jsonl(self.tmp / files["fewshot"], fewshot)
        data_files = "\n".join(f"    {s}: {_q(str(self.final / f))}" for s, f in files.items())
        (self.tmp / f"{harness}.yaml").write_text(
            f"include: _{task}_template_yaml\ntask: {harness}\ndataset_kwargs:\n  data_files:\n{data_files}\n")
        config_hash = sha256_json({"template": self.templates[task], "module": HARNESS_MODULE,
                                   "data": {s: sha256_file(self.tmp / f) for s, f in files.items()}})
        self.tasks[harness] = {"task": task, "axis": spec.axis, "language": lang, "direction": direction,
                               "n": len(test), "n_fewshot": len(fewshot) if fewshot is not None else 0,
                               "chance": spec.chance if spec.chance is not None else (extra or {}).get("chance"),
                               "config_hash": config_hash, "info": info, **(extra or {})}


def _generate(params: Params, corpus, tmp: Path, final: Path, tokenizer) -> dict:
    """Every task of the suite into ``tmp``: perplexity per language, then (offline) the multiple-choice
    tasks, the English row and translation both ways; (paper) lm-eval's own tasks. Returns the manifest."""
    w = _Writer(params, tmp, final, _templates(params), task_specs(params))
    (tmp / HARNESS_FILE).write_text(HARNESS_MODULE)
    for name, text in w.templates.items():
        (tmp / f"_{name}_template_yaml").write_text(text)
    lms: dict[tuple[str, str], TrigramLM] = {}
    counts: dict = {}  # text id -> its n-gram counts, shared by the models that include the text

    def shortcut_lm(text_id: str, probe_text_id: str) -> TrigramLM:
        if (text_id, probe_text_id) not in lms:
            lms[(text_id, probe_text_id)] = train_shortcut_lm(params, corpus, text_id, probe_text_id, counts)
        return lms[(text_id, probe_text_id)]

    paper = params.data.source == "madlad"
    for lang in params.languages:
        docs = it.perplexity_documents(params, corpus, lang, tokenizer)
        w.emit(f"famlib_heldout_perplexity_{lang}", "heldout_perplexity", lang, "", docs, None,
               {"texts": sorted({d["text_id"] for d in docs})})
        if paper:  # the other axes are lm-eval's real tasks, added below
            continue
        for task in it.MC_BUILDERS:
            harness = f"famlib_{task}_{lang}"
            try:
                s = it.multiple_choice_items(params, corpus, task, lang, _token_counter(tokenizer))
            except DataError as exc:
                w.skipped[harness] = str(exc)
                continue
            lm = shortcut_lm(s.info["text_id"], s.info["probe_text_id"])
            w.emit(harness, task, lang, "", s.test, s.fewshot, s.info,
                   {"shortcuts": baseline_scores(s.test, lm, s.fewshot)})
        if lang == params.probe_language:
            if (english := english_spec(params)) is not None:
                _emit_english(params, corpus, english, w.emit, w.skipped)
            continue
        for direction in DIRECTIONS:
            _emit_translation(w, corpus, lang, direction, tokenizer)
    if paper:
        _add_paper_tasks(params, tmp, w.tasks, w.skipped)
    return {"format": SUITE_FORMAT, "scale": params.scale, "shots": params.evaluation.shots,
            "mc_shots": it.mc_shots(params), "include_defaults": paper, "tasks": w.tasks, "skipped": w.skipped}


def _token_counter(tokenizer):
    """text -> its token count under the evaluated models' tokenizer (no special tokens); None without one."""
    if tokenizer is None:
        return None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _emit_translation(w: _Writer, corpus, lang: str, direction: str, tokenizer) -> None:
    """One translation direction of one language, with its reference levels (empty, copy, constant)."""
    probe = w.params.probe_language
    src, tgt = (probe, lang) if direction == "en-xx" else (lang, probe)
    harness = f"famlib_translation_{src}-{tgt}"
    try:
        s = it.translation_items(w.params, corpus, lang, direction, _token_counter(tokenizer))
    except DataError as exc:
        w.skipped[harness] = str(exc)
        return
    refs = [x["target"] for x in s.test]
    # A model that ignores the source and writes fluent target-language text scores about this: the same
    # few-shot reference (the median-length one) given as the answer to every item.
    constant = sorted((x["target"] for x in s.fewshot), key=lambda t: (len(t), t))[len(s.fewshot) // 2]
    baselines = {"empty_baseline": _chrf([""] * len(refs), refs),
                 "copy_baseline": _chrf([x["source"] for x in s.test], refs),
                 "constant_baseline": _chrf([constant] * len(refs), refs)}
    w.emit(harness, "translation", lang, direction, s.test, s.fewshot, s.info, baselines)


def _emit_english(params: Params, corpus, spec: TaskSpec, emit, skipped: dict) -> None:
    """The probe's comprehension row from BIG-bench; its word-trigram shortcut is trained on the task's
    few-shot pool (passages and answers), the only text of the task that no test item holds."""
    from famlib.evaluate import bigbench
    from famlib.evaluate.shortcuts import count_ngrams

    e = params.evaluation
    cap = e.english_items or e.max_items or 10**9
    harness = f"famlib_{spec.name}_{params.probe_language}"
    try:
        root = bigbench.tasks_root(corpus.cache_dir)
        test, fewshot, info = bigbench.items(params, e.english_task, root, cap, it.FEWSHOT_POOL)
    except DataError as exc:  # as the other builders: the row is skipped with its reason, the suite builds
        skipped[harness] = str(exc)
        return
    lm = TrigramLM(parts=[count_ngrams([f"{x['passage']} {x['choices'][x['label']]}" for x in fewshot])])
    emit(harness, spec.name, params.probe_language, "", test, fewshot, info,
         {"shortcuts": baseline_scores(test, lm, fewshot), "chance": bigbench.chance(test)})


def _add_paper_tasks(params: Params, tmp: Path, tasks: dict, skipped: dict) -> None:
    """Belebele and Global-PIQA (lm-eval's own tasks) and the generated FLORES-200 tasks, into the manifest."""
    import lm_eval

    from famlib.evaluate import paper

    flores = paper.write_flores_tasks(params, tmp)
    chance = {"belebele": 0.25, "global_piqa": 0.5, "flores200": None}
    listed, gaps = paper.paper_tasks(params)
    for t in listed:
        config_hash = flores.get(t.harness_task) or sha256_json({"task": t.harness_task, "lm_eval": lm_eval.__version__})
        tasks[t.harness_task] = {"task": t.task_name, "axis": t.axis, "language": t.language, "direction": t.direction,
                                 "n": None, "n_fewshot": None, "chance": chance[t.task_name],
                                 "config_hash": config_hash, "info": {}}
    skipped.update(gaps)
