"""Evaluation: the paper's four axes through lm-evaluation-harness, at every scale.

* :mod:`~famlib.evaluate.items`: deterministic items from the aligned evaluation text (offline scales).
* :mod:`~famlib.evaluate.suite`: those items as generated lm-eval task YAMLs over local JSONL files.
* :mod:`~famlib.evaluate.paper`: the paper scale's real task names (Belebele, Global-PIQA, FLORES-200).
* :mod:`~famlib.evaluate.assign`: which model answers for which language.
* :mod:`~famlib.evaluate.run`: ``evaluate_model``, a cached wrapper over ``lm_eval.simple_evaluate``.
* :mod:`~famlib.evaluate.results`: the tidy results table, written atomically.
* :mod:`~famlib.evaluate.report`: a model against the base, as a table and a figure.
"""

from famlib.evaluate.assign import answering_model, evaluation_languages, model_identity, model_languages
from famlib.evaluate.results import COLUMNS, load_failures, load_results, merge_results, results_path
from famlib.evaluate.run import EvalReport, evaluate_model
from famlib.evaluate.suite import AXES, AXIS_TASK, TASKS, Suite, build_suite
from famlib.evaluate.truncation import PaperTruncation, truncate_generation

__all__ = [
    "AXES", "AXIS_TASK", "COLUMNS", "TASKS", "EvalReport", "PaperTruncation", "Suite", "answering_model",
    "build_suite", "evaluate_model", "evaluation_languages", "load_failures", "load_results", "merge_results",
    "model_identity", "model_languages", "results_path", "truncate_generation",
]
