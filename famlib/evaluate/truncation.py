"""The paper's FLORES post-processing rule, as a plain function and as an lm-eval filter.

Paper (section 3.1, evaluation): generate, strip leading whitespace, keep only the text before the first
generated newline or literal ``\\n`` (two characters), and score that span with chrF. The literal matters
because MADLAD-400 stores line breaks as a backslash and an ``n``, so models trained on it emit that pair
where a newline belongs.
"""

from __future__ import annotations

from lm_eval.api.filter import Filter

STOPS = ("\n", "\\n")  # a real newline, and the two-character literal backslash-n


def truncate_generation(text: str) -> str:
    """Apply the paper's rule to one generation: lstrip, then cut at the first newline or literal ``\\n``."""
    text = text.lstrip()
    for stop in STOPS:  # cutting at each in turn leaves the text before the earliest of them
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text


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
    greedy generation until a newline, the paper's truncation filter, corpus chrF."""
    import json

    from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER

    return f"""target_delimiter: {json.dumps(TARGET_DELIMITER)}
fewshot_delimiter: {json.dumps(FEWSHOT_DELIMITER)}
generation_kwargs:
  until: [{json.dumps(chr(10))}]
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
