"""What a strategy is, as data: :class:`Strategy` (and the :class:`Regulariser` a training strategy may add).

A strategy is one of three kinds:

* **reference**: the base model itself (``base``), the point every other model is compared with;
* **trained**: continued pretraining of the base (``dense``, ``expert``, ``freeze``, ``l2sp``, ``lora``): which
  params training section, which data, which layer groups are frozen, which regulariser, which adapter;
* **post-hoc**: weight surgery on trained models (``dense_reverted``, ``expert_reverted``, ``soup``,
  ``freeze_soup``): which surgery method of :mod:`famlib.surgery.registry`, made from which strategy's models.

Which parameters a strategy trains, freezes or changes is its layer rule, :attr:`Strategy.rule` (a
:class:`famlib.layers.StrategyRule`): the one rule :mod:`famlib.layers` documents and applies. This module
imports neither torch nor the params layer, so that config validation and ``famlib plan`` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from famlib.errors import FamlibError, near, one_of
from famlib.layers import BLOCK_POSITIONS, GROUPS, LAYER_GROUPS, StrategyRule

if TYPE_CHECKING:
    import torch.nn as nn

    from famlib.config import Params

Kind = Literal["reference", "trained", "posthoc"]
Role = Literal["reference", "baseline", "mitigation"]


class StrategyError(FamlibError, ValueError):
    """A strategy entry that cannot be registered, or a name that is not registered."""


@dataclass(frozen=True)
class Regulariser:
    """A penalty a training strategy adds to the loss (Layer-Range L2-SP is the only one so far).

    ``sections``: the top-level params sections it reads; they enter the training job's cache key, so a
    change there retrains only the strategies that use them. ``build(params, model)`` returns an object
    with ``penalty_and_grad(model) -> float`` (adds the penalty's gradient to ``.grad``) and an ``anchored``
    count; it is called after the layer rule has set ``requires_grad``.
    """

    name: str
    label: str
    sections: tuple[str, ...]
    build: Callable[["Params", "nn.Module"], Any]


@dataclass(frozen=True)
class Adapter:
    """Trainable modules added to the base for training and merged into its weights afterwards (LoRA).

    The saved model is then an ordinary checkpoint of the base's architecture, so evaluation and weight
    surgery never see the adapter. ``sections``: the top-level params sections it reads (they enter the
    training job's cache key, like a regulariser's). ``wrap(params, model)`` returns the model to train
    (the adapter added; its tensors are the ones :func:`famlib.layers.is_adapter` names) and must be a
    pure function of ``params`` and the model's weights, so that a resumed run starts from the same point;
    ``save(wrapped, path)`` writes the adapter's own tensors (a record of what was merged);
    ``merge(wrapped)`` folds the adapter into the base weights and returns the plain model;
    ``unload(wrapped)`` removes it without merging (after a failed run); ``train_config(params, cfg)``, if
    given, returns the optimisation settings to use instead of the strategy's training section ``cfg``
    (LoRA's own learning rate).
    """

    name: str
    label: str
    sections: tuple[str, ...]
    wrap: Callable[["Params", "nn.Module"], "nn.Module"]
    save: Callable[["nn.Module", Any], None]
    merge: Callable[["nn.Module"], "nn.Module"]
    unload: Callable[["nn.Module"], "nn.Module"]
    train_config: Optional[Callable[["Params", Any], Any]] = None


@dataclass(frozen=True)
class Strategy:
    """One registered strategy.

    Args:
        name: the strategy id: model ids, step ids, results' ``strategy`` column (a plain word).
        label: the short display name of tables, figures and the report (``"D.-Rev."``).
        title: the paper's name for it, in words (``"Dense-Reverted (Train-then-Revert)"``).
        per_family: one model per family (the family's model answers for its languages) or one for all.
        outside: what happens to the embeddings, final norm and tied head, in words (the layer rule).
        training: trained strategies: the params training section, ``"dense"`` or ``"family"``.
        data: trained strategies: ``"family"`` (the family's training languages) or ``"dense"`` (the
            mixture of every family's data).
        frozen: trained strategies: layer groups with ``requires_grad=False`` (some of first, middle,
            last, outside).
        frozen_block: trained strategies: also freeze a block of as many decoder layers as the middle group
            (L - m - n) at the ``start`` or the ``end`` of the stack (the which-block control;
            :func:`famlib.layers.frozen_block_layers`), or None.
        replay: trained strategies: mix a share (params ``replay.share``) of the probe language's (English)
            train-split text into the training set, in place of as much of the family's text (the same
            token budget; :func:`famlib.data.tokens.build_cpt_set`).
        regulariser: trained strategies: a penalty added to the loss, or None.
        adapter: trained strategies: modules added for training and merged afterwards (LoRA), or None;
            their tensors train, the base's parameters train unless their group is in ``frozen``.
        surgery: post-hoc strategies: a method of :data:`famlib.surgery.registry.METHODS` (``revert``, ``soup``,
            ``interpolate``).
        source: post-hoc strategies: the strategy whose models it is made from (``revert``, ``interpolate``:
            with the base).
        surgery_groups: post-hoc strategies: the groups the surgery changes (the others keep the tuned values).
        surgery_options: post-hoc strategies: ``f(params) -> dict`` of the method's options read from the
            params file (``interpolate``'s ``alpha``), or None. They enter the surgery record's key, so a
            changed value rebuilds the model.
        role: ``baseline`` (Dense, Expert), ``mitigation`` (a way to forget less), or ``reference`` (base).
        paper: the paper reports it; claims C1-C11 are decided on these strategies only, so that a new
            strategy shows in the tables, figures and report without changing a verdict about the paper's.
        default: a scale runs it when its params file has no ``strategies:`` list.
        compare_with: the strategies it is a control or an alternative for: the report's "Beyond the paper"
            section sets it against each of them (and the base) with paired intervals.
        color, marker: for figures (None: a neutral grey, a circle).
    """

    name: str
    label: str
    title: str
    per_family: bool
    outside: str
    training: Optional[Literal["dense", "family"]] = None
    data: Optional[Literal["family", "dense"]] = None
    frozen: tuple[str, ...] = ()
    frozen_block: Optional[Literal["start", "end"]] = None
    replay: bool = False
    regulariser: Optional[Regulariser] = None
    adapter: Optional[Adapter] = None
    surgery: Optional[str] = None
    source: Optional[str] = None
    surgery_groups: tuple[str, ...] = ()
    surgery_options: Optional[Callable[["Params"], dict[str, Any]]] = None
    role: Role = "mitigation"
    paper: bool = False
    default: bool = False
    compare_with: tuple[str, ...] = ()
    color: Optional[str] = None
    marker: Optional[str] = None

    @property
    def kind(self) -> Kind:
        if self.training is not None:
            return "trained"
        if self.surgery is not None:
            return "posthoc"
        return "reference"

    @property
    def trains(self) -> bool:
        return self.kind == "trained"

    @property
    def sections(self) -> tuple[str, ...]:
        """The top-level params sections its regulariser and adapter read (besides its training section)."""
        parts = [*(self.regulariser.sections if self.regulariser else ()),
                 *(self.adapter.sections if self.adapter else ())]
        return tuple(dict.fromkeys(parts))

    def missing_sections(self, params: "Params") -> list[str]:
        """Those of :attr:`sections` that ``params`` lacks (an optional section such as ``lora:`` left out)."""
        return [s for s in self.sections if getattr(params, s, None) is None]

    @property
    def rule(self) -> StrategyRule:
        """This strategy's row of the layer rule (:mod:`famlib.layers`)."""
        return StrategyRule(self.name, trains=self.trains, outside=self.outside, frozen=self.frozen,
                            frozen_block=self.frozen_block,
                            l2sp=self.regulariser is not None and self.regulariser.name == "l2sp",
                            surgery=self.surgery, surgery_groups=self.surgery_groups if self.surgery else (),
                            adapter=self.adapter.name if self.adapter is not None else None)

    def what_trains(self) -> str:
        """In words: which groups train (trained), what the surgery changes (post-hoc), or nothing."""
        if self.kind == "trained" and self.adapter is not None:
            kept = [g for g in GROUPS if g not in self.frozen]
            where = ", ".join(f"{s}.*" for s in self.adapter.sections)
            return (f"{self.adapter.label} adapters ({where})"
                    + (f" and {', '.join(kept)}" if kept else ", base frozen"))
        if self.kind == "trained":
            if self.frozen_block is not None:
                block = f"the {'first' if self.frozen_block == 'start' else 'last'} L-m-n layers"
                return f"all but {block}{' and ' + ', '.join(self.frozen) if self.frozen else ''} (frozen)"
            if not self.frozen:
                return "everything"
            kept = [g for g in GROUPS if g not in self.frozen]
            return f"{', '.join(kept)} ({', '.join(self.frozen)} frozen)"
        if self.kind == "posthoc":
            groups = "all groups" if set(self.surgery_groups) == set(GROUPS) else ", ".join(self.surgery_groups)
            return f"none ({self.surgery}: {groups})"
        return "nothing"

    def data_recipe(self) -> str:
        """In words: the training data, or what a post-hoc model is made of."""
        if self.kind == "trained":
            text = "family data" if self.data == "family" else "dense mixture (every family)"
            return text + " + English replay (replay.share)" if self.replay else text
        if self.kind == "posthoc":
            if self.surgery in ("revert", "interpolate"):
                return f"{self.source}{'.<family>' if self.per_family else ''} + base"
            return f"every {self.source}.<family>"
        return "-"

    def check(self) -> None:
        """Raise StrategyError if the entry contradicts itself (called by ``register``)."""
        def bad(field: str, value: Any, allowed: str) -> StrategyError:
            return StrategyError(f"strategy {self.name!r}: {field}={value!r}; allowed: {allowed}")

        if not self.name or not self.name.replace("_", "").isalnum() or not self.name[0].isalpha():
            raise bad("name", self.name, "a plain word: letters, digits and '_', starting with a letter "
                                         "(it becomes part of model ids, step ids and directory names)")
        for other in self.compare_with:
            if other in (self.name, "base") or not other.replace("_", "").isalnum():
                raise bad("compare_with", self.compare_with, "names of other registered strategies (not the base: "
                                                             "every strategy is compared with it anyway)")
        if not self.label:
            raise bad("label", self.label, "a non-empty display name")
        if self.role not in ("reference", "baseline", "mitigation"):
            raise bad("role", self.role, one_of(("reference", "baseline", "mitigation")))
        if self.training is not None and self.surgery is not None:
            raise bad("surgery", self.surgery, "None for a trained strategy (training is set)")
        for g in self.frozen:
            if g not in GROUPS:
                raise bad("frozen", self.frozen, f"groups {one_of(GROUPS)}. {near(g, GROUPS)}".rstrip())
        if self.kind == "trained":
            if self.training not in ("dense", "family"):
                raise bad("training", self.training, "'dense' or 'family' (a section of the params' training)")
            if self.data not in ("family", "dense"):
                raise bad("data", self.data, "'family' (the family's languages) or 'dense' (every family's)")
            if self.per_family != (self.data == "family"):
                raise bad("data", self.data, f"{'family' if self.per_family else 'dense'!r}: a strategy with one model "
                                             "per family trains on its family's data, one model for all on the mixture")
            if set(self.frozen) >= set(GROUPS) and self.adapter is None:
                raise bad("frozen", self.frozen, "at most three of the four groups (something must train), "
                                                 "or all four with an adapter (which then trains)")
            if self.frozen_block is not None and self.frozen_block not in BLOCK_POSITIONS:
                raise bad("frozen_block", self.frozen_block, f"None or {one_of(BLOCK_POSITIONS)} (where the block "
                                                             "of the middle group's size sits)")
        else:
            for field in ("data", "regulariser", "adapter", "frozen_block"):
                if getattr(self, field) is not None:
                    raise bad(field, getattr(self, field), "None: only trained strategies have one")
            if self.frozen:
                raise bad("frozen", self.frozen, "(): only trained strategies freeze groups")
            if self.replay:
                raise bad("replay", self.replay, "False: only trained strategies have training data")
        if self.kind == "posthoc":
            if self.surgery not in POSTHOC_METHODS:
                raise bad("surgery", self.surgery, f"{one_of(POSTHOC_METHODS)} (famlib.surgery.posthoc builds the inputs "
                                                   "of these: the source model and the base, or every family's model)")
            if not self.source:
                raise bad("source", self.source, "the strategy whose models the surgery is applied to")
            if not self.surgery_groups:
                raise bad("surgery_groups", self.surgery_groups, f"some of {one_of(GROUPS)}")
            for g in self.surgery_groups:
                if g not in GROUPS:
                    raise bad("surgery_groups", self.surgery_groups, f"groups {one_of(GROUPS)}")
            if self.surgery == "soup" and set(self.surgery_groups) != set(GROUPS):
                raise bad("surgery_groups", self.surgery_groups, f"{GROUPS} (a soup averages every parameter)")
            if self.surgery == "revert" and OUTSIDE_GROUP in self.surgery_groups:
                raise bad("surgery_groups", self.surgery_groups, f"layer groups only ({one_of(LAYER_GROUPS)})")
            if self.surgery == "interpolate" and self.surgery_options is None:
                raise bad("surgery_options", None, "a function params -> {'alpha': ...} (interpolate needs alpha)")
        else:
            if self.source is not None:
                raise bad("source", self.source, "None: only post-hoc strategies are made from other models")
            if self.surgery_options is not None:
                raise bad("surgery_options", self.surgery_options, "None: only post-hoc strategies have them")


OUTSIDE_GROUP = GROUPS[-1]
# Surgery methods whose inputs famlib.surgery.posthoc knows how to assemble from a scale's models.
POSTHOC_METHODS = ("revert", "soup", "interpolate")
