# Sourced by the test scripts. venv DIR REQUIREMENTS: create or reuse a
# virtualenv, reinstalling only when the pinned requirements change (wheels
# only: no native builds). Uses $python (default python3).
venv() {
  local dir=$1 req=$2 py=${python:-python3}
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  local stamp=$dir/.requirements.sha256 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$req"
    echo "$want" > "$stamp"
  fi
}
