"""The ``vitae`` command line: it only wires configuration, data, models and training together.

    vitae train [CONFIG] [KEY=VALUE ...] --out DIR [--resume]
    vitae evaluate DIR [--samples K] [--out DIR2]
    vitae plot DIR [--out DIR2]
    vitae explore DIR [--host H] [--port P]
    vitae reproduce TARGET --scale quick|medium|long|paper --out DIR
    vitae config show [CONFIG] [KEY=VALUE ...]

Bad input ends with one line ``vitae: error: ...`` and exit status 2; a diverged run with exit
status 3 (recorded in its ``metrics.json``). An interrupt ends with one line ``vitae: interrupted
...`` and exit status 130 (SIGINT, Ctrl-C) or 143 (SIGTERM, what a cluster scheduler sends before
it kills): training keeps its last checkpoint (continue with ``--resume``), the other commands
leave what was saved as it was. Wherever a run folder DIR is taken, ``pretrained:NAME`` names a
model shipped in the package (``vitae.pretrained``); it is read-only, so evaluate and plot need
``--out`` for it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tomllib
from importlib import resources
from pathlib import Path

from vitae import config as config_module
from vitae import config_help, files
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


def _out_folder(args, what: str) -> Path | None:
    """``--out``, required for a shipped model (the package is not written to)."""
    from vitae.pretrained import is_pretrained

    if args.out is None and is_pretrained(args.run):
        raise VitaeError(f"{args.run} is a model shipped inside the package, which is not written to; give "
                         f"--out DIR to write its {what} there")
    return None if args.out is None else Path(args.out)


def cmd_evaluate(args) -> None:
    from vitae.pretrained import load_run
    from vitae.training import lock
    from vitae.training.evaluate import evaluate, evaluate_model
    from vitae.training.trainer import Run

    out = _out_folder(args, "metrics.json")
    if out is None:
        metrics = evaluate(args.run, samples=args.samples, limit=args.limit, device=args.device, progress=not args.quiet)
        out = Path(args.run)
    else:
        with lock.exclusive(out, create=True):
            config, model, state, _ = load_run(args.run, args.device)
            metrics = evaluate_model(config, model, state, samples=args.samples, limit=args.limit, progress=not args.quiet)
            Run(out).write_metrics(metrics)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(shown, indent=2))
    print(f"written: {out / 'metrics.json'}")


def cmd_plot(args) -> None:
    from vitae.pretrained import load_run
    from vitae.training import lock
    from vitae.training.plot import plot_model
    from vitae.training.trainer import Run

    out = _out_folder(args, "figures")
    if out is None:
        run = Run(Path(args.run))
        run.require()
        out, held = run.figures, run.path
    else:
        held = out
    with lock.exclusive(held, create=held == out):
        config, model, state, log = load_run(args.run, args.device)
        for path in plot_model(config, model, state, out, log):
            print(f"written: {path}")


def cmd_explore(args) -> None:
    from vitae.explore.explorer import for_run
    from vitae.explore.server import LOCAL_HOSTS, make_server, url
    from vitae.pretrained import load_run

    config, model, _, _ = load_run(args.run, args.device)
    server = make_server(for_run(config, model, name=str(args.run)), args.host, args.port)
    if args.host not in LOCAL_HOSTS:
        print(f"vitae: warning: serving on {args.host}: anyone who can reach this machine can use the explorer "
              "(it has no password)", file=sys.stderr)
    print(f"vitae explore: {url(server)} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def cmd_reproduce(args) -> None:
    from vitae.reproduce import reproduce

    path = reproduce(args.target, args.scale, args.out, device=args.device, celeba=args.celeba, progress=not args.quiet,
                     report_only=args.report_only)
    print(f"written: {path}")


def cmd_config_show(args) -> None:
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        args.overrides.insert(0, args.config)  # `vitae config show epochs=20`: the defaults, changed
        args.config = None
    if args.config is not None and Path(args.config).is_dir():  # a run folder
        config = config_module.override(config_module.load_json(Path(args.config) / "config.json"), args.overrides)
    else:
        config = config_module.load(args.config, args.overrides)
    shown = shlex.join(["vitae", "config", "show", *([args.config] if args.config else []), *args.overrides])
    print(config_help.to_toml(config, f"{shown}\nthe resolved configuration; `vitae train THIS.toml --out DIR` trains it"), end="")


def scales_text() -> str:
    """The shipped scales, each with the description (and duration) its own file gives."""
    folder = resources.files("vitae") / "reproduce" / "scales"
    described = [f"{name} ({tomllib.loads((folder / f'{name}.toml').read_text(encoding='utf-8'))['description']})"
                 for name in ("quick", "medium", "long", "paper")]
    return ", ".join(described)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vitae", description="VITAE: disentangle appearance and perspective (Detlefsen & Hauberg 2019).")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model into a run folder", epilog=config_help.keys_text(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train the model of CONFIG (a TOML file under configs/), with KEY=VALUE overrides, into --out DIR.")
    p.add_argument("config", nargs="?", help="TOML config file (optional: without one, KEY=VALUE on the defaults)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. epochs=10 lr=1e-3 transform=affine")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test ELBO, importance-weighted log p(x) and metrics into DIR/metrics.json",
                       description="Evaluate a trained run on its test set and merge the numbers into DIR/metrics.json.")
    p.add_argument("run", help="run folder written by vitae train, or pretrained:NAME")
    p.add_argument("--samples", type=int, default=None, help="importance samples per image for log p(x) (default: the config's eval_samples: 1000 in "
                                                                    "configs/, 250 in the demo's; time grows in proportion)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None, help="write metrics.json into this folder instead (needed for pretrained:NAME)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot", help="write the PNG figures into DIR/figures/",
                       description="Reconstructions, prior samples, latent traversals, the appearance/perspective swap and training curves.")
    p.add_argument("run", help="run folder written by vitae train, or pretrained:NAME")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    p.add_argument("--out", default=None, help="write the figures into this folder instead of DIR/figures (needed for pretrained:NAME)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("explore", help="a local web page to play with a trained model's latents",
                       description="Serve a page with sliders for every latent, the decoded image (for VITAE its "
                                   "canonical image and warp), test images and uploads, swaps and factor traversals. "
                                   "Writes nothing.")
    p.add_argument("run", help="run folder written by vitae train, or pretrained:NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's; cpu for pretrained)")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("reproduce", help="reproduce a result of the paper into DIR/report.md",
                       description="Train, evaluate and plot what one result of the paper needs, at a scale, and write "
                                   "DIR/report.md with our numbers beside the paper's. Re-running skips finished runs "
                                   "and resumes interrupted ones.")
    p.add_argument("target", help="table1, stability, timing, figures or all")
    p.add_argument("--scale", default="quick", help=f"{scales_text()}, or a scale .toml file (default: quick)")
    p.add_argument("--out", required=True, help="output folder (created; or one made before at the same scale)")
    p.add_argument("--celeba", default=None, help="img_align_celeba folder for the faces experiment (default: the shipped ORL faces)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the configs', auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the runs finished so far; train and evaluate nothing (e.g. while "
                        "another process works on DIR)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("config", help="show a configuration resolved", description="Look at configurations without training.")
    show = p.add_subparsers(dest="action", required=True).add_parser(
        "show", help="print CONFIG with its KEY=VALUE overrides as TOML", description="Print the configuration that "
        "`vitae train CONFIG KEY=VALUE ...` would train, every key with its value and meaning, as TOML that vitae train reads.")
    show.add_argument("config", nargs="?", help="TOML config file or run folder (default: the built-in defaults)")
    show.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. epochs=10 lr=1e-3")
    show.set_defaults(func=cmd_config_show)
    return top


INTERRUPTED = {
    "train": "the last checkpoint is kept (continue with --resume)",
    "evaluate": "metrics.json is as it was (evaluate again to finish)",
    "plot": "figures written so far are kept (plot again to finish)",
    "explore": "the explorer has stopped (it writes nothing)",
    "reproduce": "finished runs are kept and the interrupted one resumes (run the same command again)",
    "config": "nothing was written",
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
