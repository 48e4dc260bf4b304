#!/usr/bin/env bash
# Runs CI (`.ci/run`) on a clean clone of this repository's HEAD while something else keeps the
# machine busy, the way a developer machine or a shared CI runner is, and repeats until a number of
# runs in a row pass. A test that only passes on an idle machine fails here first.
#
#   bash scripts/ci-under-load.sh [--runs N] [--max N] [--load cpu|bench] [--keep]
#     --runs N     passing runs in a row to stop at (default 3)
#     --max N      give up after N runs in all (default 10)
#     --load cpu   one busy-looping process at the lowest priority (default): about one core busy
#     --load bench `npm run bench:inventory` in a second clone, over and over
#     --keep       keep each run's clone and log under $CI_LOAD_DIR (default /tmp/stockflow-ci-load)
#
# Each run's log is $CI_LOAD_DIR/run-<n>.log; the last lines printed are one per run:
#   run <n>: pass|fail in <seconds> s (<failing tests, if any>)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=3
max=10
load=cpu
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --max) max=$2; shift 2 ;;
    --load) load=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    *) echo "usage: $0 [--runs N] [--max N] [--load cpu|bench] [--keep]" >&2; exit 2 ;;
  esac
done
case "$load" in cpu | bench) ;; *) echo "ci-under-load: --load is cpu or bench" >&2; exit 2 ;; esac

dir=${CI_LOAD_DIR:-/tmp/stockflow-ci-load}
mkdir -p "$dir"
commit=$(git rev-parse HEAD)
say() { echo "ci-under-load: $*"; }

hog_pid=
start_load() {
  if [ "$load" = cpu ]; then
    # One spinning process, niced so it takes what CI leaves rather than starving it outright:
    # the same share of a core that another developer's build would take.
    nice -n 10 bash -c 'while :; do :; done' &
    hog_pid=$!
  else
    rm -rf "$dir/bench-clone"
    git clone -q "$repo" "$dir/bench-clone"
    (cd "$dir/bench-clone" && npm ci --no-audit --no-fund >/dev/null 2>&1 &&
      while :; do QUEUE_PREFIX="bench-load-$$" npm run -s bench:inventory >/dev/null 2>&1 || sleep 1; done) &
    hog_pid=$!
  fi
}
stop_load() {
  [ -n "$hog_pid" ] || return 0
  kill -- "-$hog_pid" 2>/dev/null || kill "$hog_pid" 2>/dev/null || true
  pkill -P "$hog_pid" 2>/dev/null || true
  wait "$hog_pid" 2>/dev/null || true
  hog_pid=
}
trap stop_load EXIT

summary=()
streak=0
n=0
while [ "$streak" -lt "$runs" ] && [ "$n" -lt "$max" ]; do
  n=$((n + 1))
  clone="$dir/clone-$n"
  log="$dir/run-$n.log"
  rm -rf "$clone"
  git clone -q "$repo" "$clone"
  git -C "$clone" checkout -q "$commit"
  say "run $n of at most $max on $commit (load: $load), log $log"
  set -m
  start_load
  set +m
  started=$(date +%s)
  if (cd "$clone" && bash .ci/run) >"$log" 2>&1; then result=pass; streak=$((streak + 1)); else result=fail; streak=0; fi
  took=$(($(date +%s) - started))
  stop_load
  # The failing tests (vitest's FAIL lines) and docs examples (docs:check's FAIL lines).
  failures=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ *(FAIL|×) ' | sed 's/^ *//' | sort -u | head -20 | tr '\n' ';' || true)
  summary+=("run $n: $result in $took s${failures:+ ($failures)}")
  say "${summary[-1]}"
  [ "$keep" = true ] || rm -rf "$clone"
done

for line in "${summary[@]}"; do echo "$line"; done
[ "$streak" -ge "$runs" ]
