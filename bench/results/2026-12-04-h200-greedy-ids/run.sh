source bench/h200.sh
echo "commit $(cat .cache/rev) (BUILD=.cache/base: 01b8f57)" >> "$RESULTS/commands.txt"
presets bloom-560m opt-1.3b opt-125m llama-1.1b
finish
# greedy ids from the graph (this build) against reading back logits (.cache/base), separate processes, one machine session
for m in bloom-560m opt-1.3b opt-125m llama-1.1b; do
  bench $m float16 ort,reference 1,8 16; finish
  BUILD=.cache/base bench $m float16 ort 1,8 16; finish
done
