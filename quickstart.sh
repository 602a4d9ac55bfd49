#!/usr/bin/env bash
# Quickstart: from a fresh checkout to a trained DDPM and a grid of its samples, in a few CPU minutes.
#
#   bash quickstart.sh
#
# 1. a virtual environment in .venv (Python 3.10+), with a CPU build of torch, then this project;
# 2. `accelerate launch train_accelerate.py` on the 2,000 Fashion-MNIST images shipped in
#    data/fashion-mnist-sample: the default U-Net (0.86M parameters), a few hundred optimizer steps;
# 3. the result loaded back the way anyone would load it from the Hub, with plain diffusers
#    (`DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`), and a new grid of samples.
#
# Environment knobs: PYTHON (default python3), TORCH_INDEX_URL (where the CPU torch wheel comes
# from; empty for pip's configured index), QUICKSTART_STEPS (default 300).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
STEPS="${QUICKSTART_STEPS:-300}"
OUT="quickstart-output"
START=$SECONDS

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "quickstart.sh needs Python 3.10 or newer, found " + sys.version.split()[0])'

echo "== 1/3  Installing into .venv"
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
# torch first, as a CPU build: a plain `pip install torch` on Linux pulls the large CUDA build. The
# CPU index is used when it answers; otherwise (offline mirrors, a local wheel) pip's own configuration.
if [ -n "$TORCH_INDEX_URL" ] && python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
        "$TORCH_INDEX_URL/torch/" 2>/dev/null; then
    pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
    pip install --quiet torch==2.13.0
fi
pip install --quiet -e .
pip install --quiet tensorboard  # for the training curves in $OUT/logs
echo "   installed in $((SECONDS - START)) s"

echo "== 2/3  Training on the embedded Fashion-MNIST sample ($STEPS steps)"
TRAIN_START=$SECONDS
accelerate launch --num_processes 1 --num_machines 1 --num_cpu_threads_per_process "$(nproc)" \
    --mixed_precision no --dynamo_backend no \
    train_accelerate.py \
    --output_dir "$OUT" --overwrite_output_dir \
    --resolution 28 \
    --train_batch_size 32 --max_train_steps "$STEPS" \
    --learning_rate 2e-3 --lr_warmup_steps 50 \
    --use_ema \
    --ddpm_num_steps 1000 --ddpm_num_inference_steps 100 \
    --save_images_epochs 1000 --save_model_epochs 1000 \
    --checkpointing_steps "$STEPS"
echo "   trained in $((SECONDS - TRAIN_START)) s"

echo "== 3/3  Loading $OUT with plain diffusers and sampling"
python - "$OUT" <<'PY'
import sys

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import make_image_grid

out = sys.argv[1]
pipe = DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
print(f"   loaded {type(pipe).__name__} (U-Net: {type(pipe.unet).__name__}, "
      f"{sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.2f}M parameters; "
      f"scheduler: {type(pipe.scheduler).__name__}, {pipe.scheduler.config.beta_schedule})")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(1), num_inference_steps=100).images
make_image_grid(images, rows=4, cols=4).resize((4 * 28 * 4, 4 * 28 * 4), resample=0).save(f"{out}/quickstart-samples.png")
PY

cat <<EOF

Done in $((SECONDS - START)) s. Everything is in $OUT/:
  model_index.json, pipeline.py, unet/, scheduler/   the trained pipeline (loads with DiffusionPipeline.from_pretrained)
  samples.png                                        samples drawn at the end of training (EMA weights)
  quickstart-samples.png                             16 new samples from the reloaded pipeline (seed 1)
  README.md                                          the model card, with the training configuration
$(printf '  %-50s' "checkpoint-$STEPS/") the full training state (--resume_from_checkpoint latest)
  logs/                                              TensorBoard: .venv/bin/tensorboard --logdir $OUT/logs
Next: bash .ci/run   (the test suite)
EOF
