#!/usr/bin/env bash
# One archive, N array tasks: each segments its own disjoint share of the scenes.
#
#   sbatch --array=1-8 examples/slurm_array.sh SCENES OUT_DIR MODEL.pt
#
# SCENES is anything `glnet segment` takes: a folder, a glob, @list.txt or a STAC
# catalogue. glnet reads its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT
# (counting from SLURM_ARRAY_TASK_MIN), so task 3 of --array=1-8 runs shard 3/8 and
# writes OUT_DIR/report.shard-3-of-8.json. Requeue or resubmit any task: --skip-existing
# keeps the masks it finished. Outside Slurm: GLNET_SHARD=3/8 examples/slurm_array.sh ...
# (AWS Batch sets AWS_BATCH_JOB_ARRAY_INDEX; a Kubernetes indexed job
# JOB_COMPLETION_INDEX, with GLNET_SHARD_COUNT=N for --shard-count).
#SBATCH --job-name=glnet
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
set -euo pipefail
scenes=${1:?usage: slurm_array.sh SCENES OUT_DIR MODEL.pt}
out=${2:?output folder}
model=${3:?model file}
mkdir -p "$out/masks"

shard=()
[[ -n ${GLNET_SHARD:-} ]] && shard+=(--shard "$GLNET_SHARD")
[[ -n ${GLNET_SHARD_COUNT:-} ]] && shard+=(--shard-count "$GLNET_SHARD_COUNT")

# Failed scenes are in the shard's report; the task's exit code says whether any failed.
glnet segment "$scenes" -o "$out/masks" --model "$model" "${shard[@]}" \
  --skip-existing --cog --preview --report "$out/report.json" --overwrite
