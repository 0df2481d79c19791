#!/usr/bin/env bash
# Steps of a GPU-machine run (see ../shared/gpu/README.md), carrying .gpu and dist. Source it and
# call the steps; everything lands in /tmp/results and is packed into $OUT/results.tar.gz (the
# device tool returns at most 8 files), with a log of every command.
#   source bench/h200.sh
#   presets opt-1.3b llama-1.1b                  # random-weight checkpoints of real shape, in parallel
#   bench opt-1.3b float16 wgsl,ort,reference 1,8 16,128 [ENV=VALUE ...]   # fusegen bench on WebGPU, one process (benchcpu: on the CPU)
#   peer llama-1.1b [--compile [--batch_sizes 1]]  # HF transformers PyTorch fp16 on the same checkpoint
#   kernels [--shapes 6144x2048 --T 1,8 ...]     # the linear kernels' micro-benchmark
#   finish                                       # pack the results
source .gpu/setup.sh
RESULTS=/tmp/results
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader > "$RESULTS/gpu.txt"
log() { echo "+ $*" >> "$RESULTS/commands.txt"; }

# A call under a deadline (DEADLINE seconds from sourcing; the device's limit is 600): `left` says
# what is left, `step` marks progress in commands.txt and copies it to $OUT, so a call cut short
# still tells where it got to.
START=$(date +%s); DEADLINE=${DEADLINE:-560}
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
sync_out() { [ -n "$OUT" ] && cp "$RESULTS/commands.txt" "$OUT/commands.txt" 2>/dev/null; }
step() { echo "== $* at $(( $(date +%s) - START )) s" >> "$RESULTS/commands.txt"; sync_out; }

presets() {
  for p in "$@"; do
    [ -d "/tmp/$p" ] || { log "node dist/fixtures/cli.js preset $p /tmp/$p"; node dist/fixtures/cli.js preset "$p" "/tmp/$p" & }
  done
  wait
}

# bench <preset> <dtype> <pipelines> <batch sizes> <prompt lengths> [ENV=VALUE ...]   (WebGPU)
# benchcpu <preset> <dtype> <pipelines> <batch sizes> <prompt lengths> [ENV=VALUE ...]
# (NEW_TOKENS and REPEATS in the caller's environment override 64 new tokens and 3 measured runs,
#  FLAGS adds bench flags, e.g. FLAGS=--profile;
#  BUILD=.cache/base runs another build carried along (its dist, src/kernels/wgsl and package.json),
#  for side-by-side A/B; its reports' folders are named after it)
bench() { bench_on webgpu "$@"; }
benchcpu() { bench_on cpu "$@"; }

bench_on() {
  local device=$1 preset=$2 dtype=$3 pipelines=$4 batches=$5 prompts=$6
  shift 6
  local dir
  dir=$(mktemp -d "$RESULTS/$preset-$dtype-$device${BUILD:+-$(basename "$BUILD")}-XXXX")
  local args=(--model "/tmp/$preset" --device "$device" --dtype "$dtype" --pipelines "$pipelines" --batch_sizes "$batches" --prompt_lengths "$prompts" --max_new_tokens "${NEW_TOKENS:-64}" --repeats "${REPEATS:-3}" ${FLAGS:-})
  local main=${BUILD:+$BUILD/}dist/src/cli/main.js
  log "[$dir] env $* node $main bench ${args[*]}"
  env "$@" node "$main" bench "${args[@]}" --report_dir "$dir" 2>&1 | grep -v '^Warning\|artificially' | tee "$dir/table.txt"
}

peer() {
  local preset=$1
  shift
  log "python3 bench/peers/hf_peer.py --model /tmp/$preset --batch_sizes 1,8 $*"
  local name="peer-$preset${1:+-compile}"
  # stderr (torch.compile's autotuning tables) goes to a log; the one line per batch size to stdout
  PYTHONUNBUFFERED=1 python3 bench/peers/hf_peer.py --model "/tmp/$preset" --batch_sizes 1,8 "$@" --out "$RESULTS/$name.json" 2> "$RESULTS/$name.log"
}

# kernels [flags of bench/kernels-linear.ts]   (default: --T 1,8 --weights f16,q8,q4)
kernels() {
  local args=("$@")
  [ $# -gt 0 ] || args=(--T 1,8 --weights f16,q8,q4)
  log "node dist/bench/kernels-linear.js ${args[*]}"
  node dist/bench/kernels-linear.js "${args[@]}" 2>&1 | grep -v '^Warning\|artificially' >> "$RESULTS/kernels-linear.txt"
}

finish() {
  find "$RESULTS" -name '*.html' -size +2M -delete
  tar czf "$OUT/results.tar.gz" -C /tmp results
}
