source bench/h200.sh
git_rev=$(cat .cache/rev 2>/dev/null); echo "commit $git_rev (BUILD=.cache/base: 81d29c6)" >> "$RESULTS/commands.txt"
presets bloom-560m opt-1.3b opt-125m
finish
# sliced MLP (this build) against the build without it (.cache/base), separate processes, one machine session
bench bloom-560m float16 ort,reference 1,8 16; finish
BUILD=.cache/base bench bloom-560m float16 ort 1,8 16; finish
bench opt-1.3b float16 ort,reference 1,8 16; finish
BUILD=.cache/base bench opt-1.3b float16 ort 1,8 16; finish
bench opt-125m float16 ort,reference 1,8 16; finish
BUILD=.cache/base bench opt-125m float16 ort 1,8 16; finish
FLAGS=--profile bench bloom-560m float16 ort 1,8 16; finish
bench bloom-560m float16 ort 1,8 16 'FUSEGEN_ORT_WEBGPU_OPTIONS={"storageBufferCacheMode":"bucket"}'; finish
