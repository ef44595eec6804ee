"""The paper scale's tasks: lm-eval's real task names, the paper's coverage gaps, and FLORES-200.

* comprehension: Belebele, ``belebele_<FLORES-200 code>`` (lm-eval's own tasks; accuracy).
* reasoning: Global-PIQA completions, ``global_piqa_nonparallel_cloze_<code>`` (lm-eval's own cloze tasks,
  the 2-way non-parallel split; accuracy).
* translation: FLORES-200 in both directions. lm-eval 0.4.13 has FLORES only for a few language pairs
  (the Iberian benches, AfroBench), so famlib generates ``famlib_flores200_<src>-<tgt>`` tasks (the same
  2-shot prompt, greedy generation until a newline, the paper's truncation filter, corpus chrF) over
  FLORES+ (``openlanguagedata/flores_plus``, one configuration per language, joined on ``id``; the older
  ``facebook/flores`` is a loading script that ``datasets`` >= 4 no longer runs). dev is the few-shot
  split, devtest the test split. FLORES+ names some languages differently from FLORES-200 (Filipino is
  ``fil_Latn``, Belebele's ``tgl_Latn``): the configuration names are ``famlib.languages.FLORES_PLUS_CONFIGS``.

Coverage: the paper's own gaps (``PAPER_GAPS``: lv and or have no Global-PIQA, nor do the Austronesian
held-out languages; de is left out of the Germanic held-out results; fy has no translation, as FLORES has
no Western Frisian) and the languages the installed harness has no task for (``HARNESS_GAPS``, checked
against the registry by the tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from famlib.config import FLORES_PLUS, Params
from famlib.evaluate.harness import HARNESS_FILE, HARNESS_MODULE
from famlib.evaluate.truncation import scoring_yaml
from famlib.errors import FamlibError
from famlib.io import atomic_write_text, sha256_json
from famlib.languages import language
from famlib.prompts import translation_query

FLORES_PATH = FLORES_PLUS  # the default of evaluation.flores_path: hub id, or a local directory with the same layout
PAPER_TASKS_FORMAT = 1

# Global-PIQA splits some languages by variety; one is chosen per language (the FLORES variety where known).
GLOBAL_PIQA_CODE = {
    "es": "spa_latn_spai", "fr": "fra_latn_fran", "pt": "por_latn_braz", "sk": "slk_latn", "sl": "slv_latn",
    "sr": "srp_cyrl",
}

# The paper's coverage gaps (Appendix A.1; paper/facts.md): (axis or "*", language) -> why. They are the paper's
# choice, not the harness's: lm-eval 0.4.13 has non-parallel Global-PIQA for or (ory_orya), su and mg (plt_latn)
# too (tests/test_languages.py checks), but the paper's tables leave them out, and so does famlib.
PAPER_GAPS: dict[tuple[str, str], str] = {
    ("reasoning", "lv"): "no Global-PIQA (paper)",
    ("reasoning", "or"): "no Global-PIQA (paper)",
    ("reasoning", "ilo"): "no Global-PIQA for the Austronesian held-out languages (paper)",
    ("reasoning", "mi"): "no Global-PIQA for the Austronesian held-out languages (paper)",
    ("reasoning", "su"): "no Global-PIQA for the Austronesian held-out languages (paper)",
    ("reasoning", "war"): "no Global-PIQA for the Austronesian held-out languages (paper)",
    ("reasoning", "mg"): "no Global-PIQA for the Austronesian held-out languages (paper)",
    ("*", "de"): "excluded from the Germanic held-out results (paper)",
    ("translation", "fy"): "no Western Frisian in FLORES-200 or FLORES+ (the authors' FLORES jobs leave it out)",
}
# Languages of the paper's table that lm-eval 0.4.13 has no such task for (tests check these are absent).
HARNESS_GAPS: dict[tuple[str, str], str] = {
    **{("comprehension", lang): "no Belebele task in lm-eval" for lang in ("fy", "lb", "sm")},
    **{("reasoning", lang): "no Global-PIQA task in lm-eval" for lang in ("af", "fy", "lb", "sm")},
    # the parallel split has one (global_piqa_parallel_cloze_ceb_latn), but every other language is scored on
    # the non-parallel split, and a language's average must not mix the two
    ("reasoning", "ceb"): "no non-parallel Global-PIQA task in lm-eval (only the parallel split has Cebuano)",
}


@dataclass(frozen=True)
class PaperTask:
    axis: str
    language: str
    direction: str  # "en-xx", "xx-en" or ""
    harness_task: str
    task_name: str  # belebele | global_piqa | flores200


def belebele_task(lang: str) -> str:
    return f"belebele_{language(lang).flores200}"  # Belebele keeps FLORES-200's codes: belebele_tgl_Latn


def global_piqa_task(lang: str) -> str:
    return f"global_piqa_nonparallel_cloze_{GLOBAL_PIQA_CODE.get(lang, language(lang).flores200.lower())}"


def flores_task(src: str, tgt: str) -> str:
    """``famlib_flores200_<src>-<tgt>`` in FLORES+ configuration names (``eng_Latn-fil_Latn``).

    Raises:
        FamlibError: FLORES+ has no such language (Western Frisian).
    """
    codes = [language(x).flores for x in (src, tgt)]
    if None in codes:
        lang = (src, tgt)[codes.index(None)]
        raise FamlibError(f"FLORES+ has no {language(lang).name} ({lang!r}); famlib.languages.FLORES_PLUS_CONFIGS "
                          "lists the configurations the paper scale reads")
    return f"famlib_flores200_{codes[0]}-{codes[1]}"


def coverage_gap(axis: str, lang: str) -> Optional[str]:
    """Why ``lang`` has no paper-scale task on ``axis`` (None if it has one)."""
    return PAPER_GAPS.get(("*", lang)) or PAPER_GAPS.get((axis, lang)) or HARNESS_GAPS.get((axis, lang))


def paper_tasks(params: Params, languages=None) -> tuple[list[PaperTask], dict[str, str]]:
    """The paper-scale tasks of ``languages`` (all of the table by default) and the gaps: ``"axis/lang"`` -> why.

    Perplexity is not listed: it runs on the held-out MADLAD documents through the offline machinery.
    """
    probe = params.probe_language
    tasks, gaps = [], {}
    for lang in languages or params.languages:
        for axis, name, fn in (("comprehension", "belebele", belebele_task), ("reasoning", "global_piqa", global_piqa_task)):
            why = coverage_gap(axis, lang)
            if why:
                gaps[f"{axis}/{lang}"] = why
            else:
                tasks.append(PaperTask(axis, lang, "", fn(lang), name))
        if lang == probe:
            continue
        why = coverage_gap("translation", lang)
        if why:
            gaps[f"translation/{lang}"] = why
            continue
        tasks.append(PaperTask("translation", lang, "en-xx", flores_task(probe, lang), "flores200"))
        tasks.append(PaperTask("translation", lang, "xx-en", flores_task(lang, probe), "flores200"))
    return tasks, gaps


# ----------------------------------------------------------------------------------------------------
# FLORES-200 task configs
# ----------------------------------------------------------------------------------------------------
def flores_template(params: Params) -> str:
    return f"""# Generated by famlib.evaluate.paper: FLORES-200, {params.evaluation.shots}-shot greedy, the paper's truncation rule, corpus chrF.
