"""``gapstream batch INPUTS... --out DIR``: its options, and the run from arguments to exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import GapstreamError

log = logging.getLogger("gapstream.batch")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively for videos) or quoted globs")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: DIR/<file>/frames.jsonl, events.jsonl [, annotated.mp4], "
                        "and DIR/manifest.json (what is done, for re-runs)")
    p.add_argument("--video", action="store_true", help="also write each file's annotated video")
    p.add_argument("--workers", type=int, metavar="N",
                   help="pipelines in parallel on this machine (default: cores / 2, printed)")
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run one Ray task per file on a Ray cluster: 'auto' (default: the cluster "
                        "of this machine or of `ray job submit`), 'local' (start one here), or HOST:PORT")
    p.add_argument("--cpus-per-file", type=float, default=2, metavar="N",
                   help="Ray CPUs reserved per file (default 2: decoding and inference)")
    p.add_argument("--retry-failed", action="store_true",
                   help="process again the files that failed in an earlier run into DIR")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="tries per file when its worker is killed mid-file (default 3)")
    p.add_argument("--config", metavar="YAML", help="pipeline config (e.g. configs/offline-batch.yaml)")
    p.add_argument("--model", metavar="TFLITE", help="model file (default: the shipped int8 model)")
    p.add_argument("--batch", type=int, metavar="N", help="inference batch size")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="box threshold as a fraction of the CAM maximum (default: the model's own)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="inference threads per pipeline (default: the cores shared among the workers)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _check(args: argparse.Namespace) -> None:
    for name, value, low in (("--workers", args.workers, 1), ("--max-attempts", args.max_attempts, 1)):
        if value is not None and value < low:
            raise GapstreamError(f"{name} must be >= {low}")
    if args.cpus_per_file <= 0:
        raise GapstreamError("--cpus-per-file must be > 0")
    if args.ray and args.workers:
        raise GapstreamError("--workers is for the local pool; with --ray, Ray places the files "
                             "(see --cpus-per-file)")


def main(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..cli import _setup_logging
    from ..config import load_config
    from ..signals import stop_on_signals
    from .driver import BatchOptions, run_batch
    from .summary import summary

    _check(args)
    overrides = {"model.path": args.model, "infer.batch_size": args.batch, "post.threshold": args.threshold,
                 "model.num_threads": args.threads}
    cfg = load_config(args.config, {k: v for k, v in overrides.items() if v is not None})
    _setup_logging(args.log_level)
    opts = BatchOptions(inputs=args.inputs, out=Path(args.out), config=cfg, video=args.video,
                        workers=args.workers, ray=args.ray, retry_failed=args.retry_failed,
                        max_attempts=args.max_attempts, cpus_per_file=args.cpus_per_file,
                        progress=args.progress)
    # Ctrl-C and SIGTERM only set a flag: the files in flight are abandoned, the manifest keeps
    # what finished (a re-run resumes), then the run exits 130.
    with stop_on_signals() as signalled, logging_redirect_tqdm():  # log lines above the bar
        report = run_batch(opts, say=lambda s: print(f"gapstream: {s}", file=sys.stderr),
                           stop=signalled.is_set)
    print(summary(sorted(report.outcomes, key=lambda o: o.key), report.skipped, report.not_retried))
    if report.interrupted:
        raise KeyboardInterrupt
    if report.failed:
        total = len(report.outcomes) + report.skipped + len(report.not_retried)
        raise GapstreamError(f"{report.failed} of {total} files failed (listed above and in "
                             f"{opts.out / 'manifest.json'}; --retry-failed tries them again)")
    return 0
