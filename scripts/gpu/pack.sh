#!/usr/bin/env bash
# Step 1 of the GPU check (see ../../shared/GPU.md and scripts/gpu/README.md), run HERE:
# builds the CUDA addon and packs what the GPU machine needs into .gpu/ (git-ignored; the
# device tool carries it with `carry: [".gpu"]`). The GPU machine has no Node and no network.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUSEDLOSS_CUDA=ON node scripts/install.mjs
test -f build-cuda/Release/fusedloss_cuda.node
rm -rf .gpu && mkdir -p .gpu/node_modules
cp build-cuda/Release/fusedloss_cuda.node .gpu/
cp -r dist .gpu/dist
cp -r node_modules/node-gyp-build .gpu/node_modules/
xz -T2 -9 -c "$(command -v node)" > .gpu/node.xz
du -sh .gpu
