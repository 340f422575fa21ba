#!/bin/sh
# Entrypoint of the local redis:7 image, mirroring the official image:
#   - `docker run redis:7 --appendonly yes` runs redis-server with those options
#   - protected mode is off unless configured (clients come from other containers)
#   - the server runs as the unprivileged `redis` user and owns /data
set -eu

# first argument is an option or a config file: run redis-server with it
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    configured=no
    for arg in "$@"; do
        case "$arg" in
            --protected-mode|*.conf) configured=yes ;;
        esac
    done
    if [ "$configured" = no ]; then
        shift
        set -- redis-server --protected-mode no "$@"
    fi
    find . \! -user redis -exec chown redis '{}' +
    # new files only readable by redis
    if [ "$(umask)" = 0022 ]; then umask 0077; fi
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

exec "$@"
