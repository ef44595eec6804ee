"""Strategies by name. Add a strategy: write its module in this package, holding a
:class:`~famlib.strategies.spec.Strategy` as ``STRATEGY`` (or several as ``STRATEGIES``); :func:`discover` registers
it when famlib is imported, after the paper's strategies and the baselines listed in ``BUILTIN`` (which fix their
order). Code outside famlib (a test, a notebook) can :func:`register` one at run time, or :func:`discover` a
package of its own.

Everything that lists strategies asks this module: config validation, model ids, the notebook graph, the
post-hoc jobs, which model answers for which language, the tables, figures, claims and report. Order is
kind first (reference, trained, post-hoc), then registration order, which is the paper's order for the
built-in ones: ``base``, ``dense``, ``expert``, ``freeze``, ``l2sp``, ``dense_reverted``,
``expert_reverted``, ``soup``, ``freeze_soup``, then the baselines beyond the paper (``lora``, ``replay``,
``freeze_first_block``, ``freeze_last_block``, ``wise_ft``), run where a scale lists them.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Optional

from famlib.errors import near, one_of
from famlib.strategies import base, dense, expert, freeze, freeze_block, l2sp, lora, posthoc, replay, wise_ft
from famlib.strategies.spec import Strategy, StrategyError

# The paper's strategies, in its order, then the baselines beyond the paper (paper=False, not run by default).
BUILTIN: tuple[Strategy, ...] = (base.STRATEGY, dense.STRATEGY, expert.STRATEGY, freeze.STRATEGY, l2sp.STRATEGY,
                                 *posthoc.STRATEGIES, lora.STRATEGY, replay.STRATEGY, *freeze_block.STRATEGIES,
                                 wise_ft.STRATEGY)
# Names the layer rule keeps for analyses that are not strategies (famlib.strategies.rules.rule_for).
RESERVED = ("interpolation",)
_KIND_ORDER = {"reference": 0, "trained": 1, "posthoc": 2}

_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Add ``strategy`` to the registry and return it.

    Raises:
        StrategyError: the entry contradicts itself (:meth:`Strategy.check`), its name is taken (unless
            ``replace``) or reserved, or a post-hoc strategy's ``source`` is not a registered trained strategy
            of the right shape (``soup`` averages one model per family).
    """
    strategy.check()
    if strategy.name in RESERVED:
        raise StrategyError(f"strategy name {strategy.name!r} is reserved for the layer rule of an analysis; "
                            "choose another name")
    if strategy.name in _REGISTRY and not replace:
        raise StrategyError(f"strategy {strategy.name!r} is already registered "
                            f"({_REGISTRY[strategy.name].title}); pass replace=True to redefine it")
    if strategy.kind == "posthoc":
        src = _REGISTRY.get(strategy.source)
        if src is None or src.kind != "trained":
            trained = [s.name for s in _REGISTRY.values() if s.kind == "trained"]
            raise StrategyError(f"strategy {strategy.name!r}: source {strategy.source!r} is not a registered trained "
                                f"strategy; {one_of(trained)}. {near(str(strategy.source), trained)}".rstrip())
        if strategy.surgery == "soup" and (not src.per_family or strategy.per_family):
            raise StrategyError(f"strategy {strategy.name!r}: a soup averages one model per family into one model; "
                                f"needs per_family=False and a per-family source ({src.name!r} "
                                f"has {'one model per family' if src.per_family else 'one model'})")
        if strategy.surgery in ("revert", "interpolate") and strategy.per_family != src.per_family:
            raise StrategyError(f"strategy {strategy.name!r}: {strategy.surgery} makes one model per model of its source; "
                                f"per_family must be {src.per_family} like {src.name!r}'s")
    _REGISTRY[strategy.name] = strategy
    return strategy


def unregister(name: str) -> Strategy:
    """Remove a strategy (and return it), e.g. one a test registered. Raises StrategyError if unknown or if a
    registered post-hoc strategy is made from it."""
    entry = get(name)
    users = [s.name for s in _REGISTRY.values() if s.source == name]
    if users:
        raise StrategyError(f"strategy {name!r} is the source of {', '.join(users)}; unregister those first")
    return _REGISTRY.pop(entry.name)


