#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md ("GPU"), one short run (about 8 min on one H200):
#   1. training throughput (img/s), trainer=gpu bf16-mixed: finetune.layers=1 and all at 224 px, batch 5 (the
#      paper's) and 32, and on cached features (cache.features=true) for layers=0 and 1, with the cache build rate;
#   2. the same under DDP over every visible GPU (layers=1 and all, batch 32 per GPU);
#   3. probe throughput for VGG-16's six default layers (conv4_1..conv5_3), bf16 autocast, with peak memory;
#   4. train.py end to end under trainer=ddp (bf16-mixed), uncached and with cache.features=true (val/nss of both).
# Prints the card's name (nvidia-smi) first. Everything goes to stdout and, when $OUT is set, to $OUT/gpu.log.
# Needs hydra-core, omegaconf and antlr4-python3-runtime: installed already, or as wheels in .whl/
# (benchmarks/gpu_wheels.sh fetches them on a machine with network).
#   bash benchmarks/gpu.sh          PYTHON=python3.12 bash benchmarks/gpu.sh
#   SMOKE=1 bash benchmarks/gpu.sh  the same steps on the CPU at toy sizes (checks the script, about 3 min)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=/dev/null
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && LOG=$OUT/gpu.log; fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d /tmp/gpu_bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl || exit 1
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
  else
    echo "hydra-core / omegaconf missing and no .whl/ folder: run benchmarks/gpu_wheels.sh where pip has network" >&2
    exit 1
  fi
fi

if [ -n "${SMOKE:-}" ]; then  # toy sizes on the CPU: every step's command line, nothing measured
  RATE=(--accelerator cpu --precision 32-true --image-size 64 --steps 2 --warmup 1 --workers 0)
  DDP=(--devices 2) BATCH1=(2) BATCH2=(2) PROBE=(--device cpu --batch-size 4 --images 4 --repeats 1 --threads 1
       --osie-hw 120 160 --image-size 64 --num-probe 4 --memory-sizes 2,4)
  TRAIN=(trainer=ddp_cpu data.image_size=64 data.num_train=8 data.num_val=4 data.batch_size=2 data.num_workers=0)
else
  RATE=() DDP=(--devices -1) BATCH1=(5 32) BATCH2=(32)
  PROBE=(--device cuda --bf16 --batch-size 32 --images 64 --repeats 3 --threads 8 --num-probe 64 --memory-sizes 16,64)
  TRAIN=(trainer=ddp data.num_train=64 data.num_val=16 data.batch_size=8 data.num_workers=4)
fi

step() { echo; echo "## $1 ($(date +%H:%M:%S))"; }
{
  step "device"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: not available"
  "$PY" -c "import torch, pytorch_lightning as pl; n = torch.cuda.device_count(); print('torch', torch.__version__, \
'| Lightning', pl.__version__, '|', n, 'visible GPU(s):', ', '.join(torch.cuda.get_device_name(i) for i in range(n)))"
  echo "CPU cores: $(nproc)"

  step "1. training throughput, one device, bf16-mixed"
  timeout 150 "$PY" benchmarks/gpu_throughput.py "${RATE[@]}" --batch-sizes "${BATCH1[@]}" --layers 1 all \
    --cached-layers 0 1 || echo "step 1 failed or timed out"

  step "2. training throughput, DDP over the visible devices"
  timeout 120 "$PY" benchmarks/gpu_throughput.py "${RATE[@]}" --strategy ddp "${DDP[@]}" --batch-sizes "${BATCH2[@]}" \
    --layers 1 all --cached-layers 1 || echo "step 2 failed or timed out"

  step "3. probe throughput, six layers (conv4_1..conv5_3)"
  timeout 180 "$PY" benchmarks/probe_speed.py "${PROBE[@]}" --root "$WORK/probe_data" || echo "step 3 failed or timed out"

  step "4. train.py under DDP, 2 epochs, finetune.layers=1: uncached vs cache.features=true"
  for mode in false true; do
    start=$SECONDS
    timeout 150 "$PY" train.py "${TRAIN[@]}" trainer.max_epochs=2 logger=none print_config=false \
      "~callbacks.progress_bar" finetune.layers=1 data.root="$WORK/train_data" paths.cache_dir="$WORK/cache" \
      cache.features=$mode hydra.run.dir="$WORK/run_cache_$mode" > "$WORK/train_$mode.log" 2>&1
    status=$?
    grep -E "^(train:|final validation|feature cache)" "$WORK/train_$mode.log"
    [ $status -eq 0 ] || { echo "train.py cache.features=$mode failed ($status):"; tail -20 "$WORK/train_$mode.log"; }
    note=""; [ "$mode" = false ] && note=" (this first run also generates the data)"
    echo "cache.features=$mode: $((SECONDS - start)) s wall$note"
  done
} 2>&1 | tee "$LOG"
