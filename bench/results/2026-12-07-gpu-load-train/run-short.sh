#!/usr/bin/env bash
# The last few minutes of device time: issue 28's serve sweep alone (llama-1.1b fp16, WGSL engine,
# 64 slots; bench --url at concurrency 1, 8 and 64), then llama-1.1b's load line.
#   DEADLINE=220 bash bench/results/2026-12-07-gpu-load-train/run-short.sh
source bench/h200.sh
R=$RESULTS
M="node dist/src/cli/main.js"
presets llama-1.1b
step "llama-1.1b written"
log "$M serve --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_batch_size 64 --max_model_len 512 --port 8011"
$M serve --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_batch_size 64 --max_model_len 512 --port 8011 > $R/serve-64.log 2>&1 &
PID=$!
for i in $(seq 60); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
step "serving"
ARGS=(--url http://127.0.0.1:8011 --concurrency 1,8,64 --num_prompts 128 --max_seconds 20 --timeout_s 40 --prompt_lengths 128 --max_new_tokens 128 --ignore_eos --tokenizer /tmp/llama-1.1b --report_dir $R/serve-64)
log "$M bench ${ARGS[*]}"
timeout $(( $(left) - 25 )) $M bench "${ARGS[@]}" > $R/serve-bench-64.txt 2>&1
echo "rc=$? [serve-bench-64]" >> $R/commands.txt
curl -s http://127.0.0.1:8011/metrics > $R/serve-metrics-64.txt
kill -INT $PID; wait $PID
grep -E "Point|Output token throughput|Median TTFT|Median TPOT|Successful|Failed" $R/serve-bench-64.txt >> $R/commands.txt
step "end"
finish
