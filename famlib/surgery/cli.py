"""``famlib revert``, ``famlib soup``, ``famlib interpolate``: weight surgery on any Hugging Face directories.

The inputs need not come from famlib: any safetensors model directory of a transformers causal LM whose
decoder layers famlib can locate (``famlib.layers.LAYER_CONTAINERS``) works. The layer split comes from
``--first``/``--last`` or from a params file (``--scale``). Base and tuned models are named options, not
positions, because swapping them silently gives a different model.

``add_subcommands(subparsers)`` registers the three commands on famlib's parser; ``main`` runs them alone
(``python -m famlib.surgery.cli ...``).
"""

from __future__ import annotations

import argparse


def _split_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("layer split (one of --first/--last or --scale)")
    g.add_argument("--first", type=int, metavar="M", help="number of leading decoder layers (first group)")
    g.add_argument("--last", type=int, metavar="N", help="number of trailing decoder layers (last group)")
    g.add_argument("--num-layers", type=int, metavar="L",
                   help="decoder layers (default: the config's num_hidden_layers; must agree with it)")
    g.add_argument("--scale", metavar="S", help="take first, last and num_layers from params/S.yaml (or a YAML path)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output model directory (written whole or not at all)")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it exists (without it, an identical earlier result is kept and "
                        "anything else refused)")
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 5GB, 500MB (default 5GB)")


def _split(args) -> dict:
    from famlib.surgery.errors import SurgeryError

    if args.scale:
        if args.first is not None or args.last is not None:
            raise SurgeryError("give either --scale or --first/--last, not both")
        from famlib.config import load_params

        params = load_params(args.scale)
        if args.num_layers is not None and args.num_layers != params.model.num_layers:
            raise SurgeryError(f"--num-layers {args.num_layers} but {params.origin} says model.num_layers: "
                               f"{params.model.num_layers}")
        return {"first": params.layers.first, "last": params.layers.last, "num_layers": params.model.num_layers}
    return {"first": args.first, "last": args.last, "num_layers": args.num_layers}


def _report(result) -> int:
    rec = result.record
    if result.status == "unchanged":
        print(f"famlib: {result.path} is already this {rec.get('operation')} of the same inputs; kept (--force rebuilds)")
    else:
        what = ", ".join(f"{i['role']}={i['path']}" for i in rec["inputs"])
        print(f"famlib: wrote {result.path} ({rec['operation']} of {what}; groups {', '.join(rec['groups'])}; "
              f"{rec['tensors']['changed']} of {rec['tensors']['total']} tensors changed; {rec['seconds']} s)")
    return 0


def cmd_revert(args) -> int:
    from famlib.surgery.driver import apply

    return _report(apply("revert", [args.tuned, args.base], args.out, groups=args.groups, overwrite=args.force,
                         max_shard_size=args.max_shard_size, **_split(args)))


def cmd_soup(args) -> int:
    from famlib.surgery.driver import apply

    split = {k: v for k, v in _split(args).items() if v is not None}
    return _report(apply("soup", args.models, args.out, weights=args.weights, overwrite=args.force,
                         max_shard_size=args.max_shard_size, **split))


def cmd_interpolate(args) -> int:
    from famlib.surgery.driver import apply

    return _report(apply("interpolate", [args.base, args.tuned], args.out, groups=args.groups, alpha=args.alpha,
                         allow_extrapolation=args.allow_extrapolation, outside=args.outside, overwrite=args.force,
                         max_shard_size=args.max_shard_size, **_split(args)))


def add_subcommands(subparsers) -> None:
    """Register ``revert``, ``soup`` and ``interpolate`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "revert", help="reset layer groups of a tuned model to the base (Train-then-Revert)",
        description="The named layer groups take the base model's weights; every other tensor (embeddings, "
                    "final norm and head included) keeps the tuned weights.")
    p.add_argument("--tuned", required=True, help="the fine-tuned model directory")
    p.add_argument("--base", required=True, help="the base model directory it was tuned from")
    p.add_argument("--groups", default=None,
                   help="comma-separated layer groups to revert: first, middle, last (default: middle, the paper's)")
    _common(p)
    _split_args(p)
    p.set_defaults(func=cmd_revert)

    p = subparsers.add_parser(
        "soup", help="average several models of one architecture (Expert Soup)",
        description="Uniform or weighted average of every tensor, accumulated in float32, written in the "
                    "models' dtype. Models are read one tensor at a time.")
    p.add_argument("models", nargs="+", help="model directories")
    p.add_argument("--weights", default=None, help="comma-separated non-negative weights, one per model (default: equal)")
    _common(p)
    _split_args(p)  # optional for a soup: only recorded
    p.set_defaults(func=cmd_soup)

    p = subparsers.add_parser(
        "interpolate", help="move layer groups a fraction alpha from the base to the tuned model (section 4.1)",
        description="theta_G = theta_G^base + alpha * (theta_G^tuned - theta_G^base) for the named groups G; "
                    "every other tensor keeps the tuned value.")
    p.add_argument("--base", required=True, help="the base model directory (alpha = 0)")
    p.add_argument("--tuned", required=True, help="the fine-tuned model directory (alpha = 1)")
    p.add_argument("--groups", required=True, help="comma-separated layer groups: first, middle, last")
    p.add_argument("--alpha", required=True, type=float, help="in [0, 1]")
    p.add_argument("--allow-extrapolation", action="store_true", help="accept alpha outside [0, 1]")
    p.add_argument("--outside", action="store_true",
                   help="move the embeddings, final norm and untied head by alpha too (with --groups "
                        "first,middle,last: whole-model interpolation, WiSE-FT)")
    _common(p)
    _split_args(p)
    p.set_defaults(func=cmd_interpolate)
