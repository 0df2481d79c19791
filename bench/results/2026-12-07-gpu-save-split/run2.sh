#!/usr/bin/env bash
# Second call, after the upload went through a mapped staging ring: where the load goes
# (bench/probes/upload.ts), llama-1.1b and bloom-3b fp16 loads (the 3B-class target), opt-1.3b
# int4 quantize-on-load against reload, and bloom-3b int4 (issue 22's missing row) if time is left.
source bench/h200.sh
R=$RESULTS
presets bloom-3b &
BLOOM=$!
presets llama-1.1b opt-1.3b
step "llama-1.1b, opt-1.3b written"
log "node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64"
node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64 2>&1 | grep -v '^Warning\|artificially' | tee $R/upload-probe.jsonl >> $R/commands.txt
step "llama-1.1b fp16: load twice, save, reload twice"
for i in 1 2; do REPEATS=1 NEW_TOKENS=8 bench llama-1.1b float16 wgsl 1 16 > /dev/null; done
REPEATS=1 NEW_TOKENS=8 FLAGS="--save_mp_checkpoint_path /tmp/llama-1.1b-f16-saved" bench llama-1.1b float16 wgsl 1 16 > /dev/null
for i in 1 2; do REPEATS=1 NEW_TOKENS=8 bench llama-1.1b-f16-saved float16 wgsl 1 16 > /dev/null; done
step "opt-1.3b int4: quantize-on-load (saving), reload twice"
REPEATS=1 NEW_TOKENS=8 FLAGS="--save_mp_checkpoint_path /tmp/opt-1.3b-int4-saved" bench opt-1.3b int4 wgsl 1 16 > /dev/null
for i in 1 2; do REPEATS=1 NEW_TOKENS=8 bench opt-1.3b-int4-saved int4 wgsl 1 16 > /dev/null; done
wait $BLOOM
step "bloom-3b written"
for i in 1 2; do [ $(left) -gt 60 ] && REPEATS=1 NEW_TOKENS=8 bench bloom-3b float16 wgsl 1 16 > /dev/null; done
step "issue 22: bloom-3b int4"
[ $(left) -gt 150 ] && REPEATS=3 NEW_TOKENS=64 bench bloom-3b int4 wgsl 1,8 16 > /dev/null
step "end"
finish
