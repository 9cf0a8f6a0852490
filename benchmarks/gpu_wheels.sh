#!/usr/bin/env bash
# Fetch, on a machine with network, the pure-Python packages that benchmarks/gpu.sh needs and a bare GPU image
# (PyTorch, Lightning, torchvision, torchmetrics, numpy, scipy, OpenCV, rich and tqdm already installed) lacks:
# Hydra, OmegaConf and ANTLR's runtime, as wheels in .whl/ (ignored by git; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
python3 -m pip download --no-deps --only-binary=:all: -d .whl hydra-core==1.3.8 omegaconf==2.3.1
python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # published as a source archive only
ls -l .whl
