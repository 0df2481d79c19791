#!/usr/bin/env bash
# Issue 24's load targets on the GPU machine (the upload through the mapped staging ring):
# where llama-1.1b's load goes (bench/probes/upload.ts), then load time and peak RSS of
# llama-1.1b and the 3B-class presets under the WGSL engine (fp16, warm page cache), and
# llama-1.1b saved and reloaded. Issue 22: the zoo's missing int4 rows (gemma-2-2b, phi-3-mini,
# bloom-3b at batch 1 and 8, saved on the way). Issue 29 item 8: the docstring llama trained
# on the GPU while the presets are written. Deadline-driven: a step runs only if time is left.
#   DEADLINE=560 bash bench/results/2026-12-07-gpu-load-train/run.sh   (on the device, carrying .gpu and dist)
source bench/h200.sh
R=$RESULTS
run() { local label=$1; shift; log "$*"; "$@" > "$R/$label.txt" 2>&1; echo "rc=$? [$label]" >> $R/commands.txt; grep -v '^Warning\|artificially' "$R/$label.txt" | grep -i 'load\|rc=\|error' | tail -4 >> $R/commands.txt; sync_out; }
M="node dist/src/cli/main.js"

step "train the docstring llama (100 s) while the presets are written"
log "python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 100"
python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 100 > $R/train.txt 2> $R/train-progress.txt &
TRAIN=$!
presets llama-1.1b phi-3-mini bloom-3b gemma-2-2b
step "presets written"
log "node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64"
node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64 2>&1 | grep -v '^Warning\|artificially' > $R/upload-probe.jsonl
cat $R/upload-probe.jsonl >> $R/commands.txt
wait $TRAIN
cat $R/train.txt >> $R/commands.txt
step "trained"

step "fp16 loads, warm page cache (generate --test_performance: load time, weights time, peak RSS)"
for p in llama-1.1b phi-3-mini bloom-3b gemma-2-2b; do
  [ $(left) -gt 200 ] || break
  run load-$p-f16 $M generate --model /tmp/$p --device webgpu --use_kernel --kernels wgsl --dtype float16 --use_meta_tensor --max_new_tokens 8 --test_performance
done
step "llama-1.1b fp16 saved, then reloaded twice"
[ $(left) -gt 180 ] && run save-llama-f16 $M generate --model /tmp/llama-1.1b --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_new_tokens 8 --test_performance --save_mp_checkpoint_path /tmp/llama-1.1b-f16-saved
for i in 1 2; do [ $(left) -gt 170 ] && run reload-llama-f16-$i $M generate --model /tmp/llama-1.1b-f16-saved --device webgpu --use_kernel --kernels wgsl --dtype float16 --max_new_tokens 8 --test_performance; done

step "issue 22: int4 rows (quantize on load, saved), then the reload's load"
for p in gemma-2-2b bloom-3b phi-3-mini; do
  [ $(left) -gt 75 ] || break
  FLAGS="--save_mp_checkpoint_path /tmp/$p-int4-saved" bench $p int4 wgsl 1,8 16 > /dev/null
  [ $(left) -gt 40 ] && run reload-$p-int4 $M generate --model /tmp/$p-int4-saved --device webgpu --use_kernel --kernels wgsl --dtype int4 --max_new_tokens 8 --test_performance
done
step "end"
rm -rf $R/docstring-llama/checkpoint-* 2>/dev/null
finish
