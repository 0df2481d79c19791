#!/usr/bin/env bash
# One device call, steps in order of priority under a deadline (a step runs only if time is left):
# - issue 29 item 8: the docstring llama trained on the GPU while the presets are written;
# - issue 24: where llama-1.1b's load goes (bench/probes/upload.ts), load time and peak RSS of
#   llama-1.1b and the 3B-class presets under the WGSL engine (fp16, warm page cache), and
#   llama-1.1b saved and reloaded;
# - issue 28: fusegen serve (WGSL engine, llama-1.1b fp16, 64 slots) under bench --url's
#   concurrency sweep, against the same engine with one slot (one request at a time);
#   DEADLINE=560 bash bench/results/2026-12-07-gpu-load-train/run.sh   (on the device, carrying .gpu and dist)
source bench/h200.sh
R=$RESULTS
run() { local label=$1; shift; log "$*"; "$@" > "$R/$label.txt" 2>&1; echo "rc=$? [$label]" >> $R/commands.txt; grep -v '^Warning\|artificially' "$R/$label.txt" | grep -i 'load\|rc=\|error\|Done' | tail -4 >> $R/commands.txt; sync_out; }
M="node dist/src/cli/main.js"

step "train the docstring llama (90 s) while llama-1.1b is written"
node dist/fixtures/cli.js tiny llama > /dev/null  # the tokenizer the model is trained with (fixtures/models is not carried)
log "python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 90"
python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 90 > $R/train.txt 2> $R/train-progress.txt &
TRAIN=$!
presets llama-1.1b
# The 3B-class presets are written meanwhile, for the loads further down.
(presets phi-3-mini bloom-3b > /dev/null 2>&1) &
step "llama-1.1b written"
[ $(left) -gt 400 ] && log "node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64" &&
timeout 60 node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64 2>&1 | grep -v '^Warning\|artificially' > $R/upload-probe.jsonl
cat $R/upload-probe.jsonl >> $R/commands.txt
run load-llama-1.1b-f16 timeout 90 $M generate --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --use_meta_tensor --max_new_tokens 8 --test_performance
wait $TRAIN
cat $R/train.txt >> $R/commands.txt
step "trained"
# Its goldens: Hugging Face transformers' greedy ids and top-10 logits (float32, CPU) on the checkpoint it wrote.
log "python3 fixtures/golden/make_goldens.py --model docstring-llama=$R/docstring-llama --out $R/docstring-llama"
python3 fixtures/golden/make_goldens.py --model docstring-llama=$R/docstring-llama --out $R/docstring-llama >> $R/commands.txt 2>&1

# serve_sweep <slots> <port> <concurrency list> <prompts>
serve_sweep() {
  local slots=$1 port=$2 conc=$3 n=$4
  log "$M serve --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_batch_size $slots --max_model_len 512 --port $port"
  $M serve --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_batch_size $slots --max_model_len 512 --port $port > $R/serve-$slots.log 2>&1 &
  local pid=$!
  for i in $(seq 60); do curl -sf http://127.0.0.1:$port/health > /dev/null && break; sleep 1; done
  local args=(--url http://127.0.0.1:$port --concurrency $conc --num_prompts $n --max_seconds 25 --timeout_s 60 --prompt_lengths 128 --max_new_tokens 128 --ignore_eos --tokenizer /tmp/llama-1.1b --report_dir $R/serve-$slots)
  log "$M bench ${args[*]}"
  timeout 170 $M bench "${args[@]}" > $R/serve-bench-$slots.txt 2>&1
  echo "rc=$? [serve-bench-$slots]" >> $R/commands.txt
  curl -s http://127.0.0.1:$port/metrics > $R/serve-metrics-$slots.txt
  kill -INT $pid; wait $pid
  grep -E "Point|Output token throughput|Median TTFT|Median TPOT|Successful|Failed" $R/serve-bench-$slots.txt >> $R/commands.txt; sync_out
}
step "issue 28: serve, 64 slots: concurrency 1, 8, 32, 64"
[ $(left) -gt 120 ] && serve_sweep 64 8011 1,8,32,64 128
step "issue 28: serve, 1 slot (one request at a time): concurrency 1, 16"
[ $(left) -gt 60 ] && serve_sweep 1 8012 1,16 16

step "llama-1.1b fp16 saved, then reloaded twice"
[ $(left) -gt 60 ] && run save-llama-f16 timeout 50 $M generate --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_new_tokens 8 --test_performance --save_mp_checkpoint_path /tmp/llama-1.1b-f16-saved
for i in 1 2; do [ $(left) -gt 40 ] && run reload-llama-f16-$i timeout 30 $M generate --model /tmp/llama-1.1b-f16-saved --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_new_tokens 8 --test_performance; done
step "3B-class fp16 loads, warm page cache"
wait
for p in phi-3-mini bloom-3b; do
  [ $(left) -gt 40 ] || break
  run load-$p-f16 timeout 40 $M generate --model /tmp/$p --device webgpu --use_kernel --kernels wgsl --dtype float16 --use_meta_tensor --max_new_tokens 8 --test_performance
done
step "end"
finish
