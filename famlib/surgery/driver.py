"""Run a registered surgery method on model directories (or state dicts in memory).

``apply`` checks everything it can before reading a weight (options, architecture, tokenizer, tensor
names, shapes, dtypes, layer split), then streams: for each output tensor the method reads the inputs'
copies it needs, one at a time, and the result goes straight into the output file. Peak memory is a
few tensors, whatever the number of inputs. The output is a normal model directory (weights, config,
generation config, tokenizer files of the reference input) plus ``famlib_surgery.json``.

The reference input, whose config and tokenizer are copied, is the tuned model for revert and
interpolate (the result is that model with some groups changed) and the first model for a soup.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from famlib.io import atomic_write_json, package_versions, sha256_file, sha256_json
from famlib.layers import layer_groups
from famlib.surgery import checks
from famlib.surgery.base import SurgeryMethod
from famlib.surgery.errors import SurgeryError
from famlib.surgery.io import (DEFAULT_MAX_SHARD_BYTES, RECORD_NAME, ModelDir, StateDictSource,
                               TensorSource, copy_side_files, parse_size, write_safetensors)
from famlib.surgery.registry import get_method

if TYPE_CHECKING:
    import torch

RECORD_FORMAT = 1  # bump when the same inputs and options would give different weights


@dataclass(frozen=True)
class SurgeryResult:
    """What :func:`apply` did: ``status`` is ``written`` or ``unchanged`` (same inputs and options as before)."""

    path: Path
    status: str
    record: dict


def _reference(method: SurgeryMethod, roles: Sequence[str]) -> int:
    return roles.index(method.reference_role) if method.reference_role in roles else 0


def _prepare(method: SurgeryMethod, sources: Sequence[TensorSource], opts: dict, num_layers, first, last,
             check_files: bool):
    """Every guard clause; returns roles, plan, split (or None) and the group of each tensor."""
    roles = method.role_names(len(sources))
    checks.check_architecture(sources, roles)
    if check_files:
        checks.check_tokenizers(sources, roles)
    plan = checks.check_tensors(sources, roles)
    ref = _reference(method, roles)
    split, groups = None, {}
    if method.needs_split or first is not None or last is not None:
        split = checks.resolve_split(sources[ref], roles[ref], num_layers, first, last, method.name)
        groups = checks.tensor_groups(plan, split, sources[ref], roles[ref])
    return roles, plan, split, groups


def _stream(method: SurgeryMethod, sources: Sequence[TensorSource], plan, groups,
            opts) -> Iterator[tuple[str, "torch.Tensor"]]:
    for name, _ in plan:
        def load(i: int, _name: str = name) -> "torch.Tensor":
            return sources[i].get(_name)

        yield name, method.tensor(name, groups.get(name), load, opts)


def apply_state_dicts(method: str, state_dicts: Sequence[Mapping[str, "torch.Tensor"]], *,
                      config: Optional[Mapping[str, Any]] = None, num_layers: Optional[int] = None,
                      first: Optional[int] = None, last: Optional[int] = None,
                      **options: Any) -> dict[str, "torch.Tensor"]:
    """The same operation on state dicts in memory (e.g. ``model.state_dict()``), with the same checks.

    Args:
        method: ``revert``, ``soup`` or ``interpolate``.
        state_dicts: in the method's role order (revert: tuned, base; interpolate: base, tuned; soup: models).
        config: the models' config as a dict (for the depth and tying); may be omitted if ``num_layers`` is given.
        num_layers, first, last: the layer split (not needed for a soup).
        **options: the method's options (``groups``, ``weights``, ``alpha``, ``allow_extrapolation``, ``outside``).

    Returns:
        ``{name: tensor}``; unchanged tensors are the inputs' own tensors, not copies.

    Raises:
        SurgeryError: as :func:`apply`.
    """
    m = get_method(method)
    opts = m.options(len(state_dicts), **options)
    cfg = dict(config or {})
    sources = [StateDictSource(sd, cfg, label=f"<state dict {i + 1}>") for i, sd in enumerate(state_dicts)]
    _, plan, _, groups = _prepare(m, sources, opts, num_layers, first, last, check_files=False)
    return dict(_stream(m, sources, plan, groups, opts))


def _versions() -> dict[str, str]:
    return package_versions(("famlib", "torch", "safetensors", "transformers"))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def apply(method: str, inputs: Sequence[str | Path], out: str | Path, *, num_layers: Optional[int] = None,
          first: Optional[int] = None, last: Optional[int] = None, overwrite: bool = False,
          max_shard_size: str | int = DEFAULT_MAX_SHARD_BYTES, extra: Optional[Mapping[str, Any]] = None,
          **options: Any) -> SurgeryResult:
    """Run a registered method on model directories and write a new model directory.

    Args:
        method: a name of :data:`famlib.surgery.registry.METHODS` (``revert``, ``soup``, ``interpolate``).
        inputs: model directories in the method's role order (revert: tuned, base; interpolate: base, tuned).
        out: the output directory; written whole or not at all.
        num_layers: decoder layers; defaults to the config's ``num_hidden_layers`` (must agree if given).
        first, last: the layer split m and n (needed by revert and interpolate).
        overwrite: replace an existing ``out``. Without it, an ``out`` made by the same operation on the
            same inputs (same sha256) is kept as it is (status ``unchanged``), any other is refused.
        max_shard_size: bytes or ``'5GB'``; one ``model.safetensors`` when the model fits.
        extra: more fields for the record (e.g. the model id and strategy).
        **options: the method's options (``groups``, ``weights``, ``alpha``, ``allow_extrapolation``, ``outside``).

    Returns:
        A :class:`SurgeryResult`.

    Raises:
        SurgeryError: any refusal (unknown method or option, different architectures, tokenizers, tensor
            names, shapes or dtypes, a layer split that does not fit, bad alpha or weights, ``out`` is an
            input or exists).
    """
    started = time.perf_counter()
    m = get_method(method)
    opts = m.options(len(inputs), **options)
    out = Path(out)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if _same_path(p, out):
            raise SurgeryError(f"the output directory {out} is also an input; write to a new directory")
    sources = [ModelDir(p) for p in paths]
    roles, plan, split, groups = _prepare(m, sources, opts, num_layers, first, last, check_files=True)
    ref = _reference(m, roles)
    inputs_record = [{"role": r, "path": str(s.path.resolve()), "weights_sha256": s.weight_digests(),
                      "tokenizer_sha256": s.tokenizer_fingerprint()} for r, s in zip(roles, sources)]
    split_record = None
    if split is not None:
        L, m_first, n_last = split
        split_record = {"num_layers": L, "first": m_first, "last": n_last,
                        "layers": {g: list(r) for g, r in layer_groups(L, m_first, n_last).items()}}
    key = sha256_json({"format": RECORD_FORMAT, "operation": m.name, "options": opts, "layer_split": split_record,
                       "inputs": [{k: v for k, v in i.items() if k != "path"} for i in inputs_record]})
    if out.exists() and any(out.iterdir()):
        previous = _read_record(out)
        if previous.get("key") == key and not overwrite:
            return SurgeryResult(out, "unchanged", previous)
        if not overwrite:
            what = (f"made by {previous.get('operation')} on other inputs or options" if previous
                    else "not made by famlib surgery")
            raise SurgeryError(f"{out} exists ({what}); pass overwrite=True (--force) to replace it, "
                               "or choose another --out")

    from famlib.checkpoint import atomic_directory

    changed = m.changed_groups(opts)
    with atomic_directory(out) as tmp:
        files = write_safetensors(tmp, plan, _stream(m, sources, plan, groups, opts), parse_size(max_shard_size))
        copied = copy_side_files(sources[ref].path, tmp)
        record = {
            "format": RECORD_FORMAT,
            "operation": m.name,
            "summary": m.summary,
            "key": key,
            "inputs": inputs_record,
            "reference": roles[ref],
            "groups": list(changed),
            "weights": opts.get("weights"),
            "alpha": opts.get("alpha"),
            "options": opts,
            "layer_split": split_record,
            "tie_word_embeddings": sources[ref].tied,
            "tensors": {"total": len(plan),
                        "changed": sum(1 for n, _ in plan if not m.needs_split or groups.get(n) in changed)},
            "copied_files": copied,
            "output_sha256": {f.name: sha256_file(f) for f in files},
            "famlib_version": _versions().get("famlib", "unknown"),
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - started, 2),
            **dict(extra or {}),
        }
        atomic_write_json(tmp / RECORD_NAME, record)
    return SurgeryResult(out, "written", record)


def _read_record(path: Path) -> dict:
    try:
        return json.loads((Path(path) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------------------------------
# One function per operation (the names the paper uses)
# ----------------------------------------------------------------------------------------------------
def revert(tuned: str | Path, base: str | Path, out: str | Path, *, groups: Any = None,
           first: Optional[int] = None, last: Optional[int] = None, num_layers: Optional[int] = None,
           **kwargs: Any) -> Path:
    """Reset the named layer groups of ``tuned`` to ``base``; everything else (outside too) stays tuned.

    Args:
        tuned, base: model directories; out: the new model directory.
        groups: layer groups to revert (default the paper's Train-then-Revert group, ``middle``).
        first, last, num_layers: the layer split (num_layers defaults to the config's).
        **kwargs: ``overwrite``, ``max_shard_size``, ``extra`` of :func:`apply`.

    Returns:
        ``out``. Raises SurgeryError as :func:`apply`.
    """
    return apply("revert", [tuned, base], out, groups=groups, first=first, last=last, num_layers=num_layers,
                 **kwargs).path


def soup(models: Sequence[str | Path], out: str | Path, *, weights: Optional[Sequence[float]] = None,
         **kwargs: Any) -> Path:
    """Average every tensor of ``models`` (uniform, or weighted by ``weights``) into ``out``.

    Accumulated in float32 and written in the inputs' dtype; see :mod:`famlib.surgery.soup`.

    Returns:
        ``out``. Raises SurgeryError as :func:`apply` (weights: one per model, non-negative, positive total).
    """
    return apply("soup", list(models), out, weights=weights, **kwargs).path


def interpolate(base: str | Path, tuned: str | Path, out: str | Path, *, groups: Any, alpha: float,
                first: Optional[int] = None, last: Optional[int] = None, num_layers: Optional[int] = None,
                allow_extrapolation: bool = False, outside: bool = False, **kwargs: Any) -> Path:
    """``theta_G = theta_G^0 + alpha (theta_G^tuned - theta_G^0)`` for the groups G, the rest at tuned values.

    Args:
        base, tuned: model directories; out: the new model directory.
        groups: one or more of ``first``, ``middle``, ``last`` (paper section 4.1 moves one at a time).
        alpha: in [0, 1] (0 = base group, 1 = tuned group); outside only with ``allow_extrapolation``.
        first, last, num_layers: the layer split.
        outside: move the embeddings, final norm and untied head by alpha too (with every layer group:
            whole-model interpolation, WiSE-FT).

    Returns:
        ``out``. Raises SurgeryError as :func:`apply`.
    """
    return apply("interpolate", [base, tuned], out, groups=groups, alpha=alpha,
                 allow_extrapolation=allow_extrapolation, outside=outside, first=first, last=last,
                 num_layers=num_layers, **kwargs).path
