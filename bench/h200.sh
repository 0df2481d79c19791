#!/usr/bin/env bash
# Runs on the GPU machine (see ../shared/gpu/README.md), carrying .gpu and dist; results in $OUT.
#   bash bench/h200.sh probe | tiny | kernels | <preset>[:dtype[:pipelines]] ...
#   e.g. bash bench/h200.sh kernels opt-1.3b:float16:wgsl,ort,reference opt-1.3b:int4:wgsl
set -u
source .gpu/setup.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
for what in "$@"; do
  case "$what" in
    probe) node dist/bench/probes/gqa-prefill.js webgpu > "$OUT/gqa-prefill-webgpu.jsonl" 2>&1 ;;
    kernels) node dist/bench/kernels-linear.js --T 1,8 --weights f16,q8,q4 2>&1 | grep -v '^Warning' > "$OUT/kernels-linear.txt" ;;
    tiny)
      node dist/fixtures/cli.js tiny > /dev/null
      for a in gpt2 opt bloom llama; do
        echo "=== tiny-$a --use_kernel --device webgpu (float16)"
        node dist/src/cli/main.js generate --model "fixtures/models/tiny-$a" --use_kernel --device webgpu --greedy --max_new_tokens 16 --batch_size 8 --test_performance 2>&1 | grep -v '^Warning'
      done > "$OUT/generate-tiny-webgpu.txt" ;;
    *)
      IFS=: read -r preset dtype pipelines <<< "$what"
      dtype=${dtype:-float16}; pipelines=${pipelines:-wgsl,ort,reference}
      [ -d "/tmp/$preset" ] || node dist/fixtures/cli.js preset "$preset" "/tmp/$preset"
      node dist/src/cli/main.js bench --model "/tmp/$preset" --device webgpu --dtype "$dtype" --pipelines "$pipelines" \
        --batch_sizes 1,8 --prompt_lengths 16 --max_new_tokens 64 --repeats 3 --report_dir "$OUT" 2>&1 | grep -v '^Warning' ;;
  esac
done
