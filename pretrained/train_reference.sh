#!/usr/bin/env bash
# Train the reference Fashion-MNIST pipeline shipped in pretrained/ddpm-fashion-mnist/.
#
# The project's default model and schedule (U-Net dim 16, dim_mults 1,2,4, ResNet blocks, linear
# attention at 14x14, softmax attention at 7x7, cosine schedule, T = 1000, epsilon prediction, Huber loss with
# min-SNR-5 weighting of the timesteps), class-conditional on the Fashion-MNIST label with 10% label
# dropout (so it can also be sampled with classifier-free guidance), trained with train_accelerate.py
# on the full official training split: 11,000 steps at batch 64, the rate warmed up over 200 steps,
# held at 2e-3 and cooled linearly to 0 over the last 4,400 (warmup-stable-decay). The run keeps
# power-function EMA snapshots every 500 steps (Karras et al. 2024); the shipped weights are their
# post-hoc average of width sigma_rel = 0.05, built after training by `annotated-pipeline export`
# (benchmarks/RESULTS.md, "Time to quality": the recipe `wsd-b64-lr2e-3-long-posthoc`, and why 0.05).
#
# The run checkpoints every 500 steps and every launch resumes from the newest complete checkpoint
# (`--resume_from_checkpoint latest`; a fresh folder starts from scratch): an interrupted run loses at most
# 500 steps, and running the script again carries on. The wall-clock seconds of the training, attempts that
# were stopped included, go to $RUN/timing.tsv; the pipeline to package is $RUN/stage-11000.
# `accelerate launch` gives a process one CPU thread unless told otherwise, hence --num_cpu_threads_per_process.
#
#   bash pretrained/train_reference.sh     # RUN=runs/wsd-posthoc SIGMA_REL=0.05
#   python pretrained/package_reference.py --run runs/wsd-posthoc --final_stage 11000 ...   # the card's line
#
# About 43 minutes on a quiet 2-core AMD EPYC with AVX-512 BF16. Extra arguments go to train_accelerate.py
# and override the recipe's (argparse keeps the last); a changed recipe needs a fresh RUN folder, since
# resuming checks that the arguments match the checkpoint's.
# Needs the official files: apt-get install dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
set -euo pipefail

# Everything runs inside main, which bash parses whole before running it, and the last line calls it
# and exits in one command: editing this file while a run is in progress cannot change what that run executes.
main() {
  cd "$(dirname "$0")/.."

  RUN="${RUN:-runs/wsd-posthoc}"
  DATA="${DATA:-/usr/share/datasets/fashion-mnist}"
  STEPS=11000
  SIGMA_REL="${SIGMA_REL:-0.05}"
  mkdir -p "$RUN"
  trap 'exit 130' INT   # so that the EXIT trap below runs on Ctrl-C and kill too
  trap 'exit 143' TERM

  if [ ! -f "$RUN/checkpoint-$STEPS/model.safetensors" ]; then
    # Seconds spent by attempts that were stopped (Ctrl-C, kill) count too: the EXIT trap keeps them in
    # $RUN/.seconds (a machine that dies loses the current attempt's).
    START=$(date +%s)
    PRIOR=$(cat "$RUN/.seconds" 2>/dev/null || echo 0)
    trap 'echo $(( PRIOR + $(date +%s) - START )) > "$RUN/.seconds"' EXIT
    accelerate launch --num_processes 1 --num_machines 1 --num_cpu_threads_per_process "$(nproc)" --mixed_precision bf16 --dynamo_backend no \
      train_accelerate.py \
      --train_data_dir "$DATA" --output_dir "$RUN" \
      --mixed_precision bf16 --train_batch_size 64 \
      --learning_rate 2e-3 --lr_scheduler warmup_stable_decay --lr_warmup_steps 200 --lr_cooldown_steps 4400 \
      --snr_gamma 5 --label_column label --class_dropout_prob 0.1 --use_ema --posthoc_ema_every 500 \
      --max_train_steps "$STEPS" --checkpointing_steps 500 --checkpoints_total_limit 2 \
      --resume_from_checkpoint latest --logger tensorboard "$@"
    printf '%s\t%s\t%s\n' "$STEPS" "$(( PRIOR + $(date +%s) - START ))" "$(date -u +%FT%TZ)" >> "$RUN/timing.tsv"
    trap - EXIT
    rm -f "$RUN/.seconds"
  fi
  echo "reference training done: $RUN (steps, seconds, finished at: $RUN/timing.tsv)"

  if [ ! -f "$RUN/stage-$STEPS/model_index.json" ]; then
    annotated-pipeline export "$RUN/checkpoint-$STEPS" "$RUN/stage-$STEPS" --sigma_rel "$SIGMA_REL"
  fi
  echo "post-hoc average sigma_rel $SIGMA_REL: $RUN/stage-$STEPS"
}

main "$@"; exit
