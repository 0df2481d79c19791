#!/usr/bin/env bash
# Issue 29 item 2, float16: what compare catches among the planted defects on a GPU (the WGSL
# engine in float16 against transformers.js in float32 on ORT's WebGPU EP, beside the float16
# floor: fusegen's plain graph at float16 there; since 2026-12-08), counted among the
# defects whose float32 effect (from the CPU run of the same seed and count) exceeds 0.05.
# Four processes in parallel, two architectures each; one JSON line per run.
#   DEADLINE=540 bash bench/results/2026-12-07-gpu-fp16-defects/run.sh   (on the device, carrying .gpu and dist)
source bench/h200.sh
R=$RESULTS
FROM=bench/results/2026-12-07-cpu-defect-detection/detection.jsonl
step "float16 defect detection, WGSL engine on the GPU"
for pair in gpt2,opt bloom,llama gpt_neox,gptj phi3,gemma2; do
  log "DEVICE=webgpu KERNELS=wgsl MATERIAL_FROM=$FROM node scripts/defect-detection.mjs $pair float16 16 1 1"
  DEVICE=webgpu KERNELS=wgsl MATERIAL_FROM=$FROM timeout $(( $(left) - 20 )) node scripts/defect-detection.mjs $pair float16 16 1 1 > $R/detection-float16-${pair/,/-}.jsonl 2> $R/detection-float16-${pair/,/-}.err &
done
wait
grep -h summary $R/detection-float16-*.jsonl >> $R/commands.txt
step "end"
finish
