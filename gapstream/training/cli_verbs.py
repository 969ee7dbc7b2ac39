"""``gapstream train|export|eval``: argparse options and entry points.

TensorFlow is imported only inside the verbs that need it (training, export, and
evaluating a Keras model); evaluating TFLite models needs only the runtime.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..credentials import redact_text
from ..errors import GapstreamError
from ..paths import MODELS_DIR, shipped_model

log = logging.getLogger("gapstream")


def _need_tf() -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise GapstreamError("training needs the train extra: pip install 'gapstream[train]'") from exc


def _quiet_tf() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ----------------------------------------------------------------------------- train


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="INRIA_ROOT",
                   help="INRIA-layout recipe: INRIA Person root (holding Train/ and Test/, or the folder "
                        "containing INRIAPerson/)")
    scenes = p.add_argument_group("scene recipe (real footage; any of these selects it)")
    scenes.add_argument("--clips", metavar="DIR",
                        help="labelled clips (labels.json); only the train split is used")
    scenes.add_argument("--inria-neg", metavar="DIR", help="person-free scenes (INRIA Train/neg)")
    scenes.add_argument("--crops", metavar="DIR",
                        help="INRIA 96x160 person crops pasted into --inria-neg scenes")
    scenes.add_argument("--external", metavar="DIR", action="append", default=[],
                        help="real photos in pos/<source>/ and neg/<source>/ (repeatable)")
    scenes.add_argument("--footage", metavar="DIR", action="append", default=[],
                        help="labelled real videos (labels.json, by eye or from gapstream.training.teacher); "
                             "their val sources are validation only (repeatable)")
    scenes.add_argument("--composites-per-scene", type=int, default=2, metavar="N",
                        help="composites (with and without persons) made from each --inria-neg scene")
    scenes.add_argument("--stride", type=int, default=16, choices=[16, 32],
                        help="conv-map stride (default 16)")
    scenes.add_argument("--pooling", default="gap", choices=["gap", "topk"],
                        help="how the score map becomes the decision (default gap)")
    scenes.add_argument("--topk", type=float, default=0.05, help="share of cells top-k pooling averages")
    scenes.add_argument("--flip", action="store_true", help="also train on mirrored images")
    scenes.add_argument("--frozen-trunk", action="store_true",
                        help="train only the dense layer (the CAM weights) on the frozen ImageNet maps")
    scenes.add_argument("--erase-twins", metavar="TEACHER_TFLITE",
                        help="add person-erased twins of the real person images, boxed by this offline "
                             "YOLOv8 TFLite detector (a training-data tool, never shipped)")
    scenes.add_argument("--scale-mix", action="store_true",
                        help="composites also with close persons cut by the frame and tiny far ones")
    scenes.add_argument("--distill", metavar="KERAS",
                        help="a trained scene model (an ensemble, say) whose probabilities are blended "
                             "into the labels (knowledge distillation)")
    scenes.add_argument("--distill-weight", type=float, default=0.5, metavar="W",
                        help="share of the teacher's probabilities in each target (default 0.5)")
    scenes.add_argument("--init", metavar="KERAS",
                        help="start from this trained scene model's weights (fine-tuning; same architecture)")
    p.add_argument("--weights", required=True, metavar="PATH|none",
                   help="local Keras backbone weights, e.g. mobilenet_5_0_224_tf_no_top.h5, or 'none' "
                   "to train from scratch (nothing is ever downloaded)")
    p.add_argument("--alpha", type=float, default=0.5, help="MobileNet width multiplier (default 0.5)")
    p.add_argument("--backbone", default="mobilenet", choices=["mobilenet", "mobilenetv2", "tiny"],
                   help="mobilenet (v1), mobilenetv2 (scene recipe only) or tiny (tests)")
    p.add_argument("--input-size", type=int, default=224, metavar="PX")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=32, metavar="N", help="training batch size (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="initial Adam learning rate (cosine decay)")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 regularisation of the dense layer")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout before the dense layer")
    p.add_argument("--val-fraction", type=float, default=0.3,
                   help="share of the balanced Train set held out for validation")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--shift", type=float, default=0.1, help="max random shift (fraction of the size)")
    p.add_argument("--shear", type=float, default=0.1, help="max random shear")
    p.add_argument("--zoom", type=float, default=0.15, help="max random zoom (+- fraction)")
    p.add_argument("--color", type=float, default=0.0, help="brightness/contrast jitter strength (0 = off)")
    p.add_argument("--out", default="runs/train", metavar="DIR",
                   help="output folder (best.keras, log.csv, train.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where decoded images are cached (default ~/.cache/gapstream)")


def train_scenes_main(args: argparse.Namespace) -> int:
    """The scene recipe: real clip frames, composites and real photos on a 256x448 canvas."""
    import numpy as np

    from .scenes import build_scene_set
    from .train_scenes import SceneTrainConfig, train_scenes

    if args.distill and not Path(args.distill).is_file():
        raise GapstreamError(f"--distill {args.distill}: no such model")
    if args.init and not Path(args.init).is_file():
        raise GapstreamError(f"--init {args.init}: no such model")
    boxer = None
    if args.erase_twins:
        if not Path(args.erase_twins).is_file():
            raise GapstreamError(f"--erase-twins {args.erase_twins}: no such model")
        from .inria import default_cache_dir
        from .teacher import YoloTeacher
        from .twins import CachedBoxer

        boxer = CachedBoxer(YoloTeacher(args.erase_twins).person_boxes,
                            Path(args.cache_dir or default_cache_dir()) / "twin-boxes.json")
    train, val = build_scene_set(args.clips, args.inria_neg, args.crops, args.external, args.seed,
                                 composites_per_scene=args.composites_per_scene, scale_mix=args.scale_mix,
                                 footage=args.footage, boxer=boxer)
    if boxer is not None:
        boxer.save()
    backbone = "mobilenetv2" if args.backbone == "mobilenetv2" else "mobilenet"
    cfg = SceneTrainConfig(weights=args.weights, out=args.out, alpha=args.alpha, backbone=backbone,
                           stride=args.stride,
                           pooling=args.pooling, topk=args.topk, epochs=args.epochs, batch=args.batch,
                           lr=args.lr, l2=args.l2, flip=args.flip, seed=args.seed, distill=args.distill,
                           distill_weight=args.distill_weight, frozen_trunk=args.frozen_trunk,
                           init=args.init)
    summary = train_scenes(cfg, train, val)
    # int8 calibration images for export, drawn from the training images
    pick = np.random.default_rng(args.seed).choice(len(train.y), min(200, len(train.y)), replace=False)
    np.save(Path(args.out) / "calib.npy", train.x[np.sort(pick)])
    print(f"model: {summary['model']} (val accuracy {summary['val_accuracy']}); "
          f"wall time {summary['wall_seconds']:.0f}s")
    return 0


def train_main(args: argparse.Namespace) -> int:
    _quiet_tf()
    _need_tf()
    if args.clips or args.external or args.inria_neg or args.footage:
        return train_scenes_main(args)
    if not args.data:
        raise GapstreamError("train needs --data INRIA_ROOT, or the scene recipe's "
                             "--clips/--external/--inria-neg")
    from .train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, weights=args.weights, alpha=args.alpha, backbone=args.backbone,
        input_size=args.input_size, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
        l2=args.l2, dropout=args.dropout, val_fraction=args.val_fraction, seed=args.seed, out=args.out,
        augment=args.augment, shift=args.shift, shear=args.shear, zoom=args.zoom, color=args.color,
        cache_dir=args.cache_dir,
    )
    summary = train(cfg)
    print(f"best model: {summary['model']} (epoch {summary['best_epoch']}, "
          f"val_accuracy {summary['best'].get('val_accuracy', float('nan')):.4f}); "
          f"wall time {summary['wall_seconds']:.0f}s")
    return 0


# ----------------------------------------------------------------------------- export


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keras", required=True, metavar="PATH", help="trained model, e.g. runs/train/best.keras")
    p.add_argument("--data", metavar="INRIA_ROOT",
                   help="INRIA Person root: training images calibrate the int8 model (required for int8)")
    p.add_argument("--out", default=str(MODELS_DIR), metavar="DIR", help="output folder (default: models/)")
    p.add_argument("--num-calib", type=int, default=200, help="calibration images for int8 (default 200)")
    p.add_argument("--quantization", nargs="+", default=["float32", "int8"], choices=["float32", "int8"])
    p.add_argument("--threshold", type=float, metavar="T",
                   help="CAM box threshold stored in the metadata (default: the paper's 0.2, until "
                        "eval --tune-threshold --write-meta tunes it)")
    p.add_argument("--calib-clips", action="append", default=[], metavar="DIR",
                   help="calibrate int8 on real frames of these labelled clips (repeatable; a folder with "
                        "labels.json, split --calib-split) at the run time's scale, instead of the "
                        "training images")
    p.add_argument("--calib-split", default="train", choices=["train", "val"],
                   help="which clips of --calib-clips (default: train; never eval)")
    p.add_argument("--calib-long-side", type=int, default=640, metavar="PX",
                   help="the run time's long side the calibration frames are scaled to (default 640)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir")


def export_main(args: argparse.Namespace) -> int:
    _quiet_tf()
    _need_tf()
    from ..cam import PAPER_THRESHOLD
    from .build import model_info
    from .export import calibration_images, export, load_keras

    model = load_keras(args.keras)
    threshold = PAPER_THRESHOLD if args.threshold is None else args.threshold
    if model.name.startswith("gapfcn_"):  # the scene recipe keeps its calibration images beside the model
        import numpy as np

        from .export import export_scene

        calib_path = Path(args.keras).with_name("calib.npy")
        if args.calib_clips:
            from .export import clip_calibration
            from .fcn import scene_model_info

            calib = clip_calibration(args.calib_clips, args.calib_split, scene_model_info(model)["input_hw"],
                                     args.calib_long_side, args.num_calib, args.seed)
            log.info("calibrating int8 on %d frames of %s clips", len(calib), args.calib_split)
        elif "int8" in args.quantization and not calib_path.is_file():
            raise GapstreamError(f"int8 export needs {calib_path} (written by gapstream train), "
                                 "or --calib-clips")
        else:
            calib = np.load(calib_path) if calib_path.is_file() else None
        for q, p in export_scene(model, args.out, calib, tuple(args.quantization), threshold).items():
            print(f"{q}: {p} ({p.stat().st_size / 1e6:.2f} MB) + {p.with_suffix('.json').name}")
        return 0
    calib = None
    if "int8" in args.quantization:
        if not args.data:
            raise GapstreamError("int8 export needs --data (training images for calibration)")
        calib = calibration_images(args.data, model_info(model)["input_size"], args.num_calib, args.seed,
                                   args.cache_dir)
        log.info("calibrating int8 on %d training images", len(calib))
    paths = export(model, args.out, calib, tuple(args.quantization), cam_threshold=threshold)
    for q, p in paths.items():
        print(f"{q}: {p} ({p.stat().st_size / 1e6:.2f} MB) + {p.with_suffix('.json').name}")
    return 0


# ----------------------------------------------------------------------------- eval


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="INRIA_ROOT", help="INRIA Person root (uses Test/)")
    p.add_argument("--clips", metavar="DIR", action="append", default=[],
                   help="real clips with per-second person labels (a folder with labels.json): "
                        "frame recall on person seconds and false positives on empty seconds, run "
                        "through the same pipeline as 'gapstream run' (repeatable: the folders are "
                        "scored, and a decision threshold tuned, as one set)")
    p.add_argument("--split", default="eval", choices=["eval", "train", "val", "all"],
                   help="which clips of --clips (default: eval)")
    p.add_argument("--images", action="append", default=[], metavar="DIR=person|no_person",
                   help="an image folder whose images all show persons, or none (repeatable)")
    p.add_argument("--config", metavar="YAML", help="pipeline config for --clips/--images (decision, boxes)")
    p.add_argument("--models", nargs="*", metavar="TFLITE",
                   help="TFLite models (default: the float32 and int8 models in models/)")
    p.add_argument("--keras", metavar="PATH", help="also evaluate this Keras model (needs TensorFlow)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="CAM box threshold, a fraction of the max (default: the first model's own)")
    p.add_argument("--batch", type=int, default=32, metavar="N", help="inference batch size (default 32)")
    p.add_argument("--threads", type=int, help="TFLite interpreter threads")
    p.add_argument("--out", metavar="DIR",
                   help="also write the table (eval.md) and all numbers (eval.json) to this folder")
    p.add_argument("--tune-threshold", action="store_true",
                   help="choose the CAM box threshold, then the box width/height factors, by CorLoc on "
                        "the validation split (with the int8 model, else the first) and evaluate with them")
    p.add_argument("--box-scale", type=float, nargs=2, metavar=("FX", "FY"),
                   help="box width and height factors about the centre (default: the first model's own)")
    p.add_argument("--tune-decision", type=float, metavar="MAX_FP",
                   help="with --clips (split train or val, never eval): each model's decision threshold on "
                        "the person probability, the smallest with at most this false-positive rate on the "
                        "clips' empty frames (e.g. 0.01); --write-meta makes it the model's default")
    p.add_argument("--write-meta", action="store_true",
                   help="store the measured metrics (or the tuned decision threshold) in the models' "
                        "sidecar JSON files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir")


def _image_folders(specs: list[str]) -> list[tuple[Path, bool]]:
    folders = []
    for spec in specs:
        folder, _, label = spec.rpartition("=")
        if label not in ("person", "no_person") or not folder:
            raise GapstreamError(f"--images {spec}: expected DIR=person or DIR=no_person")
        if not Path(folder).is_dir():
            raise GapstreamError(f"--images {folder}: no such folder")
        folders.append((Path(folder), label == "person"))
    return folders


def _write_report(out: str | None, stem: str, table: str, result: dict) -> None:
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{stem}.md").write_text(table)
        (path / f"{stem}.json").write_text(redact_text(json.dumps(result, indent=1)) + "\n")


def footage_main(args: argparse.Namespace, models: list[Path]) -> int:
    """``eval --clips/--images``: real footage through the run-time pipeline."""
    from ..config import load_config
    from .footage import evaluate_footage, render_markdown, zoom_model

    folders = _image_folders(args.images)
    tune = args.tune_decision
    if tune is not None and (not args.clips or args.split not in ("train", "val")):
        raise GapstreamError("--tune-decision needs --clips with --split val or train "
                             "(a threshold is never tuned on the eval split)")
    if tune is not None and not 0 <= tune < 1:
        raise GapstreamError("--tune-decision takes a false-positive rate between 0 and 1, e.g. 0.01")
    cfg = load_config(args.config)
    zooms = any(zoom_model(m, cfg) for m in models)
    if tune is not None and args.write_meta and zooms:
        # With the zoom on, the tuned threshold is the zoomed frames': it belongs to the crop model.
        raise GapstreamError("--write-meta with the zoom on would store the zoomed frames' threshold "
                             "as the frame model's: tune with --config configs/no-zoom.yaml; "
                             "benchmarks/operating_points.py --zoom-meta writes a crop model's "
                             "zoom_threshold")
    try:
        result = evaluate_footage(models, args.clips, args.split, folders, cfg, tune_fp=tune)
    except ValueError as exc:
        raise GapstreamError(str(exc)) from None
    table = render_markdown(result)
    print(table, end="")
    _write_report(args.out, "footage", table, result)
    if tune is not None and args.write_meta:
        from ..meta import load_meta, save_meta

        for r in result["models"].values():
            if not r["decision"]["reached"]:
                # Writing the grid's top would pass for a tuned model; the operator decides instead.
                print(f"{r['path']}: no threshold reaches {tune:g} false positives; "
                      "its metadata is left as it was")
                continue
            meta = load_meta(r["path"])
            meta.decision_threshold = float(r["decision"]["threshold"])
            save_meta(meta, r["path"])
            print(f"{r['path']}: decision threshold {meta.decision_threshold} written to its metadata")
    return 0


def eval_main(args: argparse.Namespace) -> int:
    from ..cam import PAPER_THRESHOLD
    from ..meta import load_meta
    from .evaluate import evaluate, render_markdown

    models = args.models
    if models is None:
        models = [shipped_model(q) for q in ("float32", "int8")]
        models = [m for m in models if m.is_file()]
    if not models and not args.keras:
        raise GapstreamError("nothing to evaluate: pass --models and/or --keras (models/ has no model)")
    if not (args.data or args.clips or args.images):
        raise GapstreamError("nothing to evaluate on: pass --clips DIR, --images DIR=LABEL "
                             "or --data INRIA_ROOT")
    if args.tune_decision is not None and args.data:
        raise GapstreamError("--tune-decision works with --clips only")
    if args.clips or args.images:
        footage_main(args, [Path(m) for m in models])
        if not args.data:
            return 0
    if args.keras:
        _quiet_tf()
        _need_tf()
    if args.tune_threshold:
        from .evaluate import tune_threshold

        if not models:
            raise GapstreamError("--tune-threshold needs a TFLite model (--models)")
        ref = next((m for m in models if "int8" in Path(m).name), models[0])
        from .evaluate import tune_box_scale

        threshold, sweep = tune_threshold(args.data, ref, seed=args.seed, cache_dir=args.cache_dir)
        print(f"CAM box threshold tuned on the validation split with {Path(ref).name}: {threshold} "
              "(CorLoc % " + ", ".join(f"{t}: {100 * c:.1f}" for t, c in sweep.items()) + ")")
        box_scale, scales = tune_box_scale(args.data, ref, threshold, seed=args.seed,
                                           cache_dir=args.cache_dir)
        # Then the threshold again, for the chosen box shape.
        threshold, sweep = tune_threshold(args.data, ref, seed=args.seed, cache_dir=args.cache_dir,
                                          box_scale=box_scale)
        print(f"box width/height factors: {box_scale[0]} x {box_scale[1]} (validation CorLoc "
              f"{100 * scales[box_scale]:.1f} %); threshold at that shape: {threshold} "
              f"(CorLoc {100 * sweep[threshold]:.1f} %)")
    else:  # the rule the model runs with, unless given
        meta = load_meta(models[0]) if models else None
        threshold = args.threshold if args.threshold is not None else (
            meta.cam_threshold if meta else PAPER_THRESHOLD)
        box_scale = tuple(args.box_scale) if args.box_scale else (meta.box_scale if meta else (1.0, 1.0))
    result = evaluate(args.data, list(models), args.keras, threshold, args.seed, args.batch,
                      args.threads, args.cache_dir, box_scale)
    table = redact_text(render_markdown(result))  # reports get shared: no source passwords
    print(table, end="")
    _write_report(args.out, "eval", table, result)
    if args.write_meta:
        from .export import update_metrics
        from .inria import find_root

        dataset = f"{find_root(args.data).name} Test (excess negatives dropped)"
        for m in models:
            r = result["models"].get(load_meta(m).quantization)
            if r is None:
                continue
            update_metrics(m, {
                "dataset": dataset, "n_test": r["n"],
                **{k: round(float(r[k]), 4)
                   for k in ("accuracy", "precision", "recall", "auc", "corloc", "ap50")},
                "cam_threshold": threshold, "box_scale": list(box_scale),
            }, threshold, box_scale)
    return 0


# ----------------------------------------------------------------------------- data


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifests", nargs="+", metavar="MANIFEST",
                   help="dataset manifests, e.g. configs/datasets/*.json")
    p.add_argument("--mirrors", action="append", default=[], metavar="DIR",
                   help="folder holding git copies of the source repositories (OWNER+NAME/repo or "
                        "OWNER/NAME); repeatable. Not needed when every file is already in place")
    p.add_argument("--root", default=".", metavar="DIR", help="where each manifest's dest is (default .)")
    p.add_argument("--sources", action="store_true",
                   help="only list the repositories (OWNER/NAME@COMMIT) whose files are not in place yet")


def data_main(args: argparse.Namespace) -> int:
    from .manifests import load_manifest, materialise, missing_groups

    manifests = [load_manifest(m) for m in args.manifests]  # all checked before anything is written
    if args.sources:
        for src in sorted({f"{g.source.repo}@{g.source.commit}" for m in manifests
                           for g in missing_groups(m, args.root)}):
            print(src)
        return 0
    for m in manifests:
        done = materialise(m, [Path(d) for d in args.mirrors], args.root)
        print(f"gapstream: {m.name}: {done.written} written, {done.present} already in place "
              f"({Path(args.root) / m.dest})")
    return 0
