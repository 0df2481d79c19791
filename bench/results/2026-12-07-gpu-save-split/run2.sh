#!/usr/bin/env bash
# Second call (about 290 s: the session's device time was nearly spent), after the upload went
# through a mapped staging ring: where llama-1.1b's load goes (bench/probes/upload.ts), its fp16
# load twice, saved and reloaded twice; meanwhile, on the same GPU, issue 29's trained model
# (scripts/train-docstring-llama.py, 60 s of training).
source bench/h200.sh
R=$RESULTS
node dist/fixtures/cli.js tiny llama > /dev/null
log "python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 60"
python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out $R/docstring-llama --seconds 60 > $R/train.txt 2> $R/train-progress.txt &
TRAIN=$!
presets llama-1.1b
step "llama-1.1b written"
log "node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64"
node dist/bench/probes/upload.js --model /tmp/llama-1.1b --mib 2048 --chunks 2,8 --flushes 64 2>&1 | grep -v '^Warning\|artificially' | tee $R/upload-probe.jsonl >> $R/commands.txt
step "llama-1.1b fp16: load twice, save, reload twice"
for i in 1 2; do [ $(left) -gt 40 ] && REPEATS=1 NEW_TOKENS=8 bench llama-1.1b float16 wgsl 1 16 > /dev/null; done
[ $(left) -gt 40 ] && REPEATS=1 NEW_TOKENS=8 FLAGS="--save_mp_checkpoint_path /tmp/llama-1.1b-f16-saved" bench llama-1.1b float16 wgsl 1 16 > /dev/null
for i in 1 2; do [ $(left) -gt 25 ] && REPEATS=1 NEW_TOKENS=8 bench llama-1.1b-f16-saved float16 wgsl 1 16 > /dev/null; done
wait $TRAIN
cat $R/train.txt >> $R/commands.txt
step "end"
finish
