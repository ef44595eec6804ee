"""The ``famlib`` command: ``paper``, ``plan``, ``run``, ``status``, ``data``, ``base``, ``train``, ``strategies``,
``memory``, ``doctor``, ``lesson``, ``revert``, ``soup``, ``interpolate``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from famlib.config import SCALES, load_params
from famlib.convert import parse_value
from famlib.errors import ConfigError, FamlibError


def _params(args):
    overrides, origins = _overrides(args)
    if overrides:
        # Notebooks load their parameters by scale; the overrides reach every kernel this command starts
        # through the environment (famlib.notebook.setup reads FAMLIB_OVERRIDES). The values are already
        # parsed (2e-3 is the float 0.002), so JSON carries them as the types the parameters check.
        params = load_params(args.scale, overrides, origins)  # a bad value is refused before any kernel starts
        for key, value in overrides.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):  # e.g. an explicit !!binary or !!set tag
                raise ConfigError(origins[key], key, value, "a number, string, true/false, null, list or mapping")
        os.environ["FAMLIB_OVERRIDES"] = json.dumps(overrides)
        return params
    return load_params(args.scale)


def _overrides(args) -> tuple[dict, dict]:
    """``--set KEY=VALUE`` arguments -> ``({key: value}, {key: "--set KEY=VALUE"})``.

    The value is read by the loader of the parameter files (famlib.convert.ParamsLoader), so ``2e-3`` is a
    number here as there; the second mapping lets every error name the ``--set`` argument it came from.
    """
    overrides, origins = {}, {}
    for item in getattr(args, "set", None) or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"famlib: --set takes KEY=VALUE (dotted key, YAML value), got {item!r}")
        key = key.strip()
        origins[key] = f"--set {item}"
        overrides[key] = parse_value(raw, origins[key], key)
    return overrides, origins


def cmd_paper(args) -> int:
    from famlib.pipeline import main_run

    return main_run(_params(args), jobs=args.jobs, only=None, force=args.force)


def cmd_run(args) -> int:
    from famlib.pipeline import main_run

    return main_run(_params(args), jobs=1, only=args.step, force=args.force)


def cmd_plan(args) -> int:
    from famlib.pipeline import plan_lines

    try:
        sets = "".join(f" --set {shlex.quote(item)}" for item in getattr(args, "set", None) or [])
        for line in plan_lines(_params(args), args.format, args.level, command_suffix=sets):
            print(line, flush=True)
    except BrokenPipeError:  # `famlib plan | head` is fine
        sys.stderr.close()
    return 0


def cmd_status(args) -> int:
    from famlib.pipeline import main_status

    return main_status(_params(args))


def cmd_data(args) -> int:
    import time

    from famlib.data import build_corpus
    from famlib.notebook import offline_env

    params = _params(args)
    if params.data.source == "offline":
        offline_env()
    t = time.time()
    corpus = build_corpus(params)
    stats = corpus.stats()
    table = stats.pivot_table(index=["family", "role", "language"], columns="split", values="bytes",
                              aggfunc="sum", fill_value=0)
    print((table / 1e6).round(2).to_string())
    print(f"corpus ready in {time.time() - t:.1f} s ({corpus.cache_dir})")
    if params.data.source == "offline" and params.evaluation.english_task:  # the English row's archive, too
        from famlib.errors import DataError
        from famlib.evaluate.bigbench import tasks_root

        try:
            print(f"BIG-bench task files ready: {tasks_root(corpus.cache_dir)}")
        except DataError as exc:  # the suite skips that one row with the same reason; the corpus is whole
            print(f"warning: BIG-bench task files not available, so the suite will skip its English comprehension "
                  f"row ({params.evaluation.english_task}): {exc}", file=sys.stderr)
    return 0


def cmd_base(args) -> int:
    import time

    from famlib.base import ensure_base
    from famlib.notebook import setup

    overrides, origins = _overrides(args)
    params = setup(args.scale, overrides, origins)
    t = time.time()
    path = ensure_base(params)
    print(f"base model ready in {time.time() - t:.0f} s: {path}")
    return 0


def cmd_train(args) -> int:
    """One training job (what notebook 03's training cell runs), without a notebook: the multi-GPU entry point.

    ``accelerate launch --num_processes N -m famlib.cli train ...`` runs it in N processes: the training is
    split across them, and data, base, model directory and provenance are written once, by the main process
    (famlib.distributed). Notebook step 03 of the same job afterwards finds the model built and only plots.
    """
    import time

    from famlib.distributed import launched_processes, process_state
    from famlib.notebook import setup
    from famlib.strategies.training import train_strategy

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local > 1:  # the cores shared among this machine's processes
        from famlib.threads import available_cores, env_threads

        os.environ["FAMLIB_THREADS"] = str(max(1, (env_threads() or available_cores()) // local))
    overrides, origins = _overrides(args)
    params = setup(args.scale, overrides, origins, strategy=args.strategy)
    t = time.time()
    path = train_strategy(params, args.strategy, args.family, progress=not args.no_progress)
    if launched_processes() == 1 or process_state().is_main_process:
        print(f"{args.strategy} ({args.family or 'all'}) trained in {time.time() - t:.0f} s on "
              f"{launched_processes()} process(es): {path}")
    return 0


def cmd_lesson(args) -> int:
    import time

    from famlib import lesson

    if args.action == "build":
        print(f"student version written: {lesson.build_student()}")
        return 0
    s = lesson.settings(args.preset)
    t = time.time()
    if args.action == "prepare":
        lesson.prepare(s, exercises=not args.no_exercises)
        print(f"lesson prepared in {time.time() - t:.0f} s ({lesson.lesson_dir(s.scale)})")
        return 0
    out = lesson.run_notebook(args.version, args.preset)
    print(f"lesson ran in {time.time() - t:.0f} s: {out}")
    return 0


def cmd_strategies(args) -> int:
    from famlib.strategies.registry import rows, table_text

    entries = rows()
    if args.scale is not None:  # only what that scale runs (its params' `strategies:`, or the defaults)
        # load_params, not _params: this starts no kernel, so the overrides must not go into the environment
        # (they would reach every notebook this process starts later, as they did in the test suite)
        chosen = set(load_params(args.scale, *_overrides(args)).strategy_names)
        entries = [r for r in entries if r["name"] in chosen]
    if args.format == "json":
        for r in entries:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(table_text(entries))
    return 0


def cmd_memory(args) -> int:
    from famlib import memory

    # load_params, not _params: this starts no kernel (see cmd_strategies)
    params = load_params(args.scale, *_overrides(args))
    rows, text = memory.table(params)
    if args.format == "json":
        for r in rows:
            print(json.dumps({"strategy": r.strategy, "parts": r.parts, "total": r.total, "with_margin": r.with_margin,
                              "fits": {g: r.fits(c) for g, c in memory.GPUS.items()}, "settings": r.settings}))
        return 0
    print(text)
    if args.variants:
        print("\nwith margin, and the smallest card each fits, under other settings:\n")
        print(memory.variants_table(params))
    return 0


def cmd_doctor(args) -> int:
    from famlib import doctor

    # load_params, not _params: this starts no kernel (see cmd_strategies)
    params = load_params(args.scale, *_overrides(args))
    checks = doctor.run_checks(params, jobs=args.jobs)
    if args.format == "json":
        for c in checks:
            print(json.dumps(c.to_dict(), ensure_ascii=False))
    else:
        print(doctor.format_text(params, checks))
    return 1 if doctor.failed(checks) else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="famlib", description="Regenerate the paper's experiments at a chosen scale.")
    sub = ap.add_subparsers(dest="command", required=True)

    def scaled(name, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--scale", default="tiny", help=f"one of {', '.join(SCALES)}, or a params YAML path")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a parameter, e.g. --set training.family.lr=2e-4 (repeatable)")
        return p

    p = scaled("paper", "execute every notebook of the scale (unchanged steps are skipped)")
    p.add_argument("--jobs", type=int, default=1, help="independent steps to run side by side")
    p.add_argument("--force", action="store_true", help="re-run steps even when unchanged")
    p.set_defaults(func=cmd_paper)

    p = scaled("run", "execute one step (or several) of `famlib plan`, e.g. from a cluster job")
    p.add_argument("--step", action="append", required=True, help="step id from `famlib plan` (repeatable)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_run)

    p = scaled("plan", "print the job graph: index, step, dependencies, level, parameters, command")
    p.add_argument("--format", choices=("tsv", "json", "commands"), default="tsv",
                   help="commands: one shell command per line (GNU parallel, SLURM arrays)")
    p.add_argument("--level", type=int, help="only the steps of this dependency level (0 = no dependencies)")
    p.set_defaults(func=cmd_plan)

    p = scaled("status", "show which steps of a scale are done, stale, failed or pending, and how long each took")
    p.set_defaults(func=cmd_status)

    p = scaled("data", "build the corpus of a scale and print its size per language and split")
    p.set_defaults(func=cmd_data)

    p = scaled("base", "build or load the base model of a scale into runs/<scale>/models/base")
    p.set_defaults(func=cmd_base)

    p = scaled("train", "train one (strategy, family) job outside the notebooks; under `accelerate launch` on "
                        "every process, with one writer (see the README's \"On a GPU box\")")
    p.add_argument("--strategy", required=True, help="a trained strategy of `famlib strategies`")
    p.add_argument("--family", help="a family of the scale (per-family strategies); omit for dense")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lesson", help="the lesson on forgetting: prepare it, run it headless, or build the student version")
    p.add_argument("action", choices=("prepare", "run", "build"),
                   help="prepare: model, data and the exercises' runs (the day before); run: execute the notebook; "
                        "build: write the student version from the instructor's")
    p.add_argument("--preset", default="class", help="class (default), preview (a few minutes) or smoke (the tests' model)")
    p.add_argument("--version", choices=("student", "instructor"), default="student", help="which notebook `run` executes")
    p.add_argument("--no-exercises", action="store_true", help="prepare: skip the exercises' trainings")
    p.set_defaults(func=cmd_lesson)

    p = scaled("strategies", "list the registered strategies: label, per family or all, what trains, regulariser, data")
    p.set_defaults(scale=None)  # without --scale: every registered strategy
    p.add_argument("--format", choices=("table", "json"), default="table", help="json: one object per line")
    p.set_defaults(func=cmd_strategies)

    p = scaled("memory", "estimate one training process's accelerator memory per strategy (weights, gradients, "
                         "optimiser, anchors, activations, logits) and which GPUs it fits")
    p.add_argument("--variants", action="store_true",
                   help="also the totals with fp32 master weights, the plain loss, no gradient checkpointing")
    p.add_argument("--format", choices=("table", "json"), default="table", help="json: one object per strategy")
    p.set_defaults(func=cmd_memory)

    p = scaled("doctor", "preflight: packages, hub access (or registry sources), GPUs against the memory estimate, "
                         "free disk, lm-eval tasks; exits 1 if the run cannot succeed here")
    p.add_argument("--jobs", type=int, default=1,
                   help="trainings that will run side by side (their checkpoints share the disk)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json: one object per check")
    p.set_defaults(func=cmd_doctor)

    from famlib.surgery.cli import add_subcommands as add_surgery_subcommands

    add_surgery_subcommands(sub)  # famlib revert | soup | interpolate
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FamlibError as exc:
        print(f"famlib: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
