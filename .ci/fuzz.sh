#!/usr/bin/env bash
# Runs every cargo-fuzz target in dataplane/fuzz for a bounded time and fails on a crash.
#
# - FUZZ_SECONDS: seconds per target (default 30).
# - cargo-fuzz is installed into .ci/cache/cargo-fuzz when it is not on PATH (cached there).
# - No sanitizer (`-s none`): switchyard-core has no `unsafe`, and the build and the runs are
#   several times faster; panics, overflow checks and debug assertions still crash.
# - Unoptimised (`--dev`): the build takes ~140 s instead of ~300 s on 2 cores, which is most
#   of this script's cost in CI; the runs execute fewer inputs per second (a bounded smoke
#   run; longer campaigns: see dataplane/fuzz/README.md).
# - New inputs go to a scratch directory; the committed seeds are read, never written.
# - A crash leaves its input in dataplane/fuzz/artifacts/<target>/ (see dataplane/fuzz/README.md
#   to replay and minimise it) and this script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-30}"
fuzz_dir=dataplane/fuzz
root="$PWD/.ci/cache/cargo-fuzz"
export PATH="$root/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz into $root"
  cargo install --locked --quiet --root "$root" cargo-fuzz
fi
# cargo-fuzz passes -Z flags (coverage instrumentation); this lets the stable compiler take them.
export RUSTC_BOOTSTRAP=1

start=$(date +%s)
cargo fuzz build --dev --fuzz-dir "$fuzz_dir" -s none
echo "fuzz.sh: built the targets in $(( $(date +%s) - start )) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $(cargo fuzz list --fuzz-dir "$fuzz_dir"); do
  corpus=("$scratch/$target")
  mkdir -p "$scratch/$target"
  [ -d "$fuzz_dir/corpus/$target" ] && corpus+=("$fuzz_dir/corpus/$target")
  echo "fuzz.sh: $target for ${secs} s"
  # -timeout: one input running this long is a hang, reported as a crash.
  if ! cargo fuzz run --dev --fuzz-dir "$fuzz_dir" -s none "$target" "${corpus[@]}" -- \
    -max_total_time="$secs" -timeout=25 -print_final_stats=1 2>"$scratch/$target.log"; then
    tail -n 60 "$scratch/$target.log"
    failed+=("$target")
  else
    grep -E '^(stat::number_of_executed_units|Done )' "$scratch/$target.log" || true
  fi
done
echo "fuzz.sh: done in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
  exit 1
fi
