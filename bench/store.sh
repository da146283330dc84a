#!/bin/sh
# What a cluster of hlptd nodes asks of PostgreSQL (bench/bench_store.c): claims per second by three
# nodes at once, round trips and latency of a training step's report and of a heartbeat, and the
# cache-miss latency of a 10 MB adapter, on a throwaway PostgreSQL server (tests/pg.sh: a Unix
# socket in a temporary directory, stopped and removed at the end).
#
#   bench/store.sh [bench_store options]      e.g. --nodes 3 --jobs 3000 --blob-mb 10
set -e
BUILD=${BUILD:-build}
make -s "$BUILD/bench/bench_store"
url=$(tests/pg.sh start)
trap 'tests/pg.sh stop "$url"' EXIT
"$BUILD/bench/bench_store" --store "$url" "$@"
