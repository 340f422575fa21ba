#!/usr/bin/env bash
# Entrypoint of the local postgres:15 image. Implements the basics of the
# official image's entrypoint:
#   - on an empty $PGDATA: initdb with POSTGRES_USER / POSTGRES_PASSWORD /
#     POSTGRES_DB (or their *_FILE variants), scram-sha-256 for TCP clients
#     from anywhere, listen_addresses='*', then /docker-entrypoint-initdb.d/*
#     (*.sh, *.sql, *.sql.gz)
#   - runs the server as the unprivileged `postgres` user
# The password is passed to initdb through a 0600 file that is removed right
# after use; it is never put on a command line or printed.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR may instead be provided as a path in VAR_FILE
file_env() {
    local var="$1" file_var="${1}_FILE" def="${2:-}" val
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        fail "both $var and $file_var are set (they are exclusive)"
    fi
    val="$def"
    if [ -n "${!var:-}" ]; then
        val="${!var}"
    elif [ -n "${!file_var:-}" ]; then
        val="$(< "${!file_var}")"
    fi
    export "$var"="$val"
    unset "$file_var"
}

# `postgres --help`, `--version` and friends need no initialisation
want_help() {
    local arg
    for arg; do
        case "$arg" in
            -'?'|--help|--describe-config|-V|--version) return 0 ;;
        esac
    done
    return 1
}

setup_env() {
    export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
}

prepare_dirs_as_root() {
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
}

init_database() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOF'
error: database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value,
       or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without a password.
EOF
        exit 1
    fi

    local pwfile=""
    if [ -n "$POSTGRES_PASSWORD" ]; then
        pwfile="$(umask 077; mktemp)"
        trap 'rm -f "$pwfile"' EXIT
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    fi

    log "initialising database cluster in $PGDATA"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
    initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} \
        --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
        -D "$PGDATA" $POSTGRES_INITDB_ARGS >/dev/null
    if [ -n "$pwfile" ]; then
        rm -f "$pwfile"
        trap - EXIT
    fi

    {
        echo
        echo "# allow TCP clients from anywhere (container networks)"
        echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"
    if ! grep -q "^listen_addresses = '\*'" "$PGDATA/postgresql.conf"; then
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    fi

    # temporary server, reachable through the unix socket only
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -s start

    local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER")
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" -q <<'EOSQL'
CREATE DATABASE :"db";
EOSQL
        log "created database $POSTGRES_DB"
    fi

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then log "running $f"; "$f"
                else log "sourcing $f"; # shellcheck disable=SC1090
                    . "$f"; fi ;;
            *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "running $f"; gzip -dc "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
            *) log "ignoring $f" ;;
        esac
    done

    pg_ctl -D "$PGDATA" -m fast -w -s stop
    log "init process complete; ready for start up"
}

main() {
    [ "$#" -gt 0 ] || set -- postgres
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi

    if [ "$1" = postgres ] && ! want_help "$@"; then
        setup_env
        if [ "$(id -u)" = 0 ]; then
            prepare_dirs_as_root
            export HOME=/var/lib/postgresql
            exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
        fi
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
            init_database
        else
            log "database directory contains a cluster; skipping initialisation"
        fi
        unset POSTGRES_PASSWORD
    fi

    exec "$@"
}

main "$@"
