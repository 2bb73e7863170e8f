#!/usr/bin/env bash
# Build tools that LightGBM (through the lightgbm3 crate) needs and a fresh machine lacks:
#   - CMake >= 3.28 (Debian's is 3.25): pinned from PyPI into .tools/venv/bin
#   - libclang (for bindgen): Debian's libclang-dev, installed with apt-get when missing
# Idempotent: a second run only checks. The Makefile puts .tools/venv/bin first on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
cmake_version="3.31.10"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/cmake" ]] || [[ "$("$venv/bin/cmake" --version | head -1)" != "cmake version $cmake_version" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "cmake==$cmake_version"
fi
echo "install-build-tools: $("$venv/bin/cmake" --version | head -1) at $venv/bin/cmake"

have_libclang() {
    compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || compgen -G "/usr/lib/x86_64-linux-gnu/libclang-*.so*" >/dev/null \
        && ldconfig -p 2>/dev/null | grep -q "libclang\(-[0-9.]*\)\?\.so"
}
if ! have_libclang; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-build-tools: libclang is missing; run 'sudo apt-get install libclang-dev'" >&2
        exit 1
    fi
    echo "install-build-tools: installing libclang-dev with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi
echo "install-build-tools: libclang: $(ldconfig -p | grep -o '/[^ ]*libclang[-0-9.]*\.so[.0-9]*' | head -1)"
