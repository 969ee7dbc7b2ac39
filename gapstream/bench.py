"""``gapstream bench``: end-to-end fps, latency, CPU and memory of gapstream and the alternatives.

Every measured method runs in a fresh subprocess (``python gapstream/bench.py --worker``) so that
CPU time and peak memory belong to that method alone:

* ``decode``    raw PyAV decode of the clip to RGB arrays: the ceiling no pipeline can beat;
* ``gapstream`` the multi-process pipeline (int8 / float model, batch 1/4/8), JSONL sink, and
  one row with the annotated video sink (blend + draw + H.264 encode);
* ``reference`` the naive single-process approach of the original project: Keras
  ``model.predict`` per frame, a Python loop over the channels for the CAM, cubic resize of
  the CAM to the frame, threshold + connected components, blend (needs TensorFlow);
* ``hog``       OpenCV's HOG people detector (``detectMultiScale``) on every frame (OpenCV 4:
  gapstream pins opencv-python-headless<5, which still has HOGDescriptor);
* ``live``      the pipeline on a paced synthetic 30 fps camera: capture-to-sink latency
  without the queueing of an offline file;
* single-core   the pipeline pinned to one core (``taskset -c 0``) with one inference thread.

CPU usage is user + system CPU seconds of the whole process tree over the wall time of the
measured run (100% = one core busy); peak memory is the largest sum of the tree's PSS
(proportional set size: shared memory counted once), sampled every 0.1 s by the parent.
A separate single-process stage profile times decode, resize, inference, CAM, blend and
encode per frame so that the bottleneck is visible.

Heavy imports are lazy: this module imports only the standard library at load time so that
it can also run as a worker script under another interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
WORK_DIR = ROOT / "out" / "bench"
MODELS_DIR = ROOT / "models"
SAMPLE = ROOT / "samples" / "people.mp4"
CLIP_SIZES = ((1280, 720), (640, 480))
REFERENCE = "reference"


# ----------------------------------------------------------------------------- arguments


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, metavar="N",
                   help="frames per generated clip (default 300)")
    p.add_argument("--slow-frames", type=int, default=90, metavar="N",
                   help="frames measured for the slow methods, reference and HOG (default 90)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: 40-frame clips, 10 frames for the slow methods, fewer rows")
    p.add_argument("--clip", action="append", metavar="VIDEO",
                   help="benchmark this clip instead of the generated 1280x720 and 640x480 ones "
                        "(repeatable)")
    p.add_argument("--source", metavar="VIDEO",
                   help=f"make the clips by rescaling/looping this video (default {SAMPLE.name} "
                        "if present, else a pan across INRIA test images, else synthetic frames)")
    p.add_argument("--int8", metavar="TFLITE",
                   help="int8 model (default models/gapstream_person_int8.tflite, else a random-weight "
                        "stand-in)")
    p.add_argument("--float", dest="float_model", metavar="TFLITE",
                   help="float32 model (default models/gapstream_person_float32.tflite, else a stand-in)")
    p.add_argument("--keras", metavar="PATH",
                   help="Keras model for the reference row (default models/*.keras or the newest "
                        "runs/**/best.keras, else a random-weight MobileNet); 'none' skips the row")
    p.add_argument("--standin-backbone", default="mobilenet", choices=["mobilenet", "tiny"],
                   help=argparse.SUPPRESS)
    p.add_argument("--batches", default="1,4,8", help="pipeline batch sizes (default 1,4,8)")
    p.add_argument("--hog-python", metavar="PYTHON",
                   help="interpreter whose OpenCV has HOGDescriptor for the HOG rows (default: this one)")
    p.add_argument("--skip", default="", metavar="ROWS",
                   help="comma-separated row kinds to skip: reference,hog,float,video,single,live,profile")
    p.add_argument("--out", default=str(RESULTS_DIR), metavar="DIR",
                   help="where results.md/json, fps.png, latency.png and README_table.md go")
    p.add_argument("--work", default=str(WORK_DIR), metavar="DIR", help="clips and scratch files")
    p.add_argument("--no-plot", action="store_true", help="do not draw fps.png / latency.png")
    p.add_argument("--command", default=None, help=argparse.SUPPRESS)  # the command shown in the report


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, cores and the versions that matter for the numbers."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for pkg in ("ai-edge-litert", "tflite-runtime", "tensorflow-cpu", "tensorflow", "keras", "av",
                "opencv-python-headless", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    mem = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
        "memory_gb": round(mem, 1), "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}", "versions": versions,
        "date": datetime.date.today().isoformat(),
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }


# ----------------------------------------------------------------------------- clips


def _fill(frame: Any, width: int, height: int) -> Any:
    """Scale to cover ``width x height`` and crop the centre."""
    import cv2

    h, w = frame.shape[:2]
    s = max(width / w, height / h)
    size = (max(width, round(w * s)), max(height, round(h * s)))
    img = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    y, x = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return img[y : y + height, x : x + width]


def _inria_images() -> list[Path]:
    for root in (ROOT / "data" / "INRIAPerson", ROOT / "data" / "INRIAPerson-composite"):
        folder = root / "Test" / "pos"
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if files:
                return files
    return []


def _clip_frames(width: int, height: int, frames: int, source: Path | None) -> tuple[Any, str]:
    """An iterator of RGB frames for a clip, and a description of where they come from."""
    import av
    import cv2
    import numpy as np

    if source is not None:
        def looped() -> Any:
            n = 0
            while n < frames:
                with av.open(str(source)) as c:
                    got = 0
                    for f in c.decode(video=0):
                        yield _fill(f.to_ndarray(format="rgb24"), width, height)
                        n += 1
                        got += 1
                        if n >= frames:
                            return
                    if got == 0:
                        raise RuntimeError(f"{source}: no frames")

        return looped(), f"{source.name} rescaled to {width}x{height}, looped"
    images = _inria_images()
    if images:
        # A camera panning across a strip of INRIA test images (people at several scales).
        step_px = max(2, width // 160)
        need = width + step_px * (frames - 1)
        strip, used, i = [], 0, 0
        while used < need:
            img = cv2.imread(str(images[(i * 7) % len(images)]))
            i += 1
            if img is None:
                continue
            img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height),
                             interpolation=cv2.INTER_AREA)
            strip.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            used += img.shape[1]
        wide = np.concatenate(strip, axis=1)

        def pan() -> Any:
            for k in range(frames):
                x = k * step_px
                yield np.ascontiguousarray(wide[:, x : x + width])

        return pan(), f"pan across {i} INRIA test images ({images[0].parent})"
    from .capture import SourceInfo, read_synthetic

    info = SourceInfo("synthetic://", "synthetic", False, width, height, 30.0, frames)
    return (f for f, _ in read_synthetic(info)), "synthetic frames"


def make_clip(path: Path, width: int, height: int, frames: int, source: Path | None = None,
              fps: int = 30) -> dict:
    """Write an H.264 clip (yuv420p, CRF 20) unless an identical one is already there."""
    import av

    desc_path = path.with_suffix(".json")
    src_key = str(source.resolve()) + f"@{int(source.stat().st_mtime)}" if source else "auto"
    if path.is_file() and desc_path.is_file():
        desc = json.loads(desc_path.read_text())
        if desc.get("frames") == frames and desc.get("source_key") == src_key:
            return desc
    path.parent.mkdir(parents=True, exist_ok=True)
    it, what = _clip_frames(width, height, frames, source)
    tmp = path.with_suffix(".tmp.mp4")
    n = 0
    with av.open(str(tmp), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.options = {"crf": "20", "preset": "fast"}
        for img in it:
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
            n += 1
        for pkt in st.encode():
            c.mux(pkt)
    tmp.replace(path)
    desc = {"path": str(path), "width": width, "height": height, "frames": n, "fps": fps,
            "content": what, "codec": "H.264 (libx264 CRF 20, yuv420p)", "source_key": src_key}
    desc_path.write_text(json.dumps(desc, indent=1) + "\n")
    return desc


def probe_clip(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        n = st.frames or sum(1 for _ in c.demux(st) if _.size)
        return {"path": str(path), "width": st.codec_context.width, "height": st.codec_context.height,
                "frames": int(n), "fps": float(st.average_rate or 30), "content": path.name}


# ----------------------------------------------------------------------------- models


def _find_keras() -> Path | None:
    cands = sorted(MODELS_DIR.glob("*.keras"))
    if cands:
        return cands[0]
    runs = sorted((ROOT / "runs").glob("**/best.keras"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def resolve_models(args: argparse.Namespace, work: Path) -> dict:
    """The int8, float32 and Keras models to use; stand-ins (random weights) where missing."""
    models: dict[str, Any] = {"standin": []}
    int8 = Path(args.int8) if args.int8 else MODELS_DIR / "gapstream_person_int8.tflite"
    flt = Path(args.float_model) if args.float_model else MODELS_DIR / "gapstream_person_float32.tflite"
    keras_arg = args.keras
    keras = None
    if keras_arg and keras_arg.lower() == "none":
        keras = "none"
    elif keras_arg and keras_arg != "standin":
        keras = Path(keras_arg)
    elif keras_arg is None:
        keras = _find_keras()
    alpha = 0.5
    for p in (int8, flt):
        if p.is_file():
            try:
                from .meta import load_meta

                alpha = load_meta(p).alpha
            except Exception:  # noqa: BLE001 - only a hint for the stand-in's width
                pass
            break
    need_standin = not int8.is_file() or not flt.is_file() or keras is None
    if need_standin:
        sdir = work / f"standin-{args.standin_backbone}-{alpha:g}"
        if not (sdir / "gapstream_person_int8.tflite").is_file():
            print(f"bench: building random-weight stand-in models in {sdir} ...", file=sys.stderr)
            res = run_worker({"method": "standin", "out": str(sdir), "alpha": alpha,
                              "backbone": args.standin_backbone}, sample_memory=False)
            if res.get("error"):
                raise RuntimeError(f"cannot build stand-in models: {res['error']}")
        if not int8.is_file():
            int8 = sdir / "gapstream_person_int8.tflite"
            models["standin"].append("int8")
        if not flt.is_file():
            flt = sdir / "gapstream_person_float32.tflite"
            models["standin"].append("float32")
        if keras is None:
            keras = sdir / "standin.keras"
            models["standin"].append("keras")
    models.update({"int8": str(int8), "float32": str(flt), "keras": str(keras) if keras else "none"})
    return models


# ----------------------------------------------------------------------------- running workers


def _tree_pss(proc: Any) -> float:
    """Sum of PSS (else RSS) over a process and its descendants, in bytes."""
    import psutil

    total = 0.0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_worker(spec: dict, python: str | None = None, pin_core: int | None = None,
               sample_memory: bool = True, timeout: float = 900) -> dict:
    """Run one measurement in a fresh process; returns the worker's JSON plus peak memory."""
    with tempfile.TemporaryDirectory(prefix="gapstream-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [python or sys.executable, str(HERE / "bench.py"), "--worker", str(spec_path), str(out_path)]
        preexec = None
        if pin_core is not None:
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", str(pin_core), *cmd]
            else:
                def preexec() -> None:
                    os.sched_setaffinity(0, {pin_core})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        log_path = Path(tmp) / "stderr.txt"
        with open(log_path, "w") as log_f:
            proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=preexec, cwd=str(ROOT))
            peak = 0.0
            ps = None
            if sample_memory:
                try:
                    import psutil

                    ps = psutil.Process(proc.pid)
                except ImportError:
                    ps = None
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if ps is not None:
                    peak = max(peak, _tree_pss(ps))
                if time.monotonic() > deadline:
                    proc.kill()
                    break
                time.sleep(0.1)
            proc.wait()
        log_text = log_path.read_text(errors="replace")
        if out_path.is_file():
            res = json.loads(out_path.read_text())
        else:
            tail = "\n".join(log_text.strip().splitlines()[-5:])
            res = {"error": f"worker exited with {proc.returncode}: {tail}"}
        if peak:
            res["peak_mb"] = peak / 2**20
        elif res.get("maxrss_kb"):
            res["peak_mb"] = res["maxrss_kb"] / 1024  # no psutil: largest single process
        return res


