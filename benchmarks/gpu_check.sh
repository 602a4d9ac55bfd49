#!/usr/bin/env bash
# The GPU check of issue 31 in one call, under ten minutes on one GPU (H100-class):
#   training throughput of our U-Net against diffusers' UNet2DModel at 32x32 and 64x64 RGB in bf16,
#   sampling speed at the same sizes, and one quality point (the shipped recipe for TRAIN_STEPS steps,
#   judged with the card's sampler at N = 1,000). Results: $OUT/gpu_check.json and $OUT/gpu_check.md
#   (benchmarks/gpu_check.py writes them after every stage, so a run cut short keeps what it measured).
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   OUT=/tmp/gpu TRAIN_STEPS=1000 bash benchmarks/gpu_check.sh
#
# Needs a Python with a CUDA torch and this project's dependencies (pip install -e .); PYTHON picks it.
# The quality point is comparable with the card only with the official Fashion-MNIST files: FASHION_MNIST
# (default /usr/share/datasets/fashion-mnist, else .cache/fashion-mnist in the repository, which the
# device tool can carry: cp -r /usr/share/datasets/fashion-mnist .cache/ and carry ".cache/fashion-mnist").
# Without them it trains on the embedded sample and says the point is not comparable.
# Each stage has its own time limit, so that one slow stage cannot use up the call.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
OUT="${OUT:-runs/gpu_check_out}"
TRAIN_STEPS="${TRAIN_STEPS:-2000}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
if [ -z "${FASHION_MNIST:-}" ]; then
  FASHION_MNIST=/usr/share/datasets/fashion-mnist
  [ -f "$FASHION_MNIST/t10k-images-idx3-ubyte.gz" ] || FASHION_MNIST="$PWD/.cache/fashion-mnist"
fi
export FASHION_MNIST PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
mkdir -p "$OUT"

"$PYTHON" - <<'PY' || { echo "gpu_check.sh: error: no usable CUDA torch with the project's dependencies" >&2; exit 2; }
import torch, diffusers, accelerate, annotated_pipeline  # noqa: F401
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, {torch.cuda.get_device_name()}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true

status=0
# speed first (about a minute each), then the quality point (training and judging) in what is left
timeout 150 "$PYTHON" benchmarks/gpu_check.py --device cuda --out "$OUT/speed" --workdir "$WORK/speed" \
    --skip quality 2>&1 | tee "$OUT/speed.log" || status=1
timeout 390 "$PYTHON" benchmarks/gpu_check.py --device cuda --out "$OUT/quality" --workdir "$WORK/quality" \
    --skip training sampling --train_steps "$TRAIN_STEPS" --data "$FASHION_MNIST" 2>&1 | tee "$OUT/quality.log" || status=1
cat "$OUT"/speed/gpu_check.md "$OUT"/quality/gpu_check.md > "$OUT/gpu_check.md" 2>/dev/null || true
echo "gpu_check.sh: results in $OUT (exit status $status)"
exit "$status"
