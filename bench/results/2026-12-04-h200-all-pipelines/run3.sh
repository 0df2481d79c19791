source bench/h200.sh
presets opt-125m bloom-560m opt-1.3b llama-1.1b
for m in bloom-560m llama-1.1b opt-1.3b; do NEW_TOKENS=32 benchcpu $m float32 reference,ort 1,8 16; NEW_TOKENS=32 benchcpu $m int4 ort 1,8 16; finish; done
