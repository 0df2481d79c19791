#!/usr/bin/env bash
# Issue 27 item 4: llama.cpp's Vulkan build beside the WGSL engine on the device's GPU, side by side
# in one bench process per shape (fusegen bench --pipelines wgsl,llamacpp), float16 (llama.cpp F16)
# and int4 (fusegen's int4 against llama.cpp Q4_0), batch 1 and 8, prompts of 128 and 512 tokens.
# Carries the llama.cpp pack (pack.sh here), not the main one:
#   rm -rf .gpu && mv .gpu-llamacpp .gpu && DEADLINE=540 bash bench/results/2026-12-08-gpu-llamacpp-peer/run.sh
# (carry: .gpu-llamacpp and dist). First a check that llama.cpp's batched rows are right on this GPU:
# greedy float32 texts of a batch of eight, llama.cpp against the WGSL engine (they must agree).
source bench/h200.sh
R=$RESULTS
M="node dist/src/cli/main.js"
node dist/fixtures/cli.js tiny llama > /dev/null
(presets llama-1.1b qwen2.5-0.5b bloom-560m llama-3.2-1b > /dev/null 2>&1) &
step "batched rows on this GPU: generate --batch_size 8, float32, llama.cpp Vulkan and the WGSL engine"
G=(--model fixtures/models/tiny-llama --device webgpu --dtype float32 --batch_size 8 --max_new_tokens 24)
log "$M generate ${G[*]} --engine llamacpp"; timeout 60 $M generate "${G[@]}" --engine llamacpp > $R/batch8-llamacpp.txt 2>&1; echo "rc=$? [batch8-llamacpp]" >> $R/commands.txt
log "$M generate ${G[*]} --use_kernel --kernels wgsl"; timeout 60 $M generate "${G[@]}" --use_kernel --kernels wgsl > $R/batch8-wgsl.txt 2>&1; echo "rc=$? [batch8-wgsl]" >> $R/commands.txt
diff <(grep "^out=" $R/batch8-llamacpp.txt) <(grep "^out=" $R/batch8-wgsl.txt) > $R/batch8-diff.txt; echo "texts differ in $(grep -c '^<' $R/batch8-diff.txt) of $(grep -c "^out=" $R/batch8-wgsl.txt) lines" >> $R/commands.txt
wait
step "presets written"
for shape in "llama-1.1b float16" "llama-1.1b int4" "qwen2.5-0.5b float16" "bloom-560m float16" "llama-3.2-1b float16" "qwen2.5-0.5b int4" "bloom-560m int4" "llama-3.2-1b int4"; do
  set -- $shape
  [ $(left) -gt 120 ] || break
  step "$1 $2: wgsl, llamacpp"
  NEW_TOKENS=64 REPEATS=3 bench $1 $2 wgsl,llamacpp 1,8 128,512 > /dev/null 2>&1
  finish  # what has finished comes back even if the call is cut short
done
step "end"
finish
