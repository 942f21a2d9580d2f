#!/bin/sh
# The official image's contract, small: `redis-server ARGS` (or bare `--flags`) as redis in /data.
set -eu
case "${1:-}" in
    -*) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no --dir /data "$@"
    if [ "$(id -u)" = "0" ]; then
        chown -R redis:redis /data
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
