#!/usr/bin/env bash
# Load time and peak RSS during load, on the CPU (ONNX Runtime) and on lavapipe (the WGSL engine,
# whose GPU buffers are host memory there), with and without --use_meta_tensor.
#   bash bench/results/2026-12-07-cpu-load-rss/run.sh <scratch dir> [<fusegen build of aa5e791>] [sections]
# from the repository root, after npm run build; sections (default all): bench,generate,before-after.
set -euo pipefail
S=$1; OLD=${2:-}; SECTIONS=${3:-bench,generate,before-after}
on() { [[ ",$SECTIONS," == *",$1,"* ]]; }
HERE=bench/results/2026-12-07-cpu-load-rss
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json
mkdir -p "$S" "$HERE/raw"
for m in opt-125m llama-1.1b; do
  [ -f "$S/$m/config.json" ] || node dist/fixtures/cli.js preset $m "$S/$m"
done
bench() { # name model pipelines device dtype cache [flags]
  local name=$1 m=$2 p=$3 dev=$4 dt=$5 cache=$6; shift 6
  rm -rf "$S/r"; mkdir -p "$S/r"
  FUSEGEN_CACHE=$cache node dist/src/cli/main.js bench --model "$S/$m" --pipelines $p --device $dev --dtype $dt \
    --repeats 1 --max_new_tokens 2 --prompt_lengths 16 --report_dir "$S/r" "$@" > "$HERE/raw/$name.txt" 2>/dev/null
  cp "$S"/r/*-bench.json "$HERE/raw/$name-bench.json"
}
on bench && for m in opt-125m llama-1.1b; do
  for p in ort reference; do
    rm -rf "$S/cache-$m-$p"
    bench $m-$p-cold $m $p cpu float32 "$S/cache-$m-$p"                    # the export written, then loaded
    bench $m-$p-warm $m $p cpu float32 "$S/cache-$m-$p"                    # the export reused
    bench $m-$p-warm-meta $m $p cpu float32 "$S/cache-$m-$p" --use_meta_tensor
    rm -rf "$S/cache-$m-$p"
    bench $m-$p-cold-meta $m $p cpu float32 "$S/cache-$m-$p" --use_meta_tensor
  done
done
on bench && for dt in float16 int4; do
  bench opt-125m-wgsl-$dt opt-125m wgsl webgpu $dt "$S/cache-wgsl"
  bench opt-125m-wgsl-$dt-meta opt-125m wgsl webgpu $dt "$S/cache-wgsl" --use_meta_tensor
done
# ONNX Runtime's WebGPU EP on lavapipe: the ORT-injected graph, float16, exported then reused.
if on bench; then
  rm -rf "$S/cache-ort-webgpu"
  bench opt-125m-ort-webgpu-float16-cold opt-125m ort webgpu float16 "$S/cache-ort-webgpu"
  bench opt-125m-ort-webgpu-float16-warm opt-125m ort webgpu float16 "$S/cache-ort-webgpu"
  bench opt-125m-ort-webgpu-float16-warm-meta opt-125m ort webgpu float16 "$S/cache-ort-webgpu" --use_meta_tensor
fi
# generate --test_performance's Load line (plain pipeline: fusegen's loop on the plain graph): the
# export written (cold) then reused (warm), without and with the flag, as the bench rows above.
gen() { # name cache [flags]
  local name=$1 cache=$2; shift 2
  FUSEGEN_CACHE=$cache node dist/src/cli/main.js generate --model "$S/opt-125m" --greedy --max_new_tokens 8 --test_performance "$@" \
    > "$HERE/raw/opt-125m-generate-plain-$name.txt" 2>/dev/null
}
if on generate; then
  rm -rf "$S/cache-gen"; gen cold "$S/cache-gen"; gen warm "$S/cache-gen"; gen warm-meta "$S/cache-gen" --use_meta_tensor
  rm -rf "$S/cache-gen"; gen cold-meta "$S/cache-gen" --use_meta_tensor
fi
# The WGSL upload before streaming (aa5e791) and after, by the same script.
if [ -n "$OLD" ] && on before-after; then
  for kind in wgsl upload; do
    for dt in float16 int4; do
      for i in 1 2 3; do
        for root in "$OLD" "$PWD"; do
          node $HERE/measure-load.mjs "$root" "$S/opt-125m" $kind webgpu $dt 2>/dev/null | tail -1
        done
      done
    done
  done > "$HERE/raw/wgsl-before-after.jsonl"
fi