custom_dataset: !function famlib_harness.load_flores_pair
output_type: generate_until
test_split: devtest
fewshot_split: dev
doc_to_text: query
doc_to_target: target
{scoring_yaml(params.evaluation.max_gen_tokens)}"""


def write_flores_tasks(params: Params, out: Path, flores_path: Optional[str] = None) -> dict[str, str]:
    """Write the FLORES task YAMLs of every language pair with the probe into ``out``; return name -> config hash.

    The YAMLs name ``famlib_harness.py`` in the same directory (:mod:`famlib.evaluate.harness`) and the dataset
    ``flores_path`` (default: ``evaluation.flores_path``), which each task's loader reads.
    """
    flores_path = flores_path or params.evaluation.flores_path
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    template = flores_template(params)
    atomic_write_text(out / "_flores200_template_yaml", template)
    hashes = {}
    tasks, _ = paper_tasks(params)
    for t in tasks:
        if t.task_name != "flores200":
            continue
        src, tgt = (params.probe_language, t.language) if t.direction == "en-xx" else (t.language, params.probe_language)
        meta = {"version": PAPER_TASKS_FORMAT, "src": src, "tgt": tgt, "src_flores": language(src).flores,
                "tgt_flores": language(tgt).flores, "flores_path": flores_path}
        body = (f"include: _flores200_template_yaml\ntask: {t.harness_task}\nmetadata:\n"
                + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in meta.items()))
        atomic_write_text(out / f"{t.harness_task}.yaml", body)
        hashes[t.harness_task] = sha256_json({"template": template, "body": body, "module": HARNESS_MODULE})
    return hashes


def harness_task_manager(params: Params, task_dir: Path):
    """lm-eval's ``TaskManager`` over the installed tasks plus the paper's FLORES tasks written into ``task_dir``.

    What ``simple_evaluate`` will look task names up in, built as famlib builds it for a run (the FLORES YAMLs
    and the ``famlib_harness.py`` they name); indexing reads YAML files only, no network, but takes about 20 s
    (lm-eval 0.4.13's 14,000 tasks). Shared by ``famlib doctor`` and the tests, so both check the same thing.
    """
    from lm_eval.tasks import TaskManager

    task_dir = Path(task_dir)
    write_flores_tasks(params, task_dir)
    atomic_write_text(task_dir / HARNESS_FILE, HARNESS_MODULE)
    return TaskManager(include_path=str(task_dir))


def unresolved_tasks(params: Params, registry) -> list[str]:
    """The harness task names of :func:`paper_tasks` that ``registry`` (a set of task names) lacks, in order."""
    tasks, _ = paper_tasks(params)
    return [t.harness_task for t in tasks if t.harness_task not in registry]


def flores_row(src: str, tgt: str, src_text: str, tgt_text: str, row_id=None) -> dict:
    """One FLORES document: ``{"id", "source", "query", "target"}`` in famlib.prompts' format."""
    return {"id": row_id, "source": src_text, "query": translation_query(src, tgt, src_text), "target": tgt_text}


def load_flores_pair(src: str, tgt: str, src_flores: str, tgt_flores: str, flores_path: str = FLORES_PATH, **_):
    """lm-eval ``custom_dataset``: FLORES+ dev and devtest of two languages joined on ``id``.

    Raises:
        FamlibError: a language or split is missing from the dataset (names what was asked and where).
    """
    import datasets

    def load(code):
        try:
            return datasets.load_dataset(flores_path, code)
        except Exception as exc:  # gated, offline, or an unknown configuration: say which and where
            raise FamlibError(f"FLORES {flores_path!r} configuration {code!r}: {exc}. On the hub the dataset is "
                              "gated (accept its terms, then `huggingface-cli login`); or point flores_path at "
                              "a local copy") from exc

    a, b = load(src_flores), load(tgt_flores)
    out = {}
    for split in ("dev", "devtest"):
        if split not in a or split not in b:
            raise FamlibError(f"FLORES {flores_path!r}: split {split!r} missing for {src_flores} or {tgt_flores}")
        tgt_by_id = {r["id"]: r["text"] for r in b[split]}
        rows = [flores_row(src, tgt, r["text"], tgt_by_id[r["id"]], r["id"]) for r in a[split] if r["id"] in tgt_by_id]
        out[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(out)
