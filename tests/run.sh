#!/bin/sh
# Runs every unit suite (the Check binaries under $BUILD/tests), every integration test
# (tests/integration/test_*.py, each starting the real hlptd on 127.0.0.1) and every Node suite
# (tests/node/test_*.mjs: the OpenAI SDK, the dashboard in Chromium), then prints one closing line "N passed, N failed, N skipped". Exit status
# is non-zero when anything failed.
BUILD=${BUILD:-build}
export HLPT_BUILD="$BUILD"
# Check kills a test after 4 s by default; on a loaded 2-core machine (or under ASan) numeric suites
# need longer. Suites that need more still set their own.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
passed=0
failed=0
skipped=0
failed_names=""
log=$(mktemp)
# One PostgreSQL server for the whole run (tests/pg.sh), when its programs are installed and none
# is named already: the store's suites run against it too (HLPT_TEST_PG_URL), each test in a
# database of its own. It stops, and its directory goes, when the run ends.
pg_url=""
if [ -z "$HLPT_TEST_PG_URL" ] && tests/pg.sh available; then
    if pg_url=$(tests/pg.sh start 2>"$log"); then
        export HLPT_TEST_PG_URL="$pg_url"
        echo "PostgreSQL for the store's tests: $pg_url"
    else
        echo "FAIL tests/pg.sh start:"; cat "$log"
        pg_url=""
        failed=1
        failed_names=" tests/pg.sh"
    fi
elif [ -z "$HLPT_TEST_PG_URL" ]; then
    echo "no PostgreSQL server programs (tools/install-deps.sh installs them): the store's PostgreSQL tests skip"
fi
trap 'rm -f "$log"; [ -n "$pg_url" ] && tests/pg.sh stop "$pg_url"' EXIT
trap 'exit 130' INT TERM

for t in $(find "$BUILD/tests" -type f -perm -u+x 2>/dev/null | sort); do
    if "$t" >"$log" 2>&1; then st=0; else st=1; fi
    # Check's summary: "100%: Checks: 7, Failures: 0, Errors: 0"
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -1)
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2/' | awk '{print $1+$2}')
    [ -z "$n" ] && { n=1; f=1; }
    [ "$st" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    passed=$((passed + n - f))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names ${t#$BUILD/tests/}"
        echo "FAIL ${t#$BUILD/tests/}"; cat "$log"
    else
        echo "ok   ${t#$BUILD/tests/} ($n)"
    fi
done

for t in tests/integration/test_*.py; do
    [ -e "$t" ] || continue
    if python3 "$t" -v >"$log" 2>&1; then st=0; else st=1; fi
    # unittest's summary: "Ran 5 tests" and "FAILED (failures=1, errors=2)"
    n=$(grep -E '^Ran [0-9]+ test' "$log" | sed -E 's/Ran ([0-9]+).*/\1/')
    f=$(grep -E '^FAILED \(' "$log" | grep -oE '(failures|errors)=[0-9]+' | cut -d= -f2 | awk '{s+=$1} END {print s+0}')
    sk=$(grep -E '^(OK|FAILED) \(' "$log" | grep -oE 'skipped=[0-9]+' | cut -d= -f2 | awk '{s+=$1} END {print s+0}')
    [ -z "$n" ] && { n=1; f=1; }
    [ "$st" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -gt "$n" ] && n=$f
    passed=$((passed + n - f - sk))
    failed=$((failed + f))
    skipped=$((skipped + sk))
    # Say why anything was skipped: a skip is not a pass.
    [ "$sk" -gt 0 ] && grep -E 'skipped ' "$log" | sed 's/^/     /' 
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names $t"
        echo "FAIL $t"; cat "$log"
    else
        echo "ok   $t ($((n - sk)) passed, $sk skipped)"
    fi
done

# The Node suites (tests/node/test_*.mjs) drive a real hlptd: the official OpenAI client (npm `openai`
# 6.x) and the dashboard in headless Chromium (npm `puppeteer-core`), installed once into
# $BUILD/node_modules, which git ignores. Each suite ends with "node: N passed, N failed, N skipped"
# and is bounded by timeout(1).
NODE_PKGS="openai@^6 puppeteer-core@^24"
npm_err=""
for p in $NODE_PKGS; do
    # One npm run installs them all when any is missing; should it fail (offline), a suite whose
    # package is there still runs, and one whose package is not fails with npm's words.
    if ls tests/node/test_*.mjs >/dev/null 2>&1 && [ ! -f "$BUILD/node_modules/${p%@*}/package.json" ]; then
        npm install --prefix "$BUILD" --no-audit --no-fund --silent $NODE_PKGS >"$log" 2>&1 ||
            npm_err="npm install of $NODE_PKGS failed: $(tail -5 "$log")"
        break
    fi
done
for t in tests/node/test_*.mjs; do
    [ -e "$t" ] || continue
    n=1 f=1 sk=0
    if timeout 300 node "$t" >"$log" 2>&1; then st=0; else st=1; fi
    [ "$st" -ne 0 ] && [ -n "$npm_err" ] && echo "$npm_err" >>"$log"
    line=$(grep -E '^node: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$log" | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^node: ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        sk=$(echo "$line" | sed -E 's/.* ([0-9]+) skipped.*/\1/')
        n=$((p + f + sk))
        [ "$st" -ne 0 ] && [ "$f" -eq 0 ] && f=1 && n=$((n + 1))
    fi
    passed=$((passed + n - f - sk))
    failed=$((failed + f))
    skipped=$((skipped + sk))
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names $t"
        echo "FAIL $t"; cat "$log"
    else
        echo "ok   $t ($((n - sk)) passed, $sk skipped)"
    fi
done

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
