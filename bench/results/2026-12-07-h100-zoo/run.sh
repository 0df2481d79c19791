# The zoo presets on the GPU machine (an H100 80GB HBM3 that day, gpu.txt), commit 499adb9's
# build; three device calls on one warm machine (the presets stayed in /tmp between them).
source bench/h200.sh
presets llama-3.2-1b qwen2.5-0.5b phi-3-mini gemma-2-2b pythia-1.4b bloom-3b
for p in llama-3.2-1b qwen2.5-0.5b pythia-1.4b gemma-2-2b phi-3-mini bloom-3b; do
  bench $p float16 wgsl 1,8 16
  peer $p                      # HF transformers, PyTorch eager, fp16, same checkpoint and GPU
done
for p in llama-3.2-1b qwen2.5-0.5b pythia-1.4b; do bench $p int4 wgsl 1,8 16; done
finish
