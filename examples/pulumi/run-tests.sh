#!/usr/bin/env bash
# Run the Pulumi program's unit tests (Pulumi's mocks: no Pulumi CLI, no Kong).
#
# Creates or reuses a virtual environment, installs requirements.txt and
# requirements-dev.txt into it with pip, and runs pytest. Extra arguments go
# to pytest. Exits with pytest's status, except that "no tests collected"
# (pytest's 5) becomes 1.
#
# Environment:
#   PULUMI_TEST_VENV  virtual environment folder, default target/pulumi-venv
#                     under the repository root; a relative path is taken
#                     from the repository root. CI can cache this folder.
#   PYTHON            interpreter that creates the environment, default python3
set -euo pipefail

program_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository_root="$(cd "$program_dir/../.." && pwd)"
python="${PYTHON:-python3}"

venv="${PULUMI_TEST_VENV:-target/pulumi-venv}"
case "$venv" in
    /*) ;;
    *) venv="$repository_root/$venv" ;;
esac

if ! command -v "$python" >/dev/null 2>&1; then
    echo "run-tests.sh: $python not found; install Python 3 or set PYTHON" >&2
    exit 1
fi

# A cached environment is reused while it runs and matches the interpreter's
# version. Otherwise it is built again.
wanted_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv_version="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
if [ "$venv_version" != "$wanted_version" ]; then
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
        echo "run-tests.sh: $venv exists but is not a virtual environment; remove it or set PULUMI_TEST_VENV to another folder" >&2
        exit 1
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv"; then
        echo "run-tests.sh: '$python -m venv $venv' failed; on Debian and Ubuntu install python3-venv" >&2
        exit 1
    fi
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$program_dir/requirements.txt" -r "$program_dir/requirements-dev.txt"

cd "$program_dir"
status=0
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run-tests.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
