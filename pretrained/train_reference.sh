#!/usr/bin/env bash
# Train the reference Fashion-MNIST pipeline shipped in pretrained/ddpm-fashion-mnist/.
#
# The project's default model and schedule (U-Net dim 16, dim_mults 1,2,4, ResNet blocks, linear
# attention at 14x14, softmax attention at 7x7, cosine schedule, T = 1000, epsilon prediction, Huber loss with
# min-SNR-5 weighting of the timesteps), class-conditional on the Fashion-MNIST label with 10% label
# dropout (so it can also be sampled with classifier-free guidance), trained with train_accelerate.py
# on the full official training split, in stages that each resume from the last checkpoint (`--resume_from_checkpoint
# latest`; the stage ends are multiples of --checkpointing_steps, so each stage starts exactly where
# the last one stopped). An interrupted run loses at most one checkpoint interval: run the script
# again and it carries on. After each stage the saved pipeline (EMA weights) is copied to
# $RUN/stage-<step>, and the wall-clock seconds of the stage go to $RUN/timing.tsv. When every stage
# is trained, each stage is evaluated in turn (Frechet distance in the features of our Fashion-MNIST
# classifier between EVAL_N samples, DDIM 50 steps, and the whole test split): the curve of distance
# against training steps. (Runs before 2026-11-30 wrote eval-ddim50-n$EVAL_N.json, judged against
# EVAL_N test images; see the evaluate module.)
# Evaluations run after training, never beside it: two torch
# processes on 2 cores slow each other 3-6x. `accelerate launch` gives a process one CPU thread
# unless told otherwise, hence --num_cpu_threads_per_process.
#
#   bash pretrained/train_reference.sh     # RUN=runs/cfg-v14 STAGES="800 1600 ... 6000 7000"
#
# The shipped model is the 7,000-step stage (about 55 minutes on a quiet 2-core machine); STAGES="... 7000 8000"
# trains on from it. Extra arguments override the recipe's (argparse keeps the last), except that the
# labels cannot be switched off: use an older revision of this script for the unconditional recipe.
#
# Extra arguments go to train_accelerate.py (e.g. --dim 28 --linear_attention_levels all for the seed's U-Net).
# Needs the official files: apt-get install dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
set -euo pipefail

# Everything runs inside main, which bash parses whole before running it, and the last line calls it
# and exits in one command: editing this file while a run is in progress (it takes an hour) cannot
# change what that run executes.
main() {
  cd "$(dirname "$0")/.."

  RUN="${RUN:-runs/cfg-v14}"
  DATA="${DATA:-/usr/share/datasets/fashion-mnist}"
  STAGES="${STAGES:-800 1600 2400 3000 4000 5000 6000 7000}"
  EVAL_N="${EVAL_N:-500}"
  mkdir -p "$RUN"
  trap 'exit 130' INT   # so that the EXIT trap below runs on Ctrl-C and kill too
  trap 'exit 143' TERM

  for STEPS in $STAGES; do
    if [ ! -f "$RUN/stage-$STEPS/model_index.json" ]; then
      # Seconds spent on this stage by attempts that were stopped (Ctrl-C, kill) count too: the EXIT
      # trap keeps them in $RUN/.seconds-<steps> (a machine that dies loses the current attempt's).
      START=$(date +%s)
      PRIOR=$(cat "$RUN/.seconds-$STEPS" 2>/dev/null || echo 0)
      trap 'echo $(( PRIOR + $(date +%s) - START )) > "$RUN/.seconds-$STEPS"' EXIT
      accelerate launch --num_processes 1 --num_machines 1 --num_cpu_threads_per_process "$(nproc)" --mixed_precision bf16 --dynamo_backend no \
        train_accelerate.py \
        --train_data_dir "$DATA" --output_dir "$RUN" \
        --mixed_precision bf16 --train_batch_size 128 \
        --learning_rate 1e-3 --lr_scheduler constant_with_warmup --lr_warmup_steps 200 --snr_gamma 5 \
        --label_column label --class_dropout_prob 0.1 \
        --use_ema --max_train_steps "$STEPS" \
        --checkpointing_steps 200 --checkpoints_total_limit 2 --resume_from_checkpoint latest \
        --save_images_epochs 1000 --save_model_epochs 1000 \
        --ddpm_num_inference_steps 100 --logger tensorboard "$@"
      mkdir -p "$RUN/stage-$STEPS"
      cp -r "$RUN"/model_index.json "$RUN"/pipeline.py "$RUN"/unet "$RUN"/scheduler "$RUN"/samples.png "$RUN"/README.md "$RUN/stage-$STEPS/"
      printf '%s\t%s\t%s\n' "$STEPS" "$(( PRIOR + $(date +%s) - START ))" "$(date -u +%FT%TZ)" >> "$RUN/timing.tsv"
      trap - EXIT
      rm -f "$RUN/.seconds-$STEPS"
    fi
  done
  echo "reference training done: $RUN (stage, seconds, finished at: $RUN/timing.tsv)"

  for STEPS in $STAGES; do
    if [ ! -f "$RUN/stage-$STEPS/eval-ddim50-n$EVAL_N-whole.json" ]; then
      python -m annotated_pipeline.evaluation.evaluate "$RUN/stage-$STEPS" --num_samples "$EVAL_N" \
        --scheduler ddim --num_inference_steps 50 --json "$RUN/stage-$STEPS/eval-ddim50-n$EVAL_N-whole.json" \
        > "$RUN/stage-$STEPS/eval-ddim50-n$EVAL_N-whole.txt" 2>&1
    fi
  done
  echo "stage evaluations done: $RUN/stage-*/eval-ddim50-n$EVAL_N-whole.json"
}

main "$@"; exit
