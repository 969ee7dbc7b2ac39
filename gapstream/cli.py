"""Command line: ``gapstream run|batch|train|export|eval|bench``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__
from .credentials import RedactingFormatter, redact_text
from .errors import GapstreamError

if TYPE_CHECKING:
    from .config import PipelineConfig

log = logging.getLogger("gapstream")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Masks URL passwords in every line, FFmpeg's messages and tracebacks included; the mp
    # handler below reuses this formatter for the stage processes' records.
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(processName)s: %(message)s",
                                            datefmt="%H:%M:%S"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    import multiprocessing_logging

    # One ordered log stream from every stage process.
    multiprocessing_logging.install_mp_handler()


def _stop_log_forwarding() -> None:
    """Drain the stage processes' log forwarding and go back to the plain handler. Done before the
    interpreter's exit handlers run, as multiprocessing's would otherwise close the forwarding
    queue under its receiving thread, which then prints a traceback (seen once in a full test run)."""
    import multiprocessing_logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, multiprocessing_logging.MultiProcessingHandler):
            root.removeHandler(handler)
            handler.close()  # the receiving thread ends once the queue is empty
            root.addHandler(handler.sub_handler)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="detect and localise persons in a video, stream, camera or image folder",
        description="Run the pipeline on SOURCE: a video file, rtsp:// or http:// stream, /dev/videoN, "
        "an image folder or glob, or synthetic://?width=W&height=H&frames=N[&live=1].",
    )
    p.add_argument("source", nargs="*", help="what to read (default: source.uri from --config, where "
                   "${VAR} takes a password from the environment); several, each as NAME=URI, "
                   "for several cameras in one run (or 'sources:' in the config)")
    p.add_argument("--out", metavar="VIDEO", help="write the annotated video here (e.g. out.mp4)")
    p.add_argument("--json", metavar="JSONL",
                   help="write per-frame detections as JSON Lines ('-': to stdout, the log stays on stderr)")
    p.add_argument("--show", action="store_true", help="display the annotated frames in a window")
    p.add_argument("--config", metavar="YAML", help="pipeline config (see configs/)")
    p.add_argument("--model", metavar="TFLITE", help="model file (default: the shipped int8 model)")
    p.add_argument("--batch", type=int, metavar="N", help="inference batch size")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="box threshold as a fraction of the CAM maximum (default: the model's own)")
    p.add_argument("--threads", type=int, metavar="N", help="inference threads (0 = all cores)")
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="treat the source as live (drop frames to bound latency) or offline (never drop)")
    p.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=None,
                   help="run a crop model on square crops around what moves, for far persons (default: on "
                   "with the shipped person models, off with a model of your own; --no-zoom: off)")
    p.add_argument("--zoom-model", metavar="TFLITE",
                   help="the zoom's crop model (default: the shipped crop model, "
                        "models/gapstream_zoomcrop_int8.tflite); implies --zoom")
    p.add_argument("--stats-interval", type=float, metavar="S", help="seconds between stats lines")
    p.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .signals import stop_on_signals

    # From here on a signal only sets a flag (checked once the pipeline runs), so that it can
    # never interrupt the opening of a ring or a sink halfway.
    # A signal after the run (the outputs are complete by then) is a Ctrl-C like any other: exit 130.
    with stop_on_signals() as signalled:
        _run_pipeline(args)
    if signalled.is_set():
        raise KeyboardInterrupt
    return 0


def _run_pipeline(args: argparse.Namespace) -> None:
    from .config import load_config
    from .outputs import check_outputs
    from .pipeline import Pipeline
    from .progress import Progress

    overrides = {
        "output.video": args.out, "output.json": args.json, "model.path": args.model,
        "infer.batch_size": args.batch, "post.threshold": args.threshold,
        "model.num_threads": args.threads, "source.live": args.live,
        "output.stats_interval": args.stats_interval,
        # a crop model given means the zoom is wanted, unless --no-zoom says otherwise
        "zoom.enabled": args.zoom if args.zoom is not None else (True if args.zoom_model else None),
        "zoom.model": args.zoom_model,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.show:
        overrides["output.show"] = True
    # The config file is an input too (the pipeline checks the source and the model).
    check_outputs({"--out": args.out, "--json": args.json}, [args.config] if args.config else [])
    cfg = load_config(args.config, overrides)
    _setup_logging(args.log_level or cfg.log_level)
    # Only JSON and stats wanted: decode at the model's size (each camera of several too).
    from dataclasses import replace

    from .pipeline import needs_full_frames

    direct = not needs_full_frames(cfg)
    cfg = replace(cfg, source=replace(cfg.source, decode_to_model=cfg.source.decode_to_model
                                      if cfg.source.decode_to_model is not None else direct),
                  sources=[s if s.decode_to_model is not None else replace(s, decode_to_model=direct)
                           for s in cfg.sources])
    if len(args.source) > 1 or (cfg.sources and not args.source):
        _run_cameras(args, cfg)
        return
    pipe = Pipeline(args.source[0] if args.source else None, config=cfg)
    with Progress() as progress:
        for _ in pipe.run():
            progress.update(pipe.source.frames if pipe.source and not pipe.source.live else None)
    assert pipe.stats is not None
    written = [p for p in (cfg.output.video, cfg.output.json) if p and p != "-"]
    # With --json - stdout carries only the JSON Lines.
    print(f"gapstream: {pipe.stats.summary()}" + (f"; wrote {', '.join(written)}" if written else ""),
          file=sys.stderr if cfg.output.json == "-" else sys.stdout)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from .batch import cli as batch

    help_ = "process many recorded files in parallel, on this machine or on a Ray cluster"
    p = sub.add_parser("batch", help=help_, description=help_ + "; a re-run into the same --out "
                       "skips the files already done.")
    batch.add_args(p)
    p.set_defaults(func=batch.main)


def _run_cameras(args: argparse.Namespace, cfg: PipelineConfig) -> None:
    """Several cameras in one run (gapstream/multi.py)."""
    from .multi import MultiPipeline, camera_line, parse_sources

    pipe = MultiPipeline(parse_sources(args.source, cfg.source) if args.source else None, config=cfg)
    try:
        for _ in pipe.run():
            pass
    except KeyboardInterrupt:  # stopped by a signal: still say what each camera did
        if pipe.camera_stats:
            print(f"gapstream: cameras: {camera_line(pipe.camera_stats)}", file=sys.stderr)
        raise
    assert pipe.stats is not None
    written = [p for p in (cfg.output.json, cfg.events.json) if p and p != "-"]
    # With --json - stdout carries only the JSON Lines.
    out = sys.stderr if cfg.output.json == "-" else sys.stdout
    print(f"gapstream: {pipe.stats.summary()}" + (f"; wrote {', '.join(written)}" if written else ""),
          file=out)
    print(f"gapstream: cameras: {camera_line(pipe.camera_stats)}", file=out)


def _add_model_verbs(sub: argparse._SubParsersAction) -> None:
    from .training import cli_verbs

    for name, help_, add, fn in (
        ("train", "train the MobileNet-GAP classifier (scene recipe on real footage, or INRIA layout)",
         cli_verbs.add_train_args,
         cli_verbs.train_main),
        ("export", "export float32 and int8 dual-output TFLite models", cli_verbs.add_export_args,
         cli_verbs.export_main),
        ("eval", "recall and false positives on real clips and image folders; accuracy and localisation "
         "(CorLoc, AP@0.5) on the INRIA test split",
         cli_verbs.add_eval_args, cli_verbs.eval_main),
        ("data", "rebuild the git-ignored training and validation data from dataset manifests "
         "(configs/datasets/) and git copies of their source repositories",
         cli_verbs.add_data_args, cli_verbs.data_main),
    ):
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(func=fn)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from .bench import cli as bench

    p = sub.add_parser("bench", help="fps and latency benchmark (see benchmarks/)",
                       description="End-to-end fps and latency of gapstream and the alternatives.")
    bench.add_args(p)
    p.set_defaults(func=bench.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gapstream",
        description="Find and localise persons in video with GAP class activation maps.",
    )
    parser.add_argument("--version", action="version", version=f"gapstream {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    _add_run(sub)
    _add_batch(sub)
    _add_model_verbs(sub)
    _add_bench(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry() -> None:
    """The ``gapstream`` program: :func:`main`, then exit without a late signal's traceback."""
    code = main()
    # Exiting now, with every output closed: a late signal must not turn the exit into a death
    # by signal. Only the program does this, never main(), so callers keep their handlers.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _stop_log_forwarding()  # with the signals ignored: a late one must not interrupt the wait
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    # Until `run` installs its stop flag, SIGTERM stops like Ctrl-C (exit 130); nothing is open yet.
    # The caller's handler comes back on the way out.
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the parser is built (it imports the verbs' modules)
        print("gapstream: interrupted", file=sys.stderr)
        return 130
    finally:
        if old is not None:  # None: a handler not installed from Python, which we cannot put back
            signal.signal(signal.SIGTERM, old)


def _is_image_file(arg: str) -> bool:
    from .media import IMAGE_EXTS

    return os.path.isfile(arg) and os.path.splitext(arg)[1].lower() in IMAGE_EXTS


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        hint = ""
        if args.verb == "run" and any(os.path.exists(a) or any(c in a for c in "*?[") for a in extra):
            # The shell expanded an unquoted glob into one argument per file.
            hint = " (a glob such as frames/*.png must be quoted: gapstream run 'frames/*.png')"
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if args.verb == "run" and len(args.source) > 1 and all(_is_image_file(a) for a in args.source):
        # The shell expanded an unquoted glob into one argument per image (never several cameras).
        parser.error(f"unrecognized arguments: {' '.join(args.source[1:])} (a glob such as frames/*.png "
                     "must be quoted: gapstream run 'frames/*.png')")
    try:
        if args.verb in ("train", "export", "eval"):  # run sets up logging from its config
            _setup_logging("INFO")
        return int(args.func(args) or 0)
    except GapstreamError as exc:
        print(f"gapstream: error: {redact_text(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
