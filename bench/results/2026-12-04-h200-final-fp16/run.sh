source bench/h200.sh
echo "commit $(cat .cache/rev)" >> "$RESULTS/commands.txt"
presets opt-125m bloom-560m opt-1.3b llama-1.1b
finish
# fp16 on WebGPU, every pipeline of the final build side by side, one process per model
for m in opt-125m bloom-560m llama-1.1b opt-1.3b; do bench $m float16 wgsl,ort,reference 1,8 16; finish; done