def get(name: str) -> Strategy:
    """The strategy registered as ``name``. Raises StrategyError listing the known names and a near match."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise StrategyError(unknown_message(name)) from None


def unknown_message(name: object, choices: Optional[Iterable[str]] = None) -> str:
    """``unknown strategy 'freez'; one of 'base', ... Did you mean 'freeze'?`` (the known ones by default)."""
    choices = list(names() if choices is None else choices)
    return f"unknown strategy {name!r}; {one_of(choices)}. {near(str(name), choices)}".rstrip()


def is_known(name: object) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def strategies(kind: Optional[str] = None) -> list[Strategy]:
    """Every registered strategy (or those of one kind: reference, trained, posthoc), in registry order."""
    order = {n: i for i, n in enumerate(_REGISTRY)}
    found = sorted(_REGISTRY.values(), key=lambda s: (_KIND_ORDER[s.kind], order[s.name]))
    return [s for s in found if kind is None or s.kind == kind]


def names(kind: Optional[str] = None) -> list[str]:
    """The registered names (of one kind, if given), in registry order."""
    return [s.name for s in strategies(kind)]


def per_family_names() -> list[str]:
    """Strategies with one model per family (the model of a language's family answers for it)."""
    return [s.name for s in strategies() if s.per_family]


def paper_names() -> list[str]:
    """The strategies the paper reports (claims C1-C11 are decided on these only)."""
    return [s.name for s in strategies() if s.paper]


def enabled(chosen: Optional[Iterable[str]] = None) -> list[str]:
    """The strategies a scale runs: ``chosen`` (a params file's ``strategies:``) or, if None, every registered
    default; the base is always among them (every model is read against it). Registry order.

    Raises:
        StrategyError: a chosen name is not registered.
    """
    if chosen is None:
        return [s.name for s in strategies() if s.default]
    chosen = set(chosen)
    for n in chosen:
        get(n)
    return [s.name for s in strategies() if s.name in chosen or s.kind == "reference"]


def label(name: str) -> str:
    """The display label of a strategy (``"D.-Rev."``); an unregistered name is shown as itself."""
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    return entry.label if entry is not None else str(name)


class _Labels(Mapping[str, str]):
    """``{name: label}`` of the registry as it is now (a strategy registered later appears at once)."""

    def __getitem__(self, name: str) -> str:
        if not is_known(name):
            raise KeyError(name)  # a Mapping's way to say "absent": LABELS.get(name, name) shows it as itself
        return _REGISTRY[name].label

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


LABELS: Mapping[str, str] = _Labels()


def rows() -> list[dict[str, str]]:
    """The registry as table rows: name, label, models (per family or all), what trains, regulariser, data."""
    return [{"name": s.name, "label": s.label, "models": "per family" if s.per_family else "all",
             "trains": s.what_trains(), "regulariser": s.regulariser.label if s.regulariser else "-",
             "data": s.data_recipe()} for s in strategies()]


def table_text(entries: Optional[list[dict[str, str]]] = None) -> str:
    """:func:`rows` as an aligned plain-text table (what ``famlib strategies`` prints)."""
    entries = rows() if entries is None else entries
    cols = ["name", "label", "models", "trains", "regulariser", "data"]
    width = {c: max(len(c), *(len(r[c]) for r in entries)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip(),
             "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols).rstrip() for r in entries]
    return "\n".join(lines)


# Modules of this package that hold no strategy: the machinery every strategy module uses.
MACHINERY = frozenset({"registry", "rules", "spec", "training"})


def discover(path, package: str) -> list[Strategy]:
    """Register the strategies of every module of the package at ``path`` (import name ``package``) that are not
    registered yet: each module's ``STRATEGY`` or ``STRATEGIES``, in module-name order, trained and reference
    strategies before post-hoc ones (a post-hoc strategy may be made from one found here). Modules named in
    :data:`MACHINERY` or starting with ``_`` are skipped. Returns what it registered, in that order.

    Raises:
        StrategyError: as :func:`register`, for a module's entry.
    """
    import importlib
    import pkgutil

    found: list[Strategy] = []
    for info in sorted(pkgutil.iter_modules([str(path)]), key=lambda m: m.name):
        if info.name in MACHINERY or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        entries = getattr(module, "STRATEGIES", None) or (
            (module.STRATEGY,) if getattr(module, "STRATEGY", None) is not None else ())
        found += [e for e in entries if e.name not in _REGISTRY and e not in found]
    ordered = sorted(found, key=lambda e: e.kind == "posthoc")  # stable: module order within each kind
    for entry in ordered:
        register(entry)
    return ordered


for _s in BUILTIN:
    register(_s)
del _s
discover(__import__("pathlib").Path(__file__).parent, __package__)
