#!/usr/bin/env bash
# compare --reference hf end to end on the GPU machine (node + python with torch/transformers).
source .gpu/setup.sh
R=/tmp/results; mkdir -p $R
run() { echo "+ $*" | tee -a $R/commands.txt; "$@" > $R/$1.log 2>&1; echo "rc=$?" | tee -a $R/commands.txt; }
node dist/fixtures/cli.js tiny > /dev/null
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
step() { i=$((i+1)); echo "+ [$i] $*" >> $R/commands.txt; env "$@" > $R/step$i.log 2>&1; echo "rc=$? [$i]" >> $R/commands.txt; tail -4 $R/step$i.log >> $R/commands.txt; }
step FUSEGEN_TEST_MISREAD=rope_parameters $C --model /tmp/llama-rope5 --use_kernel --reference transformersjs
step FUSEGEN_TEST_MISREAD=rope_parameters $C --model /tmp/llama-rope5 --use_kernel --reference hf
step X=1 $C --model /tmp/llama-rope5 --use_kernel --reference hf
step X=1 $C --model fixtures/models/tiny-opt --use_kernel --reference hf
step X=1 $C --model fixtures/models/tiny-llama --use_kernel --reference hf --device webgpu --dtype float16
cat $R/commands.txt
cd /tmp && tar czf $OUT/hf-reference-e2e.tar.gz results
