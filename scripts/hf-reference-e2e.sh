#!/usr/bin/env bash
# compare --reference hf end to end on the GPU machine (node + python with torch/transformers).
source .gpu/setup.sh
R=/tmp/results; mkdir -p $R
node dist/fixtures/cli.js tiny llama opt gemma2 > /dev/null
python3 - <<'PY'
import json, shutil
shutil.copytree('fixtures/models/tiny-llama', '/tmp/llama-rope5', dirs_exist_ok=True)
c = json.load(open('/tmp/llama-rope5/config.json'))
c.pop('rope_theta', None)
c['rope_parameters'] = {'rope_type': 'default', 'rope_theta': 500000.0}
json.dump(c, open('/tmp/llama-rope5/config.json', 'w'), indent=2)
PY
C="node dist/src/cli/main.js compare --num_inputs 4 --min_length 30 --max_length 40 --speed_repeats 1 --report_dir $R/reports"
i=0
# Each step's command, exit code and last lines go to $R/commands.txt as it finishes (and to
# $OUT/commands.txt, so that a run cut short still says what it did).
step() {
  i=$((i+1))
  { echo "+ [$i] $*"; env "$@" > $R/step$i.log 2>&1; echo "rc=$? [$i]"; tail -4 $R/step$i.log; } | tee -a $R/commands.txt >> "${OUT:-/dev/null}/commands.txt"
}
step FUSEGEN_TEST_MISREAD=rope_parameters $C --model /tmp/llama-rope5 --use_kernel --reference transformersjs
step FUSEGEN_TEST_MISREAD=rope_parameters $C --model /tmp/llama-rope5 --use_kernel --reference hf
step X=1 $C --model /tmp/llama-rope5 --use_kernel --reference hf
step X=1 $C --model fixtures/models/tiny-opt --use_kernel --reference hf
step X=1 $C --model fixtures/models/tiny-llama --use_kernel --reference hf --device webgpu --dtype float16
step X=1 $C --model fixtures/models/tiny-gemma2 --use_kernel --reference hf
cat $R/commands.txt
cd /tmp && tar czf $OUT/hf-reference-e2e.tar.gz results