# ----------------------------------------------------------------------------- worker side


def _cpu_seconds() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _system_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all processes, from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    return (sum(v[:3]) + sum(v[5:8])) / os.sysconf("SC_CLK_TCK")


def _maxrss_kb() -> int:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _decode(path: str, limit: int = 0) -> Any:
    """RGB frames of a video with PyAV (threaded decoding, as the capture stage does)."""
    import av

    with av.open(path) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        for n, f in enumerate(c.decode(st)):
            if limit and n >= limit:
                return
            yield f.to_ndarray(format="rgb24")


def _w_decode(spec: dict) -> dict:
    import av

    t0, c0 = time.perf_counter(), _cpu_seconds()
    n = sum(1 for _ in _decode(spec["clip"], spec.get("frames", 0)))
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    # Decode alone, without the conversion to RGB, for the profile.
    t1 = time.perf_counter()
    with av.open(spec["clip"]) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        m = sum(1 for _ in c.decode(st))
    return {"frames": n, "wall_s": wall, "cpu_s": cpu, "latency_ms": [],
            "extra": {"decode_only_fps": m / (time.perf_counter() - t1)}}


def _w_pipeline(spec: dict) -> dict:
    from gapstream.config import load_config
    from gapstream.pipeline import Pipeline

    scratch = Path(spec["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"
    overrides = {
        "infer.batch_size": spec["batch"], "model.num_threads": spec.get("threads", 0),
        "output.json": str(scratch / f"bench-{tag}.jsonl"), "output.stats_interval": 0,
        "log_level": "WARNING",
    }
    if spec.get("live"):
        overrides.update({"source.live": True, "infer.batch_timeout_ms": 0})
    else:
        overrides["source.live"] = False
    if spec.get("video"):
        overrides["output.video"] = str(scratch / f"bench-{tag}.mp4")
    cfg = load_config(None, overrides)
    pipe = Pipeline(spec["clip"], spec["model"], cfg)
    lat: list[float] = []
    # Steady state, as for the reference row (which excludes loading its model): the clock
    # starts when the first frame was captured, after the processes and the interpreter started.
    t_start = time.perf_counter()
    t0 = c0 = 0.0
    for r in pipe.run():
        if not lat:
            t0, c0 = time.perf_counter() - r.latency_ms / 1000, _cpu_seconds()
        lat.append(r.latency_ms)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    startup = t0 - t_start
    st = pipe.stats
    for suffix in (".jsonl", ".mp4"):
        (scratch / f"bench-{tag}{suffix}").unlink(missing_ok=True)
    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"startup_s": startup, "stage_ms": st.stage_ms if st else {},
                      "dropped": st.dropped if st else 0,
                      "captured": st.captured if st else len(lat), "batches": st.batches if st else 0}}


