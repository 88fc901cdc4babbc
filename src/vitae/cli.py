"""The ``vitae`` command line: it only wires configuration, data, models and training together.

    vitae train [CONFIG] [KEY=VALUE ...] --out DIR [--resume]
    vitae evaluate DIR [--samples K]
    vitae plot DIR
    vitae reproduce TARGET --scale quick|medium|paper --out DIR

Bad input ends with one line ``vitae: error: ...`` and exit status 2; a diverged run with exit
status 3 (recorded in its ``metrics.json``). An interrupt ends with one line ``vitae: interrupted
...`` and exit status 130 (SIGINT, Ctrl-C) or 143 (SIGTERM, what a cluster scheduler sends before
it kills): training keeps its last checkpoint (continue with ``--resume``), the other commands
leave what was saved as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from vitae import config as config_module
from vitae import files
from vitae.errors import DivergedError, VitaeError


def cmd_train(args) -> None:
    from vitae.training.trainer import train

    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        args.overrides.insert(0, args.config)  # `vitae train --resume --out DIR epochs=20`
        args.config = None
    if args.config is None and not args.resume and not args.overrides:
        raise VitaeError("give a config file (see configs/) or KEY=VALUE settings (on the defaults), or --resume "
                         "to continue the run in --out")
    config = None
    if args.config is not None or not args.resume:  # no file: KEY=VALUE on the defaults
        config = config_module.load(args.config, args.overrides)
    elif args.overrides:  # resume with changes to the stored config (e.g. more epochs)
        config = config_module.override(config_module.load_json(Path(args.out) / "config.json"), args.overrides)
    run = train(config, args.out, resume=args.resume, progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for all the processes
        print(f"trained: {run.path} (next: vitae evaluate {run.path}; vitae plot {run.path})")


def cmd_evaluate(args) -> None:
    from vitae.training.evaluate import evaluate

    metrics = evaluate(args.run, samples=args.samples, limit=args.limit, device=args.device, progress=not args.quiet)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(shown, indent=2))
    print(f"written: {Path(args.run) / 'metrics.json'}")


def cmd_plot(args) -> None:
    from vitae.training.plot import plot

    for path in plot(args.run, device=args.device):
        print(f"written: {path}")


def cmd_reproduce(args) -> None:
    from vitae.reproduce import reproduce

    path = reproduce(args.target, args.scale, args.out, device=args.device, celeba=args.celeba, progress=not args.quiet,
                     report_only=args.report_only)
    print(f"written: {path}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vitae", description="VITAE: disentangle appearance and perspective (Detlefsen & Hauberg 2019).")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model into a run folder",
                       description="Train the model of CONFIG (a TOML file under configs/), with KEY=VALUE overrides, into --out DIR.")
    p.add_argument("config", nargs="?", help="TOML config file (optional: without one, KEY=VALUE on the defaults)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. epochs=10 lr=1e-3 transform=affine")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test ELBO, importance-weighted log p(x) and metrics into DIR/metrics.json",
                       description="Evaluate a trained run on its test set and merge the numbers into DIR/metrics.json.")
    p.add_argument("run", help="run folder written by vitae train")
    p.add_argument("--samples", type=int, default=None, help="importance samples per image for log p(x) (default: the config's eval_samples, 1000)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot", help="write the PNG figures into DIR/figures/",
                       description="Reconstructions, prior samples, latent traversals, the appearance/perspective swap and training curves.")
    p.add_argument("run", help="run folder written by vitae train")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("reproduce", help="reproduce a result of the paper into DIR/report.md",
                       description="Train, evaluate and plot what one result of the paper needs, at a scale, and write "
                                   "DIR/report.md with our numbers beside the paper's. Re-running skips finished runs "
                                   "and resumes interrupted ones.")
    p.add_argument("target", help="table1, stability, timing, figures or all")
    p.add_argument("--scale", default="quick", help="quick (minutes), medium (about an hour on 2 CPU cores), paper "
                                                    "(the supplement's epochs), or a scale .toml file (default: quick)")
    p.add_argument("--out", required=True, help="output folder (created; or one made before at the same scale)")
    p.add_argument("--celeba", default=None, help="img_align_celeba folder for the faces experiment (default: the shipped ORL faces)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the configs', auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the runs finished so far; train and evaluate nothing (e.g. while "
                        "another process works on DIR)")
    p.set_defaults(func=cmd_reproduce)
    return top


INTERRUPTED = {
    "train": "the last checkpoint is kept (continue with --resume)",
    "evaluate": "metrics.json is as it was (evaluate again to finish)",
    "plot": "figures written so far are kept (plot again to finish)",
    "reproduce": "finished runs are kept and the interrupted one resumes (run the same command again)",
}


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that it unwinds like Ctrl-C."""


def _on_signal(signum, frame):
    # through vitae.files, so that a file being written is finished first
    files.interrupt(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored SIGINT (nohup, &) stays ignored
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args) -> int:
    for name in ("samples", "limit"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            print(f"vitae: error: --{name} must be at least 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        args.func(args)
    except DivergedError as exc:
        print(f"vitae: error: {exc}", file=sys.stderr)
        return 3
    except VitaeError as exc:
        print(f"vitae: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        print(f"vitae: interrupted ({name}); {INTERRUPTED[args.command]}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
