#!/usr/bin/env bash
# Build uorch's NCCL plugin (csrc/nccl_plugin.cpp) on a GPU host: g++ with the
# CUDA headers and the NCCL headers and libraries of the host's torch wheel.
# Output: .uorch/plugins/libuorch_nccl.so (or $1). The host needs no Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.uorch/plugins/libuorch_nccl.so}
mkdir -p "$(dirname "$OUT")"
PY=${PYTHON:-python3}
SITE=$($PY -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torch").submodule_search_locations[0]))') \
  || { echo "build_nccl_plugin: $PY has no torch package (set PYTHON)" >&2; exit 1; }
TORCH="$SITE/torch"
CUDA_INC=${CUDA_HOME:-/usr/local/cuda}/include
# Without a CUDA toolkit, the headers the nvidia-cuda-runtime wheel ships do.
[[ -f "$CUDA_INC/cuda_runtime_api.h" ]] || CUDA_INC="$SITE/nvidia/cu13/include"
NCCL_DIR=$(ls -d "$SITE"/nvidia/nccl 2>/dev/null || true)
[[ -f "$CUDA_INC/cuda_runtime_api.h" ]] || { echo "build_nccl_plugin: no CUDA headers in $CUDA_INC (set CUDA_HOME)" >&2; exit 1; }
[[ -n "$NCCL_DIR" && -f "$NCCL_DIR/include/nccl.h" ]] || { echo "build_nccl_plugin: no nvidia/nccl beside torch in $SITE" >&2; exit 1; }
g++ -O2 -fPIC -shared -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_NCCL -DUSE_CUDA \
  -I"$TORCH/include" -I"$TORCH/include/torch/csrc/api/include" -I"$CUDA_INC" -I"$NCCL_DIR/include" -Icsrc \
  csrc/nccl_plugin.cpp -o "$OUT" \
  -L"$TORCH/lib" -Wl,--no-as-needed -ltorch_cuda -ltorch_cpu -lc10 -lc10_cuda -Wl,-rpath,"$TORCH/lib"
echo "build_nccl_plugin: built $OUT"
