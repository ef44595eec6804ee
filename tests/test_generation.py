"""Translation generation by the paper's protocol: lm-eval cuts nothing, ``PaperStop`` ends rows early.

The paper generates to EOS or ``max_gen_tokens`` and then keeps the text before the first newline or
literal ``\\n`` after the leading whitespace. ``SharedPrefixLM`` stops a row as soon as that span is final;
these tests hold its spans to those of generating to the limit and truncating afterwards, on a tiny random
Gemma 3 whose output is scripted per prompt by a logits processor (leading newlines, the literal, a stop
split over two tokens, rows that never stop), and free-running where the script ends.
"""

from __future__ import annotations

import math

import pytest
import torch

MAX_GEN = 20


class Script:
    """Logits processor forcing, per prompt, a given continuation; free (the model's own greedy choice)
    after it. Prompts are recognised by their decoded text (left padding and <bos> are special)."""

    def __init__(self, tokenizer, scripts: dict[str, str], default: str | None = None):
        self.tokenizer = tokenizer
        self.ids = {k: tokenizer(v, add_special_tokens=False)["input_ids"] for k, v in scripts.items()}
        self.default = tokenizer(default, add_special_tokens=False)["input_ids"] if default is not None else []
        self.start = None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
            prompts = self.tokenizer.batch_decode(input_ids.tolist(), skip_special_tokens=True)
            self.rows = [self.ids.get(p, self.default) for p in prompts]
        step = input_ids.shape[1] - self.start
        for r, ids in enumerate(self.rows):
            if step < len(ids):
                forced = torch.full_like(scores[r], -math.inf)
                forced[ids[step]] = 0.0
                scores[r] = forced
        return scores


def _forced_lm(model, tokenizer, scripts, default=None, batch_size=3):
    """A SharedPrefixLM whose generations follow ``scripts``; ``lm.log`` records, per ``generate`` call, the
    steps it ran and each row's prompt and generated tokens (padding after a finished row dropped)."""
    from transformers import LogitsProcessorList

    from famlib.evaluate.lm import SharedPrefixLM

    class Forced(SharedPrefixLM):
        log: list = []

        def _model_generate(self, context, max_length, stop, **kwargs):
            processors = LogitsProcessorList([Script(self.tokenizer, scripts, default)])
            out = super()._model_generate(context, max_length, stop, logits_processor=processors, **kwargs)
            width = context.shape[1]
            rows = []
            for r in range(out.shape[0]):
                gen = out[r, width:].tolist()
                while gen and gen[-1] == self.tokenizer.pad_token_id:
                    gen.pop()
                rows.append((self.tokenizer.decode(context[r].tolist(), skip_special_tokens=True), gen))
            self.log.append({"steps": out.shape[1] - width, "rows": rows})
            return out

    lm = Forced(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=256)
    lm.log = []
    return lm


