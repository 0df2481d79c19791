#!/usr/bin/env bash
# A second GPU pack, .gpu-llamacpp/, for llama.cpp's Vulkan build beside the WGSL engine (issue 27):
# node, Debian's Vulkan/glvnd loaders and setup.sh from ../shared/gpu/pack.sh's .gpu/, and a
# node_modules that carries node-llama-cpp with its prebuilt linux-x64-vulkan binaries (12 MB
# packed) instead of onnxruntime-node's native library (13 MB packed), which neither the WGSL
# engine nor llama.cpp calls: onnxruntime-node and sharp are stubs that load and refuse any use.
# The tracked tree, dist and this pack must stay within the 64 MiB a device call carries.
#   bash ../shared/gpu/pack.sh && bash bench/results/2026-12-08-gpu-llamacpp-peer/pack.sh   (from the project root)
set -euo pipefail
[ -f .gpu/node.xz ] || { echo "pack.sh: run ../shared/gpu/pack.sh first (it writes .gpu/node.xz and the loaders)" >&2; exit 2; }
out=.gpu-llamacpp
rm -rf "$out" && mkdir -p "$out"
cp .gpu/node.xz .gpu/node.stamp .gpu/setup.sh .gpu/*.deb "$out"/
stub=$(mktemp -d)
mkdir -p "$stub/node_modules/onnxruntime-node" "$stub/node_modules/sharp"
echo '{"name":"onnxruntime-node","version":"0.0.0-stub","main":"index.js"}' > "$stub/node_modules/onnxruntime-node/package.json"
cat > "$stub/node_modules/onnxruntime-node/index.js" <<'JS'
// Stub: this pack runs the WGSL engine and llama.cpp only; any ONNX Runtime session is refused.
const refuse = () => { throw new Error('onnxruntime-node is stubbed in the llama.cpp GPU pack: run ORT pipelines with the main pack'); };
class Tensor { constructor() { refuse(); } }
module.exports = { env: {}, Tensor, InferenceSession: { create: refuse }, listSupportedBackends: () => [] };
JS
echo '{"name":"sharp","version":"0.0.0-stub","main":"index.js"}' > "$stub/node_modules/sharp/package.json"
echo "module.exports = () => { throw new Error('sharp is stubbed in the GPU pack (no image input)'); };" > "$stub/node_modules/sharp/index.js"
tar cf "$stub/nm.tar" \
  --exclude='node_modules/onnxruntime-node' --exclude='node_modules/onnxruntime-web' --exclude='node_modules/sharp' --exclude='node_modules/@img' \
  --exclude='node_modules/@node-llama-cpp/linux-x64-cuda*' --exclude='node_modules/@node-llama-cpp/linux-arm*' \
  --exclude='node_modules/@node-llama-cpp/linux-x64' --exclude='node_modules/node-llama-cpp/llama/gitRelease.bundle' \
  --exclude='node_modules/*/dist/win32-*' --exclude='node_modules/*/dist/darwin-*' --exclude='node_modules/*/dist/linux-arm64' \
  --exclude='node_modules/.cache' --exclude='*.map' --exclude='node_modules/bintrees/test' \
  --exclude='node_modules/typescript' --exclude='node_modules/esbuild' --exclude='node_modules/@esbuild' --exclude='node_modules/vite' \
  --exclude='node_modules/vitest' --exclude='node_modules/@vitest' --exclude='node_modules/rollup' --exclude='node_modules/@rollup' \
  --exclude='node_modules/@rolldown' --exclude='node_modules/lightningcss*' --exclude='node_modules/playwright*' --exclude='node_modules/@types' \
  node_modules
tar rf "$stub/nm.tar" -C "$stub" node_modules/onnxruntime-node node_modules/sharp
xz -T0 -6 < "$stub/nm.tar" > "$out/node_modules.tar.xz"
rm -rf "$stub"
echo "pack.sh: $out holds $(du -cm "$out" | tail -1 | cut -f1) MiB; the tracked tree $(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) / 1048576 )) MiB"
