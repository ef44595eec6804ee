"""The paper's FLORES post-processing rule, as a plain function and as an lm-eval filter.

Paper (section 3.1, evaluation): generate, strip leading whitespace, keep only the text before the first
generated newline or literal ``\\n`` (two characters), and score that span with chrF. The literal matters
because MADLAD-400 stores line breaks as a backslash and an ``n``, so models trained on it emit that pair
where a newline belongs.

The rule applies to the whole generation (up to EOS or ``max_gen_tokens``), so the task YAML's ``until``
holds no newline: lm-eval cuts at its ``until`` strings before any filter runs, and a cut at the first
``"\\n"`` turned an output that begins with a newline into an empty hypothesis. Generating on after the
span is settled is wasted work, though: :func:`span_is_final` says when it is, and
``famlib.evaluate.lm.PaperStop`` (turned on by :data:`STOP_KWARG` in the generation settings) ends a row of
a batch there. ``PaperTruncation`` still defines the span; the stop only saves the tokens after it.
"""

from __future__ import annotations

from lm_eval.api.filter import Filter

STOPS = ("\n", "\\n")  # a real newline, and the two-character literal backslash-n
STOP_KWARG = "famlib_paper_stop"  # generation setting: SharedPrefixLM ends a row once its span is final


def truncate_generation(text: str) -> str:
    """Apply the paper's rule to one generation: lstrip, then cut at the first newline or literal ``\\n``."""
    text = text.lstrip()
    for stop in STOPS:  # cutting at each in turn leaves the text before the earliest of them
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text


def span_is_final(text: str) -> bool:
    """Whether no continuation of ``text`` can change ``truncate_generation(text)``: after the leading
    whitespace, a newline or a literal ``\\n`` has been written.

    Appending characters cannot move the earliest stop earlier: a new occurrence can only begin at the last
    character (a backslash completed by an ``n``), at or after any stop already there. Leading whitespace
    alone settles nothing: ``"\\n\\nHola"`` becomes ``"Hola"``.
    """
    text = text.lstrip()
    return any(stop in text for stop in STOPS)


def empty_rate(outputs: list[str]) -> float:
    """Share of ``outputs`` whose span under the paper's rule is empty (``nan`` for no outputs).

    Raw generations and already truncated ones give the same value (the rule is idempotent).
    """
    if not outputs:
        return float("nan")
    return sum(1 for o in outputs if not truncate_generation(o)) / len(outputs)


class PaperTruncation(Filter):
    """lm-eval filter applying :func:`truncate_generation` to every response of every document.

    Named in generated task YAMLs as ``function: !function famlib_harness.PaperTruncation``, followed by
    ``take_first`` (lm-eval keeps a list of responses per document).
    """

    def __init__(self, **kwargs) -> None:  # lm-eval instantiates filters with the YAML's extra keys
        super().__init__(**kwargs)

    def apply(self, resps, docs):
        return [[truncate_generation(r) for r in inst] for inst in resps]


def scoring_yaml(max_gen_tokens: int) -> str:
    """The task-YAML block shared by the offline translation task and the paper's FLORES tasks: delimiters,
    greedy generation to EOS or ``max_gen_tokens``, the paper's truncation filter, corpus chrF.

    ``until`` is empty (lm-eval adds the EOS string itself), so lm-eval cuts nothing before the filter; the
    :data:`STOP_KWARG` setting lets ``SharedPrefixLM`` end each row as soon as its span is final, which
    gives the same span as generating to the limit. An LM that does not know the setting must drop it
    (lm-eval's plain ``HFLM`` would pass it to ``generate``, which refuses unknown arguments).
    """
    import json

    from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER

    return f"""target_delimiter: {json.dumps(TARGET_DELIMITER)}
fewshot_delimiter: {json.dumps(FEWSHOT_DELIMITER)}
generation_kwargs:
  until: []
  {STOP_KWARG}: true
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_gen_tokens}
filter_list:
  - name: paper_truncation
    filter:
      - function: !function famlib_harness.PaperTruncation
      - function: take_first
metric_list:
  - metric: chrf
    aggregation: chrf
    higher_is_better: true
"""
