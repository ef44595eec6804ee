"""``SharedPrefixLM``: lm-eval's ``HFLM`` that runs a multiple-choice context once, not once per choice.

lm-eval scores a multiple-choice item as one (context + choice) sequence per choice, so a 4-way item with
a 2-shot prompt runs its ~300-token context four times (its one-token-continuation cache does not apply:
famlib's choices are whole verse endings). Here the requests that share a context are scored together: the
context minus its last token runs once and leaves a KV cache; the choices (each preceded by that last
context token) then run as one batch on top of a copy of the cache per choice. The log-likelihoods are the
same quantity the parent computes (the same positions, the same tokens), and the prefix pass computes
logits for one position only, which on a 262k-vocabulary Gemma 3 is most of the cost it saves.

Requests fall back to the parent's path, unchanged, when they share their context with no other request
(rolling perplexity windows, single-continuation tasks), when the context has fewer than two tokens, or
when context + choice exceeds ``max_length + 1``, where the parent truncates each choice's sequence from the
left by a different amount. Log-softmax runs in float32 (the parent's default is the model's dtype).

Groups are batched: the prefixes of several items run as one left-padded batch (explicit position ids), and
a chunk holds at most ``batch_size`` choices. On the tiny model (bf16, one thread) comprehension went from
95.7 s to 47.6 s and reasoning from 28.1 s to 21.4 s for 22 languages x 32 items;
``tests/test_evaluate.py::test_shared_prefix_scores_equal_the_harness`` holds the values to the parent's.

Generation: requests whose settings carry ``famlib_paper_stop: true`` (the translation tasks' YAML, see
:func:`famlib.evaluate.truncation.scoring_yaml`) get :class:`PaperStop` among their stopping criteria, which
ends each row of a batch once the paper's truncated span can no longer change. The setting is removed
before ``generate`` sees it. ``tests/test_generation.py`` holds the spans to those of generating to
``max_gen_toks`` and truncating afterwards.
"""

from __future__ import annotations

import os

import transformers
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils_hf import stop_sequences_criteria

from famlib.evaluate.truncation import STOP_KWARG, span_is_final


