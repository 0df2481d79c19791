source bench/h200.sh
git_rev=$(cat .cache/rev 2>/dev/null); echo "commit $git_rev" >> "$RESULTS/commands.txt"
presets bloom-560m opt-1.3b
finish
# A: the default WebGPU EP options (storageBufferCacheMode simple), both pipelines, profiled
FLAGS=--profile bench bloom-560m float16 ort,reference 1,8 16; finish
# B: ORT's own default buffer cache (bucket), same build, same machine session
FLAGS=--profile bench bloom-560m float16 ort 1,8 16 'FUSEGEN_ORT_WEBGPU_OPTIONS={"storageBufferCacheMode":"bucket"}'; finish
# int4 at accuracy level 0 (default on webgpu) and 4 (DP4A for M >= 4)
bench opt-1.3b int4 ort 1,8 16; finish
FLAGS='--accuracy_level 4' bench opt-1.3b int4 ort 1,8 16; finish
FLAGS='--accuracy_level 4' bench bloom-560m int4 ort 1,8 16; finish
