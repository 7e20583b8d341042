#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite: use the one
# running, start an installed cluster, or install Debian's package and start it.
set -euo pipefail
HOST=127.0.0.1
PORT=5432

answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PORT"
    else
        (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
    fi
}

wait_ready() {
    for _ in $(seq 1 60); do
        answers && return 0
        sleep 1
    done
    return 1
}

if answers; then
    exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL not found: installing it from Debian's packages" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi

version="$(ls /etc/postgresql | sort -V | tail -1)"
conf="/etc/postgresql/$version/main"
# Local test clusters trust loopback connections, as the developers' machines do.
if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
fi
as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
if wait_ready; then
    exit 0
fi
echo "PostgreSQL did not come up on $HOST:$PORT" >&2
exit 1