def _quiet() -> bool:
    """``TQDM_DISABLE`` is set (famlib's pipeline sets it for its kernels). lm-eval passes ``disable=`` to
    its progress bars explicitly, which overrides tqdm's own reading of the variable."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


class SharedPrefixLM(HFLM):
    """``HFLM`` whose ``_loglikelihood_tokens`` shares the context of requests that have the same one."""

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or _quiet())

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm or _quiet())

    def generate_until(self, requests, disable_tqdm: bool = False):
        return super().generate_until(requests, disable_tqdm=disable_tqdm or _quiet())

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """The parent's ``_model_generate``, plus :class:`PaperStop` when the request asks for it.

        The parent builds its stopping criteria inline and passes them to ``generate`` itself, so this is
        its body (lm-eval 0.4.13) with one more criterion in the list. Without the setting, or for a seq2seq
        model (no prompt before the generated tokens) or beam search (whose rows are reordered beams), the
        parent runs unchanged.
        """
        import torch

        paper = bool(generation_kwargs.pop(STOP_KWARG, False))
        if not paper or self.backend != "causal" or int(generation_kwargs.get("num_beams") or 1) > 1:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        do_sample = generation_kwargs.get("do_sample")
        if (temp := generation_kwargs.get("temperature")) == 0.0 and do_sample is None:
            generation_kwargs["do_sample"] = do_sample = False
        if do_sample is False and temp == 0.0:
            generation_kwargs.pop("temperature", None)
        criteria = stop_sequences_criteria(self.tokenizer, stop, context.shape[1], context.shape[0])
        criteria.append(PaperStop(self.tokenizer, context.shape[1], context.shape[0]))
        with torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                            enabled=self.mixed_precision_dtype is not None):
            return self.model.generate(input_ids=context, max_length=max_length, stopping_criteria=criteria,
                                       pad_token_id=self.tokenizer.pad_token_id, use_cache=True, **generation_kwargs)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        disable_tqdm = disable_tqdm or _quiet()  # the parent's rolling path asks for a bar per batch
        groups: dict[tuple, list[int]] = {}
        for i, (_, context_enc, _) in enumerate(requests):
            groups.setdefault(tuple(context_enc), []).append(i)
        results: list = [None] * len(requests)
        shared, rest = [], []
        for context, idx in groups.items():
            fits = all(len(context) + len(requests[i][2]) <= self.max_length + 1 for i in idx)
            if self.backend == "causal" and len(idx) > 1 and len(context) >= 2 and fits:
                shared.append((list(context), idx))
            else:
                rest.extend(idx)
        if rest:
            for i, answer in zip(rest, super()._loglikelihood_tokens(
                    [requests[i] for i in rest], disable_tqdm=disable_tqdm, override_bs=override_bs)):
                results[i] = answer
        # Longest contexts first (as the parent does: an out-of-memory shows at once); a chunk holds whole
        # groups and at most batch_size choices (at least one group).
        shared.sort(key=lambda g: -len(g[0]))
        limit = int(override_bs or (self.batch_size if self.batch_size != "auto" else 16) or 16)
        chunk: list = []
        for group in shared + [None]:
            if chunk and (group is None or sum(len(g[1]) for g in chunk) + len(group[1]) > limit):
                answers = self._score_groups([g[0] for g in chunk], [[requests[i][2] for i in g[1]] for g in chunk])
                for (_, idx), group_answers in zip(chunk, answers):
                    for i, answer in zip(idx, group_answers):
                        results[i] = answer
                        if requests[i][0] is not None:
                            self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                chunk = []
            if group is not None:
                chunk.append(group)
        return results

    def _score_groups(self, contexts: list[list[int]], continuations: list[list[list[int]]]):
        """Per group, per choice: (sum of log-probabilities, greedy) of the choice after its context.

        The prefixes (each context minus its last token) run as one left-padded batch and leave a KV cache;
        each group's cache row is repeated once per choice, and the choices (last context token + choice
        minus its last token, right-padded) run as a second batch on top of it.
        """
        import torch

        dev = self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        lens = [len(c) - 1 for c in contexts]
        width_p = max(lens)
        prefix = torch.full((len(contexts), width_p), pad, dtype=torch.long, device=dev)
        mask_p = torch.zeros((len(contexts), width_p), dtype=torch.long, device=dev)
        for g, ctx in enumerate(contexts):
            prefix[g, width_p - lens[g]:] = torch.tensor(ctx[:-1], dtype=torch.long)
            mask_p[g, width_p - lens[g]:] = 1
        pos_p = (mask_p.cumsum(-1) - 1).clamp(min=0)
        rows = [(g, cont) for g, conts in enumerate(continuations) for cont in conts]
        width_c = max(len(cont) for _, cont in rows)
        inp = torch.full((len(rows), width_c), pad, dtype=torch.long, device=dev)
        for r, (g, cont) in enumerate(rows):
            inp[r, :len(cont)] = torch.tensor([contexts[g][-1]] + cont[:-1], dtype=torch.long)
        owner = torch.tensor([g for g, _ in rows], dtype=torch.long, device=dev)
        # Right padding of the choices: a pad comes after every real token, so causal attention keeps it out.
        mask_c = torch.cat([mask_p[owner], torch.ones((len(rows), width_c), dtype=torch.long, device=dev)], dim=1)
        pos_c = torch.tensor(lens, device=dev)[owner][:, None] + torch.arange(width_c, device=dev)[None, :]
        with torch.no_grad():
            prefix_out = self.model(input_ids=prefix, attention_mask=mask_p, position_ids=pos_p, use_cache=True,
                                    logits_to_keep=1)
            cache = getattr(prefix_out, "cache", None) or prefix_out.past_key_values
            cache.reorder_cache(owner)
            logits = self.model(input_ids=inp, attention_mask=mask_c, position_ids=pos_c, **{_cache_kwarg(self.model): cache},
                                use_cache=True, cache_position=torch.arange(width_p, width_p + width_c, device=dev)
                                ).logits.float()
            logz = torch.logsumexp(logits, dim=-1)
        out: list[list[tuple[float, bool]]] = [[] for _ in contexts]
        for r, (g, cont) in enumerate(rows):
            target = torch.tensor(cont, dtype=torch.long, device=dev)
            lp = logits[r, :len(cont)].gather(1, target[:, None])[:, 0] - logz[r, :len(cont)]
            greedy = bool((logits[r, :len(cont)].argmax(-1) == target).all())
            out[g].append((float(lp.sum()), greedy))
        return out


class PaperStop(transformers.StoppingCriteria):
    """Ends each row of a generation batch once its span under the paper's rule is final.

    Per step, every row not yet done is decoded from its first generated token, as lm-eval decodes the
    result (``skip_special_tokens=True``), and is done once :func:`~famlib.evaluate.truncation.span_is_final`
    holds: a newline or literal ``\\n`` after non-whitespace text. Returns one bool per row (transformers
    >= 4.39); ``generate`` pads a done row from there on and stops when every row is done, EOS, or at the
    limit. For greedy decoding the kept tokens are those of a generation to the limit (a row's tokens do not
    depend on when it stops), so the span is the same provided decoding is prefix-stable (the decoded text
    of a token prefix is a prefix of the decoded text of the whole): true of byte-level BPE and of
    SentencePiece with byte fallback, whose partial UTF-8 bytes decode as replacement characters and never
    as a newline or backslash, as long as ``clean_up_tokenization_spaces`` is off (it is for famlib's
    tokenizer; the test checks the prefix property on its outputs). Decoding whole rows (at most ``max_gen_toks`` tokens) costs far less than
    the forward pass of a step.
    """

    def __init__(self, tokenizer, prompt_length: int, batch_size: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.done = [False] * batch_size

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        rows = [i for i, done in enumerate(self.done) if not done]
        if rows:
            generated = input_ids[rows, self.prompt_length:].tolist()
            for i, text in zip(rows, self.tokenizer.batch_decode(generated, skip_special_tokens=True)):
                self.done[i] = span_is_final(text)
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


def _cache_kwarg(model) -> str:
    """transformers 5.x renames forward's ``past_key_values`` to ``cache`` (the old name warns until 5.40)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
