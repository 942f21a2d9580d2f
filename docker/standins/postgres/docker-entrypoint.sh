#!/bin/sh
# The official image's contract, small: initialise PGDATA on first start, then run as postgres.
set -eu
if [ "${1:-}" = "postgres" ] && [ "$(id -u)" = "0" ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        user=${POSTGRES_USER:-postgres}
        if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
            password=$(cat "$POSTGRES_PASSWORD_FILE")
        else
            password=${POSTGRES_PASSWORD:-}
        fi
        [ -n "$password" ] || { echo "POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required" >&2; exit 1; }
        pwfile=$(mktemp)
        printf '%s\n' "$password" >"$pwfile"
        chown postgres "$pwfile"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
        printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
        db=${POSTGRES_DB:-$user}
        if [ "$db" != "postgres" ]; then
            setpriv --reuid=postgres --regid=postgres --init-groups \
                postgres --single -D "$PGDATA" -j postgres >/dev/null <<SQL
CREATE DATABASE "$db" OWNER "$user";
SQL
        fi
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
