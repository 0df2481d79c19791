#!/usr/bin/env bash
# fusegen serve under bench --url's concurrency sweep on the CPU (no GPU was lent this session):
# the ORT-injected pipeline, <model> with 64 slots at concurrency 1, 8, 32, 64, then the same
# engine with one slot (one request at a time) at concurrency 1 and 16.
#   bash bench/results/2026-12-07-cpu-serve-sweep/run.sh <model dir> <out dir> [prompt tokens] [new tokens]
set -u
MODEL=$1; OUT=$2; PROMPT=${3:-32}; NEW=${4:-64}
M="node dist/src/cli/main.js"
mkdir -p "$OUT"
sweep() {
  local slots=$1 port=$2 conc=$3 n=$4
  echo "+ $M serve --model $MODEL --use_kernel --max_batch_size $slots --max_model_len 256 --port $port" >> "$OUT/commands.txt"
  $M serve --model "$MODEL" --use_kernel --max_batch_size "$slots" --max_model_len 256 --port "$port" > "$OUT/serve-$slots.log" 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
  local args=(--url "http://127.0.0.1:$port" --concurrency "$conc" --num_prompts "$n" --max_seconds 40 --timeout_s 120 --prompt_lengths "$PROMPT" --max_new_tokens "$NEW" --ignore_eos --tokenizer "$MODEL" --report_dir "$OUT/slots-$slots")
  echo "+ $M bench ${args[*]}" >> "$OUT/commands.txt"
  $M bench "${args[@]}" > "$OUT/bench-$slots.txt" 2>&1
  echo "rc=$?" >> "$OUT/commands.txt"
  kill -INT $pid; wait $pid
}
sweep 64 18601 1,8,32,64 128
sweep 1 18602 1,16 16
grep -E "Point|Output token throughput|Median TTFT|Median TPOT" "$OUT"/bench-*.txt