def _boxes(heat: Any, threshold: float = 0.2) -> list:
    import cv2
    import numpy as np

    mask = (heat >= threshold * float(heat.max())).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [stats[i, :4].tolist() for i in range(1, count)]


def _w_reference(spec: dict) -> dict:
    """The original project's loop: one frame at a time, all in Python, in one process."""
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return {"skipped": "TensorFlow is not installed (pip install 'gapstream[train]')"}
    import cv2
    import numpy as np

    from gapstream.model.build import dense_weights, dual_output, model_info
    from gapstream.model.export import load_keras

    km = load_keras(spec["keras"])
    model = dual_output(km)
    kernel, _ = dense_weights(km)
    size = int(km.input_shape[1])
    model.predict(np.zeros((1, size, size, 3), np.float32), verbose=0)  # build the predict function
    lat: list[float] = []
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for frame in _decode(spec["clip"], spec.get("frames", 0)):
        t = time.perf_counter()
        h, w = frame.shape[:2]
        x = cv2.resize(frame, (size, size)).astype(np.float32)[None]
        probs, maps = model.predict(x, verbose=0)
        cls = int(np.argmax(probs[0]))
        cam = np.zeros(maps.shape[1:3], np.float32)
        for c in range(maps.shape[3]):  # the per-channel loop of the reference
            cam += kernel[c, cls] * maps[0, :, :, c]
        cam = np.maximum(cam, 0)
        cam = cam / cam.max() if cam.max() > 0 else cam
        heat = cv2.resize(cam, (w, h), interpolation=cv2.INTER_CUBIC)
        boxes = _boxes(heat) if cls == 1 else []
        color = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
        out = cv2.addWeighted(frame, 0.6, color, 0.4, 0)
        for x1, y1, bw, bh in boxes:
            cv2.rectangle(out, (x1, y1), (x1 + bw, y1 + bh), (0, 255, 0), 2)
        lat.append((time.perf_counter() - t) * 1000)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"keras": spec["keras"], "model": model_info(km), "channels": int(kernel.shape[0])}}


def _hog() -> Any:
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in OpenCV 5)")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


HOG_PARAMS = {"winStride": (8, 8), "padding": (8, 8), "scale": 1.05}


def _w_hog(spec: dict) -> dict:
    hog = _hog()
    lat: list[float] = []
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for frame in _decode(spec["clip"], spec.get("frames", 0)):
        t = time.perf_counter()
        hog.detectMultiScale(frame, **HOG_PARAMS)
        lat.append((time.perf_counter() - t) * 1000)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    import cv2

    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"opencv": cv2.__version__, "params": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in HOG_PARAMS.items()}}}


def _w_hog_images(spec: dict) -> dict:
    """HOG detections (xyxy, SVM weight) and size of each image, for the accuracy benchmark."""
    import cv2
    import numpy as np

    hog = _hog()
    out = []
    t0 = time.perf_counter()
    for path in spec["images"]:
        img = cv2.imread(path)
        if img is None:
            out.append(None)
            continue
        rects, weights = hog.detectMultiScale(img, **HOG_PARAMS)
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) if len(rects) else rects
        out.append({"size": [img.shape[1], img.shape[0]], "boxes": boxes.tolist(),
                    "scores": np.asarray(weights, np.float64).ravel().tolist()})
    return {"images": out, "wall_s": time.perf_counter() - t0, "opencv": cv2.__version__}


