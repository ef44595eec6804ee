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
