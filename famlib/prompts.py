"""Prompt formats shared by base pretraining and evaluation, so the base has seen what it is asked.

The translation format is the one lm-evaluation-harness renders for a FLORES-style task with
``doc_to_text: "{src}: {text}\\n{tgt}:"``, ``target_delimiter: " "`` and few-shot examples joined by
``fewshot_delimiter: "\\n\\n"``. The base mixture's translation documents are blocks of such pairs.
"""

from __future__ import annotations

from famlib.languages import language

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


def translation_query(src_lang: str, tgt_lang: str, src_text: str) -> str:
    """``"English: <src>\\nPolish:"``: what the model sees before it translates."""
    return f"{language(src_lang).name}: {src_text}\n{language(tgt_lang).name}:"


def translation_example(src_lang: str, tgt_lang: str, src_text: str, tgt_text: str) -> str:
    """A solved example: the query, the target delimiter and the reference."""
    return translation_query(src_lang, tgt_lang, src_text) + TARGET_DELIMITER + tgt_text
