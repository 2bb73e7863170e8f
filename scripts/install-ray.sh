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
source "$root/scripts/pinned-venv.sh"
venv="$root/.ray/venv"
pinned_venv install-ray "$venv" "$root/scripts/ray-requirements.txt"
echo "ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)'): $venv/bin/ray"