@pytest.fixture(scope="module")
def tiny_model(smoke_tokenizer):
    """A tiny random Gemma3ForCausalLM over the smoke tokenizer (as tests/test_evaluate.py builds it)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = smoke_tokenizer
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                           sliding_window=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma3ForCausalLM(cfg)
    return model.eval()


# prompt -> scripted start of the generation, and the span the paper's rule keeps of it
CASES = {
    "English: The cat sleeps.\nSpanish:": ("\n\nHola mundo\nEnglish: otra", "Hola mundo"),
    "English: Good morning to you all.\nSpanish:": (" \n Buenos días\\nEnglish: x", "Buenos días"),
    "English: A literal first.\nSpanish:": ("\\nabc def", ""),  # the literal is not whitespace: empty
    "English: Split.\nSpanish:": ("uno\\nada más", "uno"),  # '\\' and 'n' are two tokens
    "English: Spaced.\nSpanish:": ("Hola \\ n, y\nmás", "Hola \\ n, y"),  # a backslash, a space, n: no stop
    "English: Only whitespace.\nSpanish:": ("\n" * MAX_GEN, ""),  # never final, runs to the limit
    "English: Never stops, with leading whitespace.\nSpanish:":
        ("\n \n\t" + "palabra " * MAX_GEN, None),  # no stop before the limit: the span is what fits
    "English: A newline, then the model.\nSpanish:": ("\n", None),  # free after the newline
    "English: The model alone.\nSpanish:": ("", None),  # no script at all
}


def _generate(lm, prompts, **gen):
    from lm_eval.api.instance import Instance

    kwargs = {"do_sample": False, "temperature": 0.0, "max_gen_toks": MAX_GEN, **gen}
    return lm.generate_until([Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)],
                             disable_tqdm=True)


def _tokens(lm) -> dict[str, list[int]]:
    return {prompt: gen for call in lm.log for prompt, gen in call["rows"]}


def test_the_stop_gives_the_spans_of_generating_to_the_limit(tiny_model, smoke_tokenizer, capsys):
    """For every row of batches with leading newlines, literals and rows that never stop: the truncated
    output with PaperStop equals generation to max_gen_toks (lm-eval cutting at EOS only) then the rule;
    the stopped rows' tokens are a prefix of the full ones, and the stop saves steps and tokens."""
    from famlib.evaluate.truncation import STOP_KWARG, empty_rate, truncate_generation

    prompts = list(CASES)
    scripts = {p: s for p, (s, _) in CASES.items()}
    full_lm = _forced_lm(tiny_model, smoke_tokenizer, scripts)
    full = _generate(full_lm, prompts, until=[])
    stop_lm = _forced_lm(tiny_model, smoke_tokenizer, scripts)
    stopped = _generate(stop_lm, prompts, until=[], **{STOP_KWARG: True})
    old_lm = _forced_lm(tiny_model, smoke_tokenizer, scripts)
    old = _generate(old_lm, prompts, until=["\n"])  # the former YAML: lm-eval cut at the first newline

    for prompt, raw_full, raw_stop, raw_old in zip(prompts, full, stopped, old):
        span = truncate_generation(raw_full)
        assert truncate_generation(raw_stop) == span, (prompt, raw_full, raw_stop)
        want = CASES[prompt][1]
        if want is not None:
            assert span == want, (prompt, raw_full)
        assert raw_full.startswith(raw_stop), (prompt, raw_full, raw_stop)
    assert truncate_generation(full[0]) == "Hola mundo" and full[0].startswith("\n\nHola mundo\n")
    assert old[0] == "" and old[1] == " "  # what the old `until` made of them: empty spans
    assert empty_rate(old) > empty_rate(stopped) == empty_rate(full) == pytest.approx(2 / len(prompts))

    full_tokens, stop_tokens = _tokens(full_lm), _tokens(stop_lm)
    split = [smoke_tokenizer.decode([t]) for t in stop_tokens["English: Split.\nSpanish:"]]
    assert split[-2:] == ["\\", "n"]  # the literal was completed by a second token
    for prompt in prompts:
        assert full_tokens[prompt][:len(stop_tokens[prompt])] == stop_tokens[prompt], prompt
    assert all(len(t) == MAX_GEN for t in full_tokens.values())  # no EOS: the reference ran to the limit
    assert sum(len(t) < MAX_GEN for t in stop_tokens.values()) >= 5  # rows that stopped early
    steps_full = sum(c["steps"] for c in full_lm.log)
    steps_stop = sum(c["steps"] for c in stop_lm.log)
    assert steps_stop < steps_full
    row_full, row_stop = sum(map(len, full_tokens.values())), sum(map(len, stop_tokens.values()))
    with capsys.disabled():
        print(f"\n[paper stop] {len(prompts)} rows in {len(full_lm.log)} batches of 3, max_gen_toks={MAX_GEN}: "
              f"decode steps {steps_full} -> {steps_stop}, tokens kept per row {row_full} -> {row_stop}, "
              f"row-steps computed {sum(c['steps'] * len(c['rows']) for c in full_lm.log)} -> "
              f"{sum(c['steps'] * len(c['rows']) for c in stop_lm.log)}")


def test_a_row_is_done_once_its_span_is_final(smoke_tokenizer):
    """PaperStop answers one bool per row (transformers >= 4.39) and keeps a row done; leading whitespace
    does not end a row, a newline or literal after text does, and the prompt is never looked at."""
    from famlib.evaluate.lm import PaperStop

    tok = smoke_tokenizer
    prompt = tok("x\ny\\n", add_special_tokens=False)["input_ids"]  # stops in the prompt count for nothing

    def batch(texts):
        rows = [prompt + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        width = max(map(len, rows))
        return torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])  # pads are skipped

    stop = PaperStop(tok, len(prompt), 4)
    got = stop(batch(["\n\n", " Hola", "Hola\\", "a\nb"]), None)
    assert got.dtype == torch.bool and got.tolist() == [False, False, False, True]
    assert stop(batch(["\n\nHola\n", " Hola mundo", "Hola\\n", "a\nb c"]), None).tolist() == [True, False, True, True]


@pytest.mark.parametrize("text, final", [
    ("", False), ("\n\n", False), (" \t\n ", False), ("Hola", False), ("Hola\\", False),
    ("\n\nHola\n", True), ("Hola\\n", True), ("\\n", True), (" x\\ n", False), ("a\nb", True),
])
def test_span_is_final(text, final):
    from famlib.evaluate.truncation import span_is_final, truncate_generation

    assert span_is_final(text) is final
    if final:  # whatever follows, the span stays
        for more in ("", "x", "\n", "\\n", "n", " más\\n"):
            assert truncate_generation(text + more) == truncate_generation(text)


def test_empty_rate():
    from famlib.evaluate.truncation import empty_rate

    assert empty_rate(["\n\nHola", " \n", "\\nHola", "Hola\n", "", "x"]) == pytest.approx(3 / 6)
    assert empty_rate(["Hola", "mundo"]) == 0.0
    assert math.isnan(empty_rate([]))


