#!/usr/bin/env bash
# Install Ray, pinned, for the Ray driver (pipelines/ray/nightly.py) and the test that runs it
# on a local cluster (tests/it/ray.rs), into .ray/venv at the repository root:
#
#   .ray/venv            Python venv from scripts/ray-requirements.txt (ray 2.60.0, core only:
#                        the driver needs no dashboard)
#
# Idempotent: a second run with the same pins only checks and prints the path (about 20 s
# and 285 MB the first time). Override the Python with PYTHON=/path/to/python3 (3.10 or later).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.ray/venv"
reqs="$root/scripts/ray-requirements.txt"
stamp="$venv/.installed-requirements"
python="${PYTHON:-python3}"

if [[ -f "$stamp" ]] && cmp -s "$reqs" "$stamp"; then
    echo "install-ray: already installed (pins unchanged)"
else
    start=$(date +%s)
    rm -rf "$venv"
    mkdir -p "$root/.ray"
    "$python" -m venv "$venv"
    # --no-deps: every transitive package is pinned in the requirements file.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$reqs"
    "$venv/bin/python" -m pip check >/dev/null
    cp "$reqs" "$stamp"
    echo "install-ray: installed in $(( $(date +%s) - start ))s"
fi
echo "ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)'): $venv/bin/ray"
