#!/bin/sh
# A throwaway PostgreSQL server for the tests: the store's PostgreSQL backend (server/store_pg.c)
# runs its unit tests and the integration suites against it.
#
#   url=$(tests/pg.sh start)   initdb + pg_ctl in a new /tmp/hlpt-pg-XXXXXX; prints a URL such as
#                              postgresql:///hlpt?host=/tmp/hlpt-pg-Ab12Cd&port=5432&user=nobody
#   tests/pg.sh stop "$url"    stops that server and removes its directory (a URL or the directory)
#   tests/pg.sh available      exit status 0 when the PostgreSQL server programs are installed
#
# The server listens only on a Unix socket in its own directory (no TCP port, so several runs on one
# machine never collide) and trusts local connections. initdb refuses to run as root: as root (CI),
# the server runs as `nobody`, its directory handed to that user; as anyone else, as that user. It
# runs without fsync (a test database need not survive a power cut) and small, since it shares the
# machine with the tests.
set -e

bindir() {
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    return 1
}

# Runs its arguments as the server's user.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

case "$1" in
available)
    bindir >/dev/null
    ;;
start)
    bin=$(bindir) || { echo "pg.sh: no PostgreSQL server under /usr/lib/postgresql/*/bin" >&2; exit 1; }
    dir=$(mktemp -d /tmp/hlpt-pg-XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then user=nobody; chown nobody "$dir"; else user=$(id -un); fi
    port=5432
    if ! as_owner "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-k $dir -p $port -c listen_addresses= -c fsync=off -c synchronous_commit=off \
                -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200" >/dev/null; then
        cat "$dir/server.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    if ! as_owner "$bin/createdb" -h "$dir" -p "$port" -U "$user" hlpt; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
        exit 1
    fi
    echo "postgresql:///hlpt?host=$dir&port=$port&user=$user"
    ;;
stop)
    dir=$2
    case "$dir" in *host=*) dir=$(echo "$dir" | sed -E 's/.*[?&]host=([^&]*).*/\1/') ;; esac
    case "$dir" in /tmp/hlpt-pg-*) ;; *) echo "pg.sh: stop: $2 is no server of this script" >&2; exit 1 ;; esac
    bin=$(bindir) || true
    [ -n "$bin" ] && [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$dir"
    ;;
*)
    echo "usage: tests/pg.sh start | stop URL-or-directory | available" >&2
    exit 2
    ;;
esac
