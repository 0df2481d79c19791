source bench/h200.sh
git_rev=$(cat .cache/rev 2>/dev/null); echo "commit $git_rev" >> "$RESULTS/commands.txt"
presets opt-125m bloom-560m opt-1.3b llama-1.1b
finish
for m in opt-125m bloom-560m llama-1.1b opt-1.3b; do bench $m float16 wgsl,ort,reference 1,8 16; finish; done
