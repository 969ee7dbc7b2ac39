#!/bin/bash
# Usage: benchmarks/decode_ratio.sh [CLIP] (default: the 1280x720 clip `gapstream bench` writes). About 1 minute.
# Raw PyAV decode fps vs end-to-end gapstream run (JSON only, decoded to model size) at several input long sides.
cd "$(dirname "$0")/.."
CLIP=${1:-out/bench/clip_1280x720_300.mp4}
raw() { .venv/bin/python - "$CLIP" <<'PY'
import sys, time, av
t = time.perf_counter(); n = 0
with av.open(sys.argv[1]) as c:
    s = c.streams.video[0]; s.thread_type = "AUTO"
    for f in c.decode(s):
        f.to_ndarray(format="rgb24"); n += 1
print(f"{n / (time.perf_counter() - t):.1f}")
PY
}
for rep in 1 2; do
  echo "raw $(raw)"
  for L in 640 448 320 224; do
    printf "model:\n  input_long_side: $L\noutput:\n  stats_interval: 0\n" > ${TMPDIR:-/tmp}/gapstream_ratio_$L.yaml
    t0=$(date +%s.%N)
    .venv/bin/gapstream run "$CLIP" --json ${TMPDIR:-/tmp}/gapstream_ratio.jsonl --config ${TMPDIR:-/tmp}/gapstream_ratio_$L.yaml 2>/dev/null >/dev/null
    t1=$(date +%s.%N)
    n=$(wc -l < ${TMPDIR:-/tmp}/gapstream_ratio.jsonl)
    echo "long_side $L frames $n fps $(python3 -c "print(round($n/($t1-$t0),1))")"
  done
done