def test_scoring_yaml_leaves_the_cut_to_the_filter(tmp_path):
    """The translation tasks' generation settings: lm-eval's `until` is empty (it adds EOS itself), greedy,
    the stop setting on; lm-eval accepts an empty `until` without falling back to its default; the paper
    scale's FLORES tasks, read as the harness reads them, get the same settings."""
    import yaml
    from lm_eval.config.task import TaskConfig
    from lm_eval.models.utils import handle_stop_sequences

    from famlib.evaluate.truncation import STOP_KWARG, scoring_yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    cfg = yaml.load(scoring_yaml(MAX_GEN), Loader=Loader)
    gen = cfg["generation_kwargs"]
    assert gen == {"until": [], STOP_KWARG: True, "do_sample": False, "temperature": 0.0, "max_gen_toks": MAX_GEN}
    assert cfg["filter_list"][0]["filter"][0]["function"] == "famlib_harness.PaperTruncation"
    task = TaskConfig(task="t", output_type="generate_until", generation_kwargs=dict(gen))
    assert task.generation_kwargs["until"] == []  # not the fewshot delimiter "\n\n"
    assert handle_stop_sequences(list(task.generation_kwargs["until"]), eos="<eos>") == ["<eos>"]  # mutates its list

    from lm_eval.tasks._yaml_loader import load_yaml

    from famlib.config import load_params
    from famlib.evaluate import paper
    from famlib.evaluate.harness import HARNESS_MODULE

    p = load_params("paper")
    paper.write_flores_tasks(p, tmp_path)
    (tmp_path / "famlib_harness.py").write_text(HARNESS_MODULE)
    flores = load_yaml(tmp_path / f"{paper.flores_task('en', 'pl')}.yaml")
    assert flores["generation_kwargs"] == {**gen, "max_gen_toks": p.evaluation.max_gen_tokens}
    truncation = flores["filter_list"][0]["filter"][0]["function"]
    assert truncation().apply([["\n\nKot śpi.\nEnglish:"]], [{}]) == [["Kot śpi."]]
    assert flores["metadata"]["flores_path"] == "openlanguagedata/flores_plus"
    # evaluation.flores_path is where every task's loader reads FLORES+ (a local copy, say), and at its
    # default it is left out of the params' fingerprint (finished steps stay finished)
    local = load_params("paper", {"evaluation.flores_path": str(tmp_path / "flores")})
    paper.write_flores_tasks(local, tmp_path / "local")
    (tmp_path / "local" / "famlib_harness.py").write_text(HARNESS_MODULE)
    assert load_yaml(tmp_path / "local" / f"{paper.flores_task('en', 'pl')}.yaml")["metadata"]["flores_path"] == str(
        tmp_path / "flores")
    assert "flores_path" not in p.to_dict()["evaluation"] and local.fingerprint() != p.fingerprint()


@pytest.fixture(scope="module")
def suite(smoke_corpus, smoke_tokenizer, tmp_path_factory):
    from famlib.config import load_params
    from famlib.evaluate import build_suite

    params = load_params("smoke")
    return params, build_suite(params, smoke_corpus, out=tmp_path_factory.mktemp("gen_suite") / "tasks",
                               tokenizer=smoke_tokenizer)


@pytest.mark.slow
def test_an_output_beginning_with_a_newline_is_kept_by_the_whole_pipeline(suite, tiny_model, smoke_tokenizer):
    """The generated translation task, run by lm-eval on SharedPrefixLM: every output begins with two
    newlines; lm-eval cuts nothing, PaperStop ends each row at the newline after the text, and the
    PaperTruncation filter keeps that text: no hypothesis is empty."""
    from famlib.evaluate.run import run_harness
    from famlib.evaluate.truncation import empty_rate

    params, s = suite
    tasks = [t for t in s.tasks if s.tasks[t]["axis"] == "translation"][:2]
    assert tasks
    lm = _forced_lm(tiny_model, smoke_tokenizer, {}, default="\n\nHola mundo\nEnglish: y así sigue", batch_size=4)
    out = run_harness(lm, tasks, s, params, limit=4)
    for task in tasks:
        samples = out["samples"][task]
        assert samples and all(x["resps"][0][0] == "\n\nHola mundo\n" for x in samples), task  # stopped there
        assert all(x["filtered_resps"][0] == "Hola mundo" for x in samples), task
        assert empty_rate([x["resps"][0][0] for x in samples]) == 0.0
        assert out["configs"][task]["generation_kwargs"]["until"] == []
    # every batch ended at the newline after the text (6 tokens), not at max_gen_tokens (16 at smoke)
    stop_at = len(smoke_tokenizer("\n\nHola mundo\n", add_special_tokens=False)["input_ids"])
    assert stop_at < params.evaluation.max_gen_tokens
    assert lm.log and all(c["steps"] == stop_at for c in lm.log)