def _w_profile(spec: dict) -> dict:
    """Per-frame time of each stage, in one process, with the real model."""
    import av
    import numpy as np

    from gapstream.cam import blend, cam_batch, draw, upsample
    from gapstream.config import PostConfig
    from gapstream.detections import Detections
    from gapstream.gapmodel import GapModel
    from gapstream.post import localize_frame

    model = GapModel(spec["model"], spec.get("threads") or None)
    meta = model.meta
    cfg = PostConfig(threshold=meta.cam_threshold)
    batch = int(spec.get("batch", 8))
    limit = int(spec.get("frames", 0))
    times: dict[str, list[float]] = {k: [] for k in ("decode", "to_rgb", "resize", "infer_b1", "cam_boxes",
                                                     "blend_draw", "encode", "jsonl")}
    inputs = []
    clock = time.perf_counter
    sink = av.open(str(Path(spec["scratch"]) / f"profile-{os.getpid()}.mp4"), "w")
    enc = None
    model.predict(np.zeros((1, *meta.input_size, 3), np.uint8))
    model.predict(np.zeros((batch, *meta.input_size, 3), np.uint8))
    with av.open(spec["clip"]) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        frames = c.decode(st)
        n = 0
        while not limit or n < limit:
            t0 = clock()
            try:
                vf = next(frames)
            except StopIteration:
                break
            t1 = clock()
            frame = vf.to_ndarray(format="rgb24")
            t2 = clock()
            x = model.preprocess(frame)
            t3 = clock()
            probs, maps = model.predict(x[None])
            t4 = clock()
            cls = int(np.argmax(probs[0]))
            cam = cam_batch(maps, meta.dense_kernel, np.array([cls]))[0]
            h, w = frame.shape[:2]
            prob = float(probs[0][meta.person_index])
            det = localize_frame(cam, prob, w, h, cfg) if cls == meta.person_index else Detections.empty()
            t5 = clock()
            blend(frame, upsample(cam, w, h), cfg.blend_alpha)
            draw(frame, det, prob)
            t6 = clock()
            if enc is None:
                enc = sink.add_stream("libx264", rate=30)
                enc.width, enc.height, enc.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
                enc.options = {"crf": "23", "preset": "veryfast"}
                enc.thread_type = "AUTO"
            for pkt in enc.encode(av.VideoFrame.from_ndarray(frame[: enc.height, : enc.width],
                                                             format="rgb24")):
                sink.mux(pkt)
            t7 = clock()
            json.dumps({"frame": n, "person_prob": round(prob, 4), "boxes": det.to_list()})
            t8 = clock()
            for k, a, b in (("decode", t0, t1), ("to_rgb", t1, t2), ("resize", t2, t3),
                            ("infer_b1", t3, t4), ("cam_boxes", t4, t5), ("blend_draw", t5, t6),
                            ("encode", t6, t7), ("jsonl", t7, t8)):
                times[k].append((b - a) * 1000)
            inputs.append(x)
            n += 1
    if enc is not None:
        for pkt in enc.encode():
            sink.mux(pkt)
    sink.close()
    (Path(spec["scratch"]) / f"profile-{os.getpid()}.mp4").unlink(missing_ok=True)
    xs = np.stack(inputs)
    per: list[float] = []
    for i in range(0, len(xs) - batch + 1, batch):
        t = clock()
        model.predict(xs[i : i + batch])
        per.append((clock() - t) * 1000 / batch)
    times[f"infer_b{batch}"] = per
    return {"frames": n, "stage_ms": {k: float(np.median(v)) for k, v in times.items() if v},
            "stage_mean_ms": {k: float(np.mean(v)) for k, v in times.items() if v}}


def _w_standin(spec: dict) -> dict:
    import numpy as np

    from gapstream.model.build import build_model
    from gapstream.model.export import export

    out = Path(spec["out"])
    size = 224 if spec.get("backbone", "mobilenet") == "mobilenet" else 64
    model = build_model(alpha=float(spec.get("alpha", 0.5)), backbone=spec.get("backbone", "mobilenet"),
                        weights=None, input_size=size)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "standin.keras"))
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    export(model, out, calib)
    return {"out": str(out)}


WORKERS = {"decode": _w_decode, "pipeline": _w_pipeline, "reference": _w_reference, "hog": _w_hog,
           "hog_images": _w_hog_images, "profile": _w_profile, "standin": _w_standin}


def worker_main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        res = WORKERS[spec["method"]](spec)
    except Exception as exc:  # noqa: BLE001 - reported as the row's error, the run goes on
        import traceback

        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res["maxrss_kb"] = _maxrss_kb()
    Path(out_path).write_text(json.dumps(res))
    return 0


# ----------------------------------------------------------------------------- orchestration


