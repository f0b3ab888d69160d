#!/usr/bin/env bash
# Build the wheel and sdist, install the wheel (not editable) into a fresh venv and use it as a user would.
#
# Why: the test suite imports Pollinator from the source tree, so a file missing from the wheel (package
# data such as templates/, an entry point, a module outside the package list) or a dependency missing from
# an extra never fails it. This does:
#   1. the lean core only: `pollinator --version`, `new`, `funcspec`, and `pollinator dev` naming the
#      `local` extra in one line (exit 2) instead of failing in a log;
#   2. with the `local` extra added: `pollinator dev --detach`, one echo job through
#      `pollinator run --follow`, `pollinator dev stop`.
# Everything runs outside the checkout with PYTHONPATH unset, so only the installed wheel can be imported.
#
# Usage: scripts/wheel_smoke.sh [PYTHON]   PYTHON has `build` installed (default: .venv/bin/python, the
# venv `make install` creates; `pip install -e '.[dev]'` brings build). The fresh venv uses $SMOKE_PYTHON (default python3).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_PY="${1:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pollinator-wheel-smoke.XXXXXX")"
COLONY="$WORK/colony"
VENV="$WORK/venv"
unset PYTHONPATH POLLINATOR_DEV_DIR
step() { printf '\n== wheel smoke: %s\n' "$*"; }
pip_install() {  # quiet unless it fails (pip warns about every index location it skips)
  "$VENV/bin/pip" install -q "$@" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; exit 1; }
}
cleanup() {
  if [ -x "$VENV/bin/pollinator" ] && [ -d "$COLONY" ]; then
    "$VENV/bin/pollinator" dev stop --data-dir "$COLONY" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "build the sdist and the wheel"
"$BUILD_PY" -m build --outdir "$WORK/dist" "$REPO" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/pollinator-*.whl)"
SDIST="$(ls "$WORK"/dist/pollinator-*.tar.gz)"
ls -1 "$WORK/dist"
# the sdist can run the suite (tests + protocol captures); the wheel holds the packages and their data only
python3 - "$SDIST" "$WHEEL" <<'CHECK'
import sys, tarfile, zipfile
sdist = {n.split("/", 1)[-1] for n in tarfile.open(sys.argv[1]).getnames()}
for need in ("tests/data/colonies-protocol/FACTS.md", "tests/conftest.py", "Makefile", "core/pollinator/py.typed"):
    assert need in sdist, f"the sdist lacks {need}"
wheel = zipfile.ZipFile(sys.argv[2]).namelist()
for need in ("pollinator/py.typed", "pollinator/templates/main.py", "pollinator/templates/hello.txt",
             "pollinator_airflow/__init__.py", "pollinator_prefect/__init__.py",
             "pollinator_airflow/py.typed", "pollinator_prefect/py.typed"):
    assert need in wheel, f"the wheel lacks {need}"
tops = {n.split("/")[0] for n in wheel}
stray = sorted(t for t in tops if t not in ("pollinator", "pollinator_airflow", "pollinator_prefect")
               and not t.endswith(".dist-info"))
assert not stray, f"the wheel carries more than the packages: {stray}"
print("sdist and wheel contents: OK")
CHECK

step "the lean core from the wheel, in a fresh venv"
"${SMOKE_PYTHON:-python3}" -m venv "$VENV"
pip_install --upgrade pip
pip_install "$WHEEL"
cd "$WORK"  # away from the checkout: nothing but the installed wheel can be imported
P="$VENV/bin/pollinator"
"$VENV/bin/python" - <<'EOF'
import pollinator, sys
assert "site-packages" in pollinator.__file__, f"imported from {pollinator.__file__}, not the installed wheel"
print("pollinator", pollinator.__version__, "from", pollinator.__file__)
EOF
"$P" --version
"$P" new -e dev-k8s "$WORK/proj"
test -s "$WORK/proj/cfs/src/main.py" && test -s "$WORK/proj/cfs/data/hello.txt"  # templates/ is package data
"$P" funcspec -p "$WORK/proj" >"$WORK/spec.json"
"$VENV/bin/python" -c "import json,sys; s=json.load(open(sys.argv[1])); assert s['funcname']=='execute', s" \
  "$WORK/spec.json"

step "pollinator dev without the local extra names it"
set +e
"$P" dev --detach --data-dir "$COLONY" 2>"$WORK/dev-core.err"
rc=$?
set -e
cat "$WORK/dev-core.err"
[ "$rc" = 2 ] || { echo "expected exit 2 without the local extra, got $rc"; exit 1; }
[ "$(wc -l <"$WORK/dev-core.err")" = 1 ] || { echo "expected one line"; exit 1; }
grep -q "pip install 'pollinator\[local\]'" "$WORK/dev-core.err"
[ ! -e "$COLONY/state.json" ] || { echo "started something without the extra"; exit 1; }

step "add the local extra: pollinator dev, one echo job, dev stop"
pip_install "$WHEEL[local]"
"$P" dev --detach --data-dir "$COLONY"
eval "$("$P" dev env --data-dir "$COLONY")"
sed -i -e 's/^  init-cmd:.*/  init-cmd: ""/' -e 's/^  cmd:.*/  cmd: echo wheel-smoke-says-hello/' \
  "$WORK/proj/project.yaml"
(cd "$WORK/proj" && "$P" run --follow) >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; exit 1; }
cat "$WORK/run.log"
grep -q "wheel-smoke-says-hello" "$WORK/run.log"
"$P" dev stop --data-dir "$COLONY"
echo
echo "wheel smoke: OK ($(basename "$WHEEL"))"
