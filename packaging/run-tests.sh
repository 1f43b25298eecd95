#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole suite: unit and integration tests under
# ASan+UBSan with warnings as errors, then a short run of every fuzz target under clang.
# Ends with the line "N passed, N failed" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${OPENSHELL_TEST_BUILD:-build/test}
fuzz_build=${OPENSHELL_FUZZ_BUILD:-build/fuzz}
fuzz_seconds=${OPENSHELL_FUZZ_SECONDS:-20}

packaging/install-deps.sh || exit 1

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=debug -Dwerror=true -Db_sanitize=address,undefined \
    -Db_lundef=false || exit 1
fi
meson compile -C "$build" -j 2 || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
meson test -C "$build" --print-errorlogs --num-processes 2 --timeout-multiplier 3
test_rc=$?

# Fuzz targets: a short bounded run each, starting from the seed corpus.
fuzz_rc=0
fuzz_results=()
if [ ! -f "$fuzz_build/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$fuzz_build" --buildtype=debugoptimized -Dfuzz=true \
    -Dbench=false -Db_lundef=false -Db_sanitize=address,undefined || fuzz_rc=1
fi
if [ $fuzz_rc -eq 0 ]; then
  meson compile -C "$fuzz_build" -j 2 $(ls tests/fuzz/*_fuzz.cpp | sed 's#.*/##; s#\.cpp$##') \
    || fuzz_rc=1
fi
if [ $fuzz_rc -eq 0 ]; then
  for src in tests/fuzz/*_fuzz.cpp; do
    name=$(basename "$src" .cpp)
    corpus_seed="tests/fuzz/corpus/${name%_fuzz}"
    extra_seeds=()
    # The policy loader also starts from the reference's own policies (read in place, not copied).
    if [ "$name" = policy_loader_fuzz ] && [ -d ../shared/specs/openshell-policies ]; then
      extra_seeds+=(../shared/specs/openshell-policies)
    fi
    work=$(mktemp -d)
    if "$fuzz_build/tests/fuzz/$name" -seed=1 -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=0 "$work" "$corpus_seed" "${extra_seeds[@]}" >"$work.log" 2>&1; then
      fuzz_results+=("ok - fuzz $name (${fuzz_seconds}s)")
    else
      fuzz_results+=("not ok - fuzz $name")
      tail -30 "$work.log"
      fuzz_rc=1
    fi
    rm -rf "$work" "$work.log"
  done
else
  fuzz_results+=("not ok - fuzz build")
fi
printf '%s\n' "${fuzz_results[@]}"

# Layer separation (DESIGN.md): a proxy-less build links neither the HTTP parser nor TLS.
layer_results=()
nop_build=${OPENSHELL_NOPROXY_BUILD:-build/noproxy}
if { [ -f "$nop_build/build.ninja" ] || meson setup "$nop_build" -Dproxy=disabled -Dtests=false \
       -Dbench=false >/dev/null; } && meson compile -C "$nop_build" -j 2 openshell >/dev/null; then
  if ldd "$nop_build/src/cli/openshell" | grep -qE 'http_parser|mbed|libssl'; then
    layer_results+=("not ok - -Dproxy=disabled build links proxy libraries")
    ldd "$nop_build/src/cli/openshell"
  elif "$nop_build/src/cli/openshell" proxy >/dev/null 2>&1; then
    layer_results+=("not ok - -Dproxy=disabled build still has the proxy subcommand")
  else
    layer_results+=("ok - -Dproxy=disabled build has no proxy code or libraries")
  fi
else
  layer_results+=("not ok - -Dproxy=disabled build")
fi
# And a runtime-less build links neither libseccomp nor libssh, and has no `run`.
nor_build=${OPENSHELL_NORUNTIME_BUILD:-build/noruntime}
if { [ -f "$nor_build/build.ninja" ] || meson setup "$nor_build" -Druntime=disabled -Dtests=false \
       -Dbench=false >/dev/null; } && meson compile -C "$nor_build" -j 2 openshell >/dev/null; then
  if ldd "$nor_build/src/cli/openshell" | grep -qE 'libseccomp|libssh'; then
    layer_results+=("not ok - -Druntime=disabled build links runtime libraries")
    ldd "$nor_build/src/cli/openshell"
  elif "$nor_build/src/cli/openshell" run -- /bin/true >/dev/null 2>&1; then
    layer_results+=("not ok - -Druntime=disabled build still has the run subcommand")
  else
    layer_results+=("ok - -Druntime=disabled build has no runtime code or libraries")
  fi
else
  layer_results+=("not ok - -Druntime=disabled build")
fi
printf '%s\n' "${layer_results[@]}"

python3 - "$build/meson-logs/testlog.json" "${fuzz_results[@]}" "${layer_results[@]}" <<'PY'
import json, re, sys
passed = failed = 0
for line in open(sys.argv[1]):
    record = json.loads(line)
    out = record.get("stdout", "")
    ok = len(re.findall(r"^ok ", out, re.M))
    bad = len(re.findall(r"^not ok ", out, re.M))
    # Catch2 unit tests: count test cases from the summary line.
    summary = re.search(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)", out)
    partial = re.search(r"^test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed", out, re.M)
    if summary:
        ok, bad = int(summary.group(1)), 0
    elif partial:
        ok, bad = int(partial.group(2)), max(int(partial.group(3)), 1)
    if ok == 0 and bad == 0:
        # a non-TAP test counts once
        ok, bad = (1, 0) if record["result"] in ("OK", "EXPECTEDFAIL") else (0, 1)
    elif record["result"] not in ("OK", "SKIP") and bad == 0:
        bad = 1  # crashed or timed out after printing only passes
    passed += ok
    failed += bad
for result in sys.argv[2:]:
    if result.startswith("ok"):
        passed += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 and passed > 0 else 1)
PY
count_rc=$?
[ $test_rc -eq 0 ] && [ $fuzz_rc -eq 0 ] && [ $count_rc -eq 0 ]
