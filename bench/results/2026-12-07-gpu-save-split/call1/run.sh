#!/usr/bin/env bash
# Issue 24 on the GPU machine: --save_mp_checkpoint_path (opt-1.3b int4 reload against
# quantize-on-load, llama-1.1b fp16), --world_size on one GPU (llama-1.1b, ranks sharing it),
# load time and peak RSS of the 3B-class presets; and issue 21's tiny-gemma2 against HF with
# the eager attention fix. Deadline-driven: each step runs only if time is left.
#   bash bench/results/2026-12-07-gpu-save-split/call1/run.sh     (on the device, carrying .gpu and dist)
source bench/h200.sh
R=$RESULTS
# run <label> <cmd...>: one command, its output to $R/<label>.txt, its rc logged
run() { local label=$1; shift; log "$*"; "$@" > "$R/$label.txt" 2>&1; echo "rc=$? [$label]" >> $R/commands.txt; grep -v '^Warning\|artificially' "$R/$label.txt" | tail -4 >> $R/commands.txt; sync_out; }

node dist/fixtures/cli.js tiny gemma2 > /dev/null
presets opt-1.3b llama-1.1b &
PRESETS_PID=$!
step "issue 21: tiny-gemma2 against HF (eager attention)"
run gemma2-hf timeout 120 node dist/src/cli/main.js compare --num_inputs 4 --min_length 30 --max_length 40 --speed_repeats 1 --report_dir $R/reports --model fixtures/models/tiny-gemma2 --use_kernel --reference hf
wait $PRESETS_PID
step "presets written"

M="node dist/src/cli/main.js"
G="$M generate --device webgpu --use_kernel --greedy --max_new_tokens 32 --batch_size 2"
step "save: opt-1.3b int4, quantize-on-load then reload, twice each (bench rows carry the load)"
for i in 1 2; do
  [ $(left) -gt 120 ] || break
  REPEATS=1 NEW_TOKENS=8 FLAGS="--save_mp_checkpoint_path /tmp/opt-1.3b-int4-saved" bench opt-1.3b int4 wgsl 1 16 > /dev/null
  REPEATS=1 NEW_TOKENS=8 bench opt-1.3b-int4-saved int4 wgsl 1 16 > /dev/null
done
run opt-int4-source $G --dtype int4 --model /tmp/opt-1.3b
run opt-int4-saved $G --dtype int4 --model /tmp/opt-1.3b-int4-saved
diff <(grep -v time $R/opt-int4-source.txt) <(grep -v time $R/opt-int4-saved.txt) > /dev/null; echo "opt-1.3b int4 saved vs fresh, greedy texts identical: rc=$?" >> $R/commands.txt

step "world_size on one GPU: llama-1.1b fp16"
run llama-ws1 $G --dtype float16 --model /tmp/llama-1.1b
run llama-ws2 $G --dtype float16 --model /tmp/llama-1.1b --world_size 2
diff <(grep -v 'time\|world_size' $R/llama-ws1.txt) <(grep -v 'time\|world_size' $R/llama-ws2.txt) > /dev/null; echo "llama-1.1b world_size 2 vs 1, greedy texts identical: rc=$?" >> $R/commands.txt
for ws in 1 2; do
  [ $(left) -gt 60 ] || break
  FLAGS="--world_size $ws" bench llama-1.1b float16 wgsl 1,8 16 > /dev/null
done

step "save: llama-1.1b fp16, fresh then reload"
[ $(left) -gt 80 ] && { REPEATS=1 NEW_TOKENS=8 FLAGS="--save_mp_checkpoint_path /tmp/llama-1.1b-f16-saved" bench llama-1.1b float16 wgsl 1 16 > /dev/null; REPEATS=1 NEW_TOKENS=8 bench llama-1.1b-f16-saved float16 wgsl 1 16 > /dev/null; }

step "load of the 3B-class presets (fp16, WGSL)"
if [ $(left) -gt 150 ]; then
  presets phi-3-mini bloom-3b
  for p in phi-3-mini bloom-3b; do [ $(left) -gt 40 ] && REPEATS=1 NEW_TOKENS=8 bench $p float16 wgsl 1 16 > /dev/null; done
fi
step "end"
finish