def _hog_python(arg: str | None) -> tuple[str | None, str]:
    """An interpreter whose OpenCV has HOGDescriptor, or None and why not."""
    for py in [arg or sys.executable]:
        if not py or not Path(py).exists():
            continue
        r = subprocess.run([py, "-c", "import cv2, av; cv2.HOGDescriptor; print(cv2.__version__)"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return py, r.stdout.strip()
    return None, ("no OpenCV with HOGDescriptor (OpenCV 5 removed it): install "
                  "opencv-python-headless<5 or pass --hog-python")


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def plan_rows(args: argparse.Namespace, clips: list[dict], models: dict, hog_py: str | None,
              work: Path) -> list[dict]:
    """The measurements to make, in order: (label, spec, runner options)."""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    slow = args.slow_frames
    scratch = str(work / "tmp")
    rows: list[dict] = []
    for clip in clips:
        res = f"{clip['width']}x{clip['height']}"
        base = {"clip": clip["path"], "scratch": scratch}

        def add(method: str, label: str, spec: dict, res: str = res, base: dict = base, **opts: Any) -> None:
            rows.append({"method": method, "label": label, "clip": res,
                         "spec": {**base, "method": spec.pop("kind", method), **spec}, **opts})

        add("decode", "PyAV decode to RGB (ceiling)", {"kind": "decode"})
        for q in ("int8", "float32"):
            if q == "float32" and "float" in skip:
                continue
            for b in batches:
                add("gapstream", f"gapstream {q} batch {b}", {"kind": "pipeline", "model": models[q],
                                                               "batch": b}, model=q, batch=b, threads="all")
        if "video" not in skip:
            b = 4 if 4 in batches else batches[-1]
            add("gapstream", f"gapstream int8 batch {b} + annotated video", {
                "kind": "pipeline", "model": models["int8"], "batch": b, "video": True},
                model="int8", batch=b, threads="all")
        if "single" not in skip:
            for b in (1, 4):
                add("single-core", f"gapstream int8 batch {b}, 1 core (taskset -c 0, 1 thread)", {
                    "kind": "pipeline", "model": models["int8"], "batch": b, "threads": 1},
                    model="int8", batch=b, threads=1, pin_core=0)
        if "reference" not in skip:
            if models["keras"] == "none":
                rows.append({"method": REFERENCE, "label": "reference (naive Keras, one process)",
                             "clip": res, "skipped": "no Keras model (--keras none)"})
            else:
                add(REFERENCE, "reference (naive Keras, one process)", {
                    "kind": "reference", "keras": models["keras"], "frames": slow}, model="keras", batch=1)
        if "hog" not in skip:
            if hog_py is None:
                rows.append({"method": "hog", "label": "OpenCV HOG people detector", "clip": res,
                             "skipped": "no OpenCV with HOGDescriptor"})
            else:
                add("hog", "OpenCV HOG people detector", {"kind": "hog", "frames": slow}, python=hog_py)
    if "live" not in skip:
        w, h = (clips[0]["width"], clips[0]["height"]) if clips else (640, 480)
        n = 60 if args.quick else 240
        uri = f"synthetic://?width={w}&height={h}&fps=30&frames={n}&live=1"
        rows.append({"method": "live", "label": "gapstream int8 batch 1, live 30 fps camera (paced)",
                     "clip": f"{w}x{h} live", "model": "int8", "batch": 1, "threads": "all",
                     "spec": {"method": "pipeline", "clip": uri, "scratch": scratch, "model": models["int8"],
                              "batch": 1, "live": True}})
    return rows


def measure(rows: list[dict], log: Any = print) -> list[dict]:
    for row in rows:
        if row.get("skipped") or "spec" not in row:
            log(f"  {row['clip']:>16}  {row['label']:<58} skipped: {row.get('skipped')}")
            continue
        res = run_worker(row["spec"], python=row.get("python"), pin_core=row.get("pin_core"))
        if res.get("skipped") or res.get("error"):
            row["skipped"] = res.get("skipped") or res.get("error")
            log(f"  {row['clip']:>16}  {row['label']:<58} {'skipped' if res.get('skipped') else 'ERROR'}: "
                f"{row['skipped']}")
            continue
        lat = res.get("latency_ms", [])
        wall = res["wall_s"]
        row.update({
            "frames": res["frames"], "wall_s": wall, "fps": res["frames"] / wall if wall > 0 else 0.0,
            "p50_ms": _percentile(lat, 50), "p95_ms": _percentile(lat, 95),
            "cpu_pct": 100 * res["cpu_s"] / wall if wall > 0 else 0.0,
            "peak_mb": res.get("peak_mb", float("nan")), "latency_ms": lat, "extra": res.get("extra", {}),
        })
        log(f"  {row['clip']:>16}  {row['label']:<58} {row['fps']:8.1f} fps  p50 {row['p50_ms']:7.1f} ms  "
            f"p95 {row['p95_ms']:7.1f} ms  CPU {row['cpu_pct']:4.0f}%  {row['peak_mb']:6.0f} MB")
    # Ratios to the reference measured on the same clip in the same run.
    refs = {r["clip"]: r for r in rows if r["method"] == REFERENCE and "fps" in r}
    for r in rows:
        ref = refs.get(r["clip"]) or (refs.get(r["clip"].split()[0]) if r["method"] == "live" else None)
        if ref is None or "fps" not in r:
            continue
        r["x_ref"] = {
            "fps": r["fps"] / ref["fps"] if ref["fps"] else float("nan"),
            "p50": r["p50_ms"] / ref["p50_ms"] if ref["p50_ms"] else float("nan"),
            "p95": r["p95_ms"] / ref["p95_ms"] if ref["p95_ms"] else float("nan"),
            "cpu": r["cpu_pct"] / ref["cpu_pct"] if ref["cpu_pct"] else float("nan"),
            "mem": r["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] else float("nan"),
        }
    return rows


# ----------------------------------------------------------------------------- report


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return fmt.format(v)


def _x(r: dict, key: str) -> str:
    v = r.get("x_ref", {}).get(key)
    return "" if v is None or v != v else f" ({v:.2g}x)" if v < 10 else f" ({v:.0f}x)"


def targets(rows: list[dict]) -> list[dict]:
    """The speed targets of the issue, checked against this run."""
    out = []
    ok_rows = [r for r in rows if "fps" in r]
    for clip in sorted({r["clip"] for r in ok_rows if r["method"] == REFERENCE}):
        gs = [r for r in ok_rows if r["clip"] == clip and r["method"] == "gapstream" and r.get("x_ref")]
        if gs:
            best = max(gs, key=lambda r: r["fps"])
            out.append({"target": f"pipeline fps >= 20x the naive reference ({clip})",
                        "value": f"{best['x_ref']['fps']:.1f}x ({best['label']})",
                        "met": best["x_ref"]["fps"] >= 20})
    g640 = [r for r in ok_rows if r["clip"] == "640x480" and r["method"] == "gapstream"
            and r.get("model") == "int8" and "video" not in r["label"]]
    if g640:
        best = max(g640, key=lambda r: r["fps"])
        out.append({"target": "> 100 fps on the 640x480 clip, int8 model",
                    "value": f"{best['fps']:.1f} fps ({best['label']})", "met": best["fps"] > 100})
    for clip in sorted({r["clip"] for r in ok_rows if r["method"] == "single-core"}):
        sc = [r for r in ok_rows if r["clip"] == clip and r["method"] == "single-core"]
        best = max(sc, key=lambda r: r["fps"])
        out.append({"target": f"single core (taskset, 1 thread) > 25 fps ({clip})",
                    "value": f"{best['fps']:.1f} fps ({best['label']})", "met": best["fps"] > 25})
    return out


PROFILE_LABELS = {
    "decode": "decode (H.264, PyAV, threaded)", "to_rgb": "YUV -> RGB array",
    "resize": "resize to 224x224", "infer_b1": "inference, batch 1", "cam_boxes": "CAM + boxes (448 px)",
    "blend_draw": "blend + draw (frame size)", "encode": "encode (H.264 veryfast)", "jsonl": "JSONL record",
}


def render_markdown(report: dict) -> str:
    m = report["machine"]
    rows = report["rows"]
    lines = [
        "# gapstream benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}), {m['memory_gb']} GB; {m['os']}; "
        f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; {m['date']}.",
        f"Command: `{report['command']}`",
        "",
        "Models: " + ", ".join(f"{k} `{Path(v).name}`" for k, v in report["models"].items()
                               if k in ("int8", "float32", "keras"))
        + (f". **Stand-in (random weights) for: {', '.join(report['models']['standin'])}** "
           "(same architecture, so the same speed as trained weights)."
           if report["models"]["standin"] else "."),
        "",
    ]
    for c in report["clips"]:
        lines.append(f"- {c['width']}x{c['height']}: {c['frames']} frames at {c['fps']:g} fps, "
                     f"{c['content']}")
    lines += [
        "",
        "fps = frames / wall time from the first result to the last (steady state: the pipeline's "
        "start-up, like the reference's model loading, is excluded; it is in results.json as startup_s, "
        "and the pipeline's CPU % still includes it); latency = "
        "capture to sink per frame (offline files: includes queueing behind earlier frames; see the live "
        "row for camera latency); CPU = CPU time of the process tree / wall time (100% = one core); "
        "memory = peak PSS of the process tree. (Nx) = ratio to the reference on the same clip in this run.",
        "",
        "| clip | method | frames | fps | p50 ms | p95 ms | CPU % | peak MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "fps" not in r:
            lines.append(f"| {r['clip']} | {r['label']} | skipped: {r.get('skipped')} | | | | | |")
            continue
        lines.append(
            f"| {r['clip']} | {r['label']} | {r['frames']} | **{_f(r['fps'])}**{_x(r, 'fps')} | "
            f"{_f(r['p50_ms'])}{_x(r, 'p50')} | {_f(r['p95_ms'])}{_x(r, 'p95')} | "
            f"{_f(r['cpu_pct'], '{:.0f}')}{_x(r, 'cpu')} | {_f(r['peak_mb'], '{:.0f}')}{_x(r, 'mem')} |"
        )
    tg = report.get("targets", [])
    if tg:
        lines += ["", "| target | this run | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in tg]
    stage_rows = [r for r in rows if r.get("extra", {}).get("stage_ms")]
    if stage_rows:
        names = ["queue", "infer", "post", "sink"]
        lines += ["", "Pipeline stage times (mean ms per frame, from the pipeline's own stats; queue = "
                  "capture to start of inference, infer = batch inference wall time):", "",
                  "| clip | run | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
        for r in stage_rows:
            st = r["extra"]["stage_ms"]
            cells = " | ".join(_f(st.get(k), "{:.2f}") for k in names)
            lines.append(f"| {r['clip']} | {r['label']} | {cells} |")
    prof = report.get("profile", {})
    if prof:
        clips = list(prof)
        keys = [k for k in PROFILE_LABELS if any(k in prof[c] for c in clips)]
        keys += sorted({k for c in clips for k in prof[c] if k.startswith("infer_b") and k != "infer_b1"})
        lines += ["", "Stage profile (one process, int8 model, median ms per frame; the pipeline runs "
                  "capture, inference and post-processing in parallel processes):", "",
                  "| stage | " + " | ".join(clips) + " |", "|---|" + "---:|" * len(clips)]
        for k in keys:
            label = PROFILE_LABELS.get(k, f"inference, batch {k[7:]} (per frame)")
            lines.append(f"| {label} | " + " | ".join(_f(prof[c].get(k), "{:.2f}") for c in clips) + " |")
    notes = report.get("notes", [])
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def render_readme_snippet(report: dict) -> str:
    """The compact table for the top README."""
    m = report["machine"]
    rows = [r for r in report["rows"] if "fps" in r]
    lines = [
        f"Speed on {m['cpu']} ({m['cores']} cores, {m['arch']}), Python {m['python']}, "
        f"ai-edge-litert {m['versions'].get('ai-edge-litert', '?')}, {m['date']}; "
        f"reproduce with `{report['command']}` (full report: "
        "[benchmarks/results/results.md](benchmarks/results/results.md)).",
        "",
        "| clip | method | fps | vs reference | p50 / p95 latency ms | CPU % | peak MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        x = r.get("x_ref", {}).get("fps")
        lines.append(f"| {r['clip']} | {r['label']} | {_f(r['fps'])} | {_f(x, '{:.1f}x')} | "
                     f"{_f(r['p50_ms'], '{:.0f}')} / {_f(r['p95_ms'], '{:.0f}')} | "
                     f"{_f(r['cpu_pct'], '{:.0f}')} | {_f(r['peak_mb'], '{:.0f}')} |")
    other = m.get("other_cpu_pct_during_run", 0)
    if m.get("loadavg_1min_at_start", 0) > 0.7 or other > 20:
        used = (f"other processes used {other:.0f}% of a core on average during the run, "
                if "other_cpu_pct_during_run" in m else "")
        lines += ["", f"**Not an idle machine**: {used}load average {m.get('loadavg_1min_at_start')} at the "
                  "start; re-run on an idle machine for representative numbers."]
    if report["models"]["standin"]:
        lines += ["", "Stand-in random-weight models were used for: "
                  f"{', '.join(report['models']['standin'])}."]
    tg = report.get("targets", [])
    if tg:
        lines += ["", "Targets: " + "; ".join(
            f"{t['target']}: {t['value']} ({'met' if t['met'] else 'NOT met'})" for t in tg) + "."]
    return "\n".join(lines) + "\n"


def plot(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "fps" in r]
    clips = list(dict.fromkeys(r["clip"].split()[0] for r in rows))
    colors = {"decode": "0.6", "gapstream": "tab:green", "single-core": "tab:olive", "live": "tab:cyan",
              REFERENCE: "tab:red", "hog": "tab:blue"}
    written = []
    per = {c: [r for r in rows if r["clip"].split()[0] == c] for c in clips}
    fig, axes = plt.subplots(len(clips), 1, figsize=(10, 0.42 * len(rows) + 1.2 * len(clips)), squeeze=False,
                             gridspec_kw={"height_ratios": [len(per[c]) for c in clips]}, sharex=True)
    for ax, clip in zip(axes[:, 0], clips):
        rs = per[clip]
        y = range(len(rs))
        ax.barh(list(y), [r["fps"] for r in rs], color=[colors.get(r["method"], "k") for r in rs])
        for i, r in enumerate(rs):
            ax.text(r["fps"], i, f" {r['fps']:.1f}", va="center", fontsize=8)
        ax.set_yticks(list(y), [r["label"] for r in rs], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(f"{clip}: frames per second (log scale)", fontsize=10)
        ax.axvline(5, color="k", ls=":", lw=0.8)
        ax.text(5, len(rs) - 0.5, " 5 fps", fontsize=7, va="bottom")
    m = report["machine"]
    fig.suptitle(f"gapstream bench on {m['cpu']}, {m['cores']} cores", fontsize=10)
    fig.tight_layout()
    p = out / "fps.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    lrows = [r for r in rows if r.get("latency_ms")]
    if lrows:
        fig, ax = plt.subplots(figsize=(10, 0.42 * len(lrows) + 1.5))
        data = [r["latency_ms"] for r in lrows]
        try:
            ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False)
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(data, vert=False, whis=(5, 95), showfliers=False)
        ax.set_yticks(range(1, len(lrows) + 1), [f"{r['clip']}: {r['label']}" for r in lrows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("frame latency, ms (box: quartiles, whiskers: p5-p95; log scale)")
        ax.set_title("Latency per frame (offline files include queueing; see the live row)", fontsize=10)
        fig.tight_layout()
        p = out / "latency.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> int:
    from .credentials import redact_text

    t_start = time.monotonic()
    work = Path(args.work)
    out = Path(args.out)
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.frames = min(args.frames, 40)
        args.slow_frames = min(args.slow_frames, 10)
        if args.batches == "1,4,8":
            args.batches = "1,4"
    command = args.command or "gapstream bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"]
                                                              else sys.argv[1:])
    machine = machine_info()
    busy0, own0 = _system_busy_s(), _cpu_seconds()
    notes: list[str] = []
    if machine["loadavg_1min_at_start"] > 0.7:
        notes.append(f"The machine was not idle at the start (1-minute load average "
                     f"{machine['loadavg_1min_at_start']}): other work competed for the cores.")
        print(f"bench: warning: load average {machine['loadavg_1min_at_start']}: the numbers will be "
              "pessimistic", file=sys.stderr)
    # Clips.
    if args.clip:
        clips = [probe_clip(Path(c)) for c in args.clip]
    else:
        src = Path(args.source) if args.source else (SAMPLE if SAMPLE.is_file() else None)
        clips = []
        for w, h in CLIP_SIZES:
            path = work / f"clip_{w}x{h}_{args.frames}.mp4"
            print(f"bench: clip {path} ...", file=sys.stderr)
            clips.append(make_clip(path, w, h, args.frames, src))
    models = resolve_models(args, work)
    hog_py, hog_why = _hog_python(args.hog_python)
    if hog_py is None:
        notes.append(f"HOG rows skipped: {hog_why}.")
    elif hog_py != sys.executable:
        notes.append(f"HOG rows run under {hog_py} (OpenCV {hog_why}): OpenCV 5 has no HOGDescriptor.")
    print(f"bench: {machine['cpu']}, {machine['cores']} cores; models: int8 {models['int8']}, "
          f"float32 {models['float32']}, keras {models['keras']}"
          + (f" (stand-in: {', '.join(models['standin'])})" if models["standin"] else ""))
    rows = plan_rows(args, clips, models, hog_py, work)
    measure(rows)
    profile: dict[str, dict] = {}
    if "profile" not in {s.strip() for s in args.skip.split(",")}:
        for c in clips:
            res = run_worker({"method": "profile", "clip": c["path"], "model": models["int8"], "batch": 8,
                              "frames": 60 if args.quick else 150, "scratch": str(work / "tmp")},
                             sample_memory=False)
            if res.get("error"):
                notes.append(f"stage profile failed on {c['width']}x{c['height']}: {res['error']}")
                continue
            profile[f"{c['width']}x{c['height']}"] = res["stage_ms"]
    ref = next((r for r in rows if r["method"] == REFERENCE and "fps" in r), None)
    if ref is not None:
        info = ref["extra"].get("model", {})
        notes.append(f"reference Keras model: {ref['extra'].get('keras')} ({info.get('backbone', '?')} alpha "
                     f"{info.get('alpha', '?')}, {info.get('input_size', '?')} px, "
                     f"{ref['extra'].get('channels')} CAM channels).")
    dec = {r["clip"]: r for r in rows if r["method"] == "decode" and "fps" in r}
    for clip, r in dec.items():
        d = r["extra"].get("decode_only_fps")
        if d:
            notes.append(f"{clip}: PyAV decode alone (no RGB conversion) {d:.0f} fps; to RGB arrays "
                         f"{r['fps']:.0f} fps.")
    notes.append("reference = Keras model.predict per frame, per-channel CAM loop in Python, cubic resize "
                 "of the CAM to the frame, threshold + connected components, JET blend, all in one process "
                 "(no video encode); reference and HOG are measured on the first "
                 f"{args.slow_frames} frames of each clip.")
    notes.append("HOG: cv2.HOGDescriptor_getDefaultPeopleDetector, detectMultiScale(winStride=(8, 8), "
                 "padding=(8, 8), scale=1.05) on the full frame.")
    report = {"machine": machine, "command": command, "models": models, "clips": clips,
              "rows": rows, "profile": profile, "notes": notes}
    report["targets"] = targets(rows)
    busy1, own1, wall = _system_busy_s(), _cpu_seconds(), time.monotonic() - t_start
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0) - (own1 - own0))
        machine["other_cpu_pct_during_run"] = round(100 * other / wall, 1)
        if machine["other_cpu_pct_during_run"] > 20:
            notes.append(f"Other processes used {machine['other_cpu_pct_during_run']:.0f}% of a core on "
                         "average during the run (busy CPU time of the machine minus this benchmark's own): "
                         "the numbers are pessimistic and noisy; re-run on an idle machine.")
    report["seconds"] = time.monotonic() - t_start
    md = redact_text(render_markdown(report))  # reports get shared: no source passwords
    (out / "results.md").write_text(md)
    (out / "README_table.md").write_text(redact_text(render_readme_snippet(report)))
    for r in rows:
        r.pop("spec", None)
        r.pop("python", None)
    (out / "results.json").write_text(redact_text(json.dumps(report, indent=1, default=str)) + "\n")
    if not args.no_plot:
        try:
            plot(report, out)
        except ImportError:
            print("bench: matplotlib not installed: no plots", file=sys.stderr)
    print(md)
    print(f"bench: wrote {out}/results.md, results.json, README_table.md"
          + ("" if args.no_plot else ", fps.png, latency.png") + f" in {report['seconds']:.0f} s")
    return 0


# ----------------------------------------------------------------------------- accuracy


def accuracy(data: str | Path, models: list[str | Path], hog_python: str | None = None,
             threshold: float = 0.2, seed: int = 0, skip_hog: bool = False) -> dict:
    """INRIA test split: gapstream (via gapstream.model.evaluate) next to OpenCV's HOG detector.

    HOG: an image counts as positive when it has at least one detection (SVM margin above
    ``detectMultiScale``'s default hit threshold, 0); ROC AUC ranks images by their best margin;
    HOG boxes, scored by their margin, go through the same CorLoc / AP@0.5 code as the CAM boxes.
    """
    import numpy as np

    from .detections import Detections
    from .model.evaluate import (
        average_precision,
        classification_metrics,
        corloc,
        evaluate,
        gt_boxes,
        roc_auc,
    )
    from .model.inria import load_inria

    result = evaluate(data, list(models), None, threshold, seed) if models else {"models": {}}
    result.setdefault("data", {})
    if skip_hog:
        return result
    py, why = _hog_python(hog_python)
    if py is None:
        result.setdefault("notes", []).append(f"HOG skipped: {why}")
        return result
    inria = load_inria(data, splits=("test",), seed=seed)
    split = inria.test
    assert split is not None
    res = run_worker({"method": "hog_images", "images": [str(p) for p in split.paths]}, python=py,
                     sample_memory=False)
    if res.get("error"):
        result.setdefault("notes", []).append(f"HOG failed: {res['error']}")
        return result
    keep = [i for i, r in enumerate(res["images"]) if r is not None]
    items = [res["images"][i] for i in keep]
    labels = split.labels[keep]
    paths = [split.paths[i] for i in keep]
    sizes = np.array([r["size"] for r in items], np.int64)
    dets = [Detections(np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                       np.asarray(r["scores"], np.float32).ravel()) for r in items]
    best = np.array([d.scores.max() if len(d) else -1.0 for d in dets])
    detected = (best > -1.0).astype(np.float64)
    probs = np.stack([1 - detected, detected], axis=1)
    m = classification_metrics(labels, probs, 1)
    m["auc"] = roc_auc(labels, best)
    gts = gt_boxes(inria.test_boxes, paths, sizes)
    m.update({"corloc": corloc(dets, gts), "ap50": average_precision(dets, gts, 0.5),
              "boxes": int(sum(len(d) for d in dets)), "gt_boxes": int(sum(len(g) for g in gts)),
              "ms_per_image": 1000 * res["wall_s"] / max(1, len(items)),
              "opencv": res.get("opencv"), "params": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in HOG_PARAMS.items()}})
    result["models"]["HOG (OpenCV default people detector)"] = m
    return result


def render_accuracy(result: dict, data: str, command: str) -> str:
    from .model.evaluate import render_markdown as eval_markdown

    m = machine_info()
    text = [
        "# Accuracy on the INRIA Person test split: gapstream vs OpenCV HOG",
        "",
        f"Data: `{data}`. Command: `{command}`. Machine: {m['cpu']}, {m['cores']} cores, {m['date']}.",
        "",
        eval_markdown(result).rstrip(),
        "",
        "HOG: an image is 'person' when detectMultiScale returns at least one detection (SVM margin above "
        "its default hit threshold 0); its ROC AUC ranks images by their best margin; its boxes (scored by "
        "margin) are matched to the same ground truth with the same CorLoc / AP@0.5 code "
        "(gapstream.model.evaluate). CAM boxes: the paper's rule at the given threshold, scored by the "
        "person probability. ms/img: inference only for gapstream (batch 32, images pre-resized), "
        "full-image detection for HOG.",
    ]
    for n in result.get("notes", []):
        text.append(f"\n- {n}")
    if "composite" in str(data) or "paired" in str(data):
        text.append(
            "\nNote: this test split is composite (real INRIA person crops pasted into real INRIA "
            "negative scenes; see gapstream/model/composite.py). OpenCV's default people detector was "
            "trained on INRIA's own training set, which contains these crops, so HOG's numbers here are "
            "optimistic for HOG.")
    return "\n".join(text) + "\n"


def accuracy_main(argv: list[str] | None = None) -> int:
    from .credentials import redact_text

    p = argparse.ArgumentParser(
        description="INRIA test split: gapstream vs OpenCV HOG (accuracy, CorLoc, AP@0.5)")
    default_data = ROOT / "data" / "INRIAPerson"
    if not (default_data / "Test" / "pos").is_dir():
        default_data = ROOT / "data" / "INRIAPerson-paired"
    p.add_argument("--data", default=str(default_data), help=f"INRIA root (default {default_data})")
    p.add_argument("--models", nargs="*", metavar="TFLITE",
                   help="TFLite models (default: the int8 and float32 models in models/)")
    p.add_argument("--hog-python", metavar="PYTHON", help="interpreter with OpenCV 4 for HOG")
    p.add_argument("--no-hog", action="store_true")
    p.add_argument("--threshold", type=float,
                   help="CAM box threshold (default: the int8 model's own cam_threshold)")
    p.add_argument("--out", default=str(RESULTS_DIR), metavar="DIR")
    args = p.parse_args(argv)
    models = args.models
    if models is None:
        models = [MODELS_DIR / f"gapstream_person_{q}.tflite" for q in ("int8", "float32")]
        models = [m for m in models if m.is_file()]
        if not models:
            print("accuracy: no model in models/ (pass --models)", file=sys.stderr)
    threshold = args.threshold
    if threshold is None:
        from .meta import load_meta

        threshold = load_meta(models[0]).cam_threshold if models else 0.2
    result = accuracy(args.data, models, args.hog_python, threshold, skip_hog=args.no_hog)
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = redact_text(render_accuracy(result, args.data, command.strip()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.md").write_text(md)
    (out / "accuracy.json").write_text(redact_text(json.dumps(result, indent=1, default=str)) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    # Run as a worker script (possibly under another interpreter): never import from this folder
    # as if it were top level, and find the package from the checkout.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2], sys.argv[3]))
    parser = argparse.ArgumentParser(prog="gapstream bench")
    add_args(parser)
    sys.exit(main(parser.parse_args()))
