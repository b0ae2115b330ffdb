#!/usr/bin/env bash
# GPU check (issue 13): on a machine with a CUDA GPU, extract features at the paper's 299 px on a
# slice of the synthetic corpus and print
#   1. visual throughput of the extraction pipeline against the bare batched Inception forward,
#   2. GPU busy % while the pipeline runs (nvidia-smi samples),
#   3. Table II: per-video extraction / end-to-end time of the teacher and each k, and k / teacher ratios.
# Budget: under 5 minutes on one GPU. Usage (repo root):  bash scripts/gpu_check.sh [OUT_DIR]
# Python: the active python3 with torch (CUDA) and the packages of requirements.txt that the
# feature path imports (av, decord, panns-inference, torchlibrosa, librosa, pyyaml, rich). When a
# folder .whl/ of wheels is present (a machine without a package index), they are installed into
# a private target dir first.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-$(mktemp -d -t avkd-gpu-XXXX)}}"
mkdir -p "$OUT"
WORK="$(mktemp -d -t avkd-gpu-work-XXXX)"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import av, decord, torchlibrosa, panns_inference" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 MPLCONFIGDIR="$WORK/mpl" HOME="$WORK/home"
mkdir -p "$HOME"
"$PY" - <<'PY'
import os, torch
if not torch.cuda.is_available() and not os.environ.get("GPU_CHECK_ALLOW_CPU"):
    raise SystemExit("gpu_check: no CUDA GPU visible to torch (GPU_CHECK_ALLOW_CPU=1 runs the same steps on CPU)")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"
print(f"torch {torch.__version__}, GPU: {gpu}, CPU cores: {os.cpu_count()}")
PY
VIDEOS="${GPU_CHECK_VIDEOS:-96}"  # 24 gave per-video timings dominated by noise on an H200
"$PY" -m avkd data synth --out "$WORK/synth" --videos "$VIDEOS" --seed 0 | tail -1
# The paper's extraction settings (sweeps/paper.yaml's features section), on the slice, on the GPU.
"$PY" - "$WORK" "$VIDEOS" <<'PY'
import sys, yaml
work, videos = sys.argv[1], int(sys.argv[2])
cfg = yaml.safe_load(open("sweeps/paper.yaml"))
feats = dict(cfg["features"])
# No pretrained checkpoints on a fresh machine: seeded random weights cost the same time.
feats["weights"] = {**feats.get("weights", {}), "require_pretrained": False}
feats.update(device="cuda" if __import__("torch").cuda.is_available() else "cpu", cache_dir=f"{work}/cache", workers=feats.get("workers", 4))
cfg.update(name="gpu-check", features=feats, runs_dir=f"{work}/runs")
cfg["dataset"] = {"kind": "synth", "root": f"{work}/synth", "synth": {"videos": videos, "seed": 0},
                  "min_count": 1, "max_caption_len": 16}
cfg["grid"]["timing"] = {"enabled": True, "videos": max(2, videos // 4), "warmup": 2, "threads": 8, "seed": 0}
yaml.safe_dump(cfg, open(f"{work}/gpu.yaml", "w"), sort_keys=False)
print("sweep for the check:", f"{work}/gpu.yaml", "features:", feats)
PY
SMI=""
touch "$OUT/smi.csv"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/smi.csv" &
  SMI=$!
fi
trap '[ -n "$SMI" ] && kill $SMI 2>/dev/null; rm -rf "$WORK"' EXIT
date +%s.%N > "$OUT/t_throughput_start"
"$PY" -m avkd.features.bench --sweep "$WORK/gpu.yaml" --throughput --videos "$VIDEOS" --json "$OUT/throughput.json"
date +%s.%N > "$OUT/t_throughput_end"
"$PY" -m avkd bench --sweep "$WORK/gpu.yaml" --no-mlflow --json "$OUT/table2.json"
[ -n "$SMI" ] && kill $SMI 2>/dev/null || true
"$PY" - "$OUT" <<'PY'
import json, sys, datetime as dt
out = sys.argv[1]
t0, t1 = (float(open(f"{out}/{n}").read()) for n in ("t_throughput_start", "t_throughput_end"))
busy = []
for line in open(f"{out}/smi.csv"):
    parts = [p.strip() for p in line.split(",")]
    try:
        ts = dt.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
    except ValueError:
        continue
    if t0 <= ts <= t1:
        busy.append(float(parts[1]))
r = json.load(open(f"{out}/throughput.json"))
t2 = json.load(open(f"{out}/table2.json"))
print(f"\n== GPU check summary ==")
print(f"throughput: pipeline {r['pipeline_fps']:.1f} frames/s vs bare forward {r['bare_forward_fps']:.1f} frames/s "
      f"= {100 * r['ratio']:.1f} % ({r['frames']} frames, {r['image_size']} px, batch {r['batch_frames']})")
if busy:
    print(f"GPU busy over the throughput command (model set-up and BatchNorm calibration included): mean {sum(busy) / len(busy):.0f} %, max {max(busy):.0f} % "
          f"({len(busy)} samples of nvidia-smi)")
variants = t2.get("variants", [])
teacher = next((v for v in variants if v.get("k", 1.0) >= 1.0), None)
for v in variants:
    ratio = v["e2e_mean_s"] / teacher["e2e_mean_s"] if teacher else float("nan")
    print(f"Table II {v['name']:>12}: extract {v['extract_mean_s'] * 1000:.1f} ms/video, end-to-end "
          f"{v['e2e_mean_s'] * 1000:.1f} ms/video, e2e / teacher = {ratio:.3f}")
PY
