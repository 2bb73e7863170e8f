# Sourced by the install scripts: `pinned_venv NAME VENV REQUIREMENTS` makes VENV a Python
# venv holding exactly the pins of REQUIREMENTS (every transitive package pinned; installed
# with --no-deps, then `pip check`). Idempotent: with the same pins installed, it only says so.
# The Python that makes the venv is $PYTHON (default python3; 3.10 or later).
pinned_venv() {
    local name="$1" venv="$2" reqs="$3"
    local stamp="$venv/.installed-requirements" python="${PYTHON:-python3}" start
    if [[ -f "$stamp" ]] && cmp -s "$reqs" "$stamp"; then
        echo "$name: already installed (pins unchanged)"
        return
    fi
    start=$(date +%s)
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$reqs"
    "$venv/bin/python" -m pip check >/dev/null
    cp "$reqs" "$stamp"
    echo "$name: installed in $(( $(date +%s) - start ))s"
}
