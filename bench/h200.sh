#!/usr/bin/env bash
# Kernel-injection run on the GPU machine (see ../shared/gpu/README.md): carry .gpu and dist.
#   bash bench/h200.sh probe|tiny|<preset>...   results go to $OUT
set -u
source .gpu/setup.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
for what in "$@"; do
  case "$what" in
    probe) node dist/bench/probes/gqa-prefill.js webgpu > "$OUT/gqa-prefill-webgpu.jsonl" 2>&1 ;;
    tiny)
      node dist/fixtures/cli.js tiny > /dev/null
      for a in gpt2 opt bloom llama; do
        echo "=== tiny-$a --use_kernel --device webgpu (float16)"
        node dist/src/cli/main.js generate --model "fixtures/models/tiny-$a" --use_kernel --device webgpu --greedy --max_new_tokens 16 --batch_size 8 --test_performance 2>&1 | grep -v '^Warning'
      done > "$OUT/generate-tiny-webgpu.txt" ;;
    *)
      [ -d "/tmp/$what" ] || node dist/fixtures/cli.js preset "$what" "/tmp/$what"
      node dist/bench/decode.js --model "/tmp/$what" --device webgpu --dtype float16 --pipelines injected,reference \
        --batch_sizes 1,8 --max_new_tokens 64 --repeats 3 --out "$OUT/decode-$what-webgpu-float16.json" 2>&1 | grep -v '^Warning' | cut -c1-400 ;;
  esac
done
