#!/usr/bin/env bash
# Entrypoint of the local mariadb:10.11 image. Implements the basics of the
# official image's entrypoint:
#   - on an empty /var/lib/mysql: mariadb-install-db, then root's password
#     (MARIADB_ROOT_PASSWORD, or MYSQL_ROOT_PASSWORD), MARIADB_DATABASE,
#     MARIADB_USER / MARIADB_PASSWORD (each also as *_FILE), then
#     /docker-entrypoint-initdb.d/* (*.sh, *.sql, *.sql.gz)
#   - root@localhost may also log in through the unix socket (as the OS root)
#   - runs the server as the unprivileged `mysql` user
# Passwords reach the server through SQL on stdin, never a command line.
set -Eeuo pipefail

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

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

# a value inside a single-quoted SQL string
sql_escape() { local s="${1//\\/\\\\}"; printf '%s' "${s//\'/\\\'}"; }

setup_env() {
    file_env MYSQL_ROOT_PASSWORD
    file_env MARIADB_ROOT_PASSWORD "$MYSQL_ROOT_PASSWORD"
    file_env MYSQL_DATABASE
    file_env MARIADB_DATABASE "$MYSQL_DATABASE"
    file_env MYSQL_USER
    file_env MARIADB_USER "$MYSQL_USER"
    file_env MYSQL_PASSWORD
    file_env MARIADB_PASSWORD "$MYSQL_PASSWORD"
    unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
}

init_database() {
    [ -n "$MARIADB_ROOT_PASSWORD" ] || fail "database is uninitialized and MARIADB_ROOT_PASSWORD is not set"
    log "initialising database in $DATADIR"
    mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >/dev/null

    # temporary server, reachable through the unix socket only
    "$@" --skip-networking --socket="$SOCKET" &
    local pid=$! waited=0
    until mariadb-admin --socket="$SOCKET" -uroot ping --silent >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || fail "the temporary server exited during initialisation"
        [ "$waited" -lt 600 ] || fail "the temporary server did not start within 60s"
        sleep 0.1
        waited=$((waited + 1))
    done

    local root_pw user_pw
    root_pw="$(sql_escape "$MARIADB_ROOT_PASSWORD")"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DELETE FROM mysql.user WHERE user='' OR (user='root' AND host NOT IN ('localhost'));"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root_pw';"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('$root_pw') OR unix_socket;"
        if [ -n "$MARIADB_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
        fi
        if [ -n "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
            user_pw="$(sql_escape "$MARIADB_PASSWORD")"
            echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$user_pw';"
            if [ -n "$MARIADB_DATABASE" ]; then
                echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$SOCKET" -uroot --binary-mode
    [ -z "$MARIADB_DATABASE" ] || log "created database $MARIADB_DATABASE"

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh) log "running $f"; . "$f" ;;
            *.sql) log "running $f"; MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb --socket="$SOCKET" -uroot "${MARIADB_DATABASE:-mysql}" < "$f" ;;
            *.sql.gz) log "running $f"; gzip -dc "$f" | MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb --socket="$SOCKET" -uroot "${MARIADB_DATABASE:-mysql}" ;;
            *) log "ignoring $f" ;;
        esac
    done

    kill -TERM "$pid"
    wait "$pid" || true
    log "init process complete; ready for start up"
}

main() {
    [ "$#" -gt 0 ] || set -- mariadbd
    if [ "${1:0:1}" = '-' ]; then
        set -- mariadbd "$@"
    fi

    if [ "$1" = mariadbd ] || [ "$1" = mysqld ]; then
        setup_env
        if [ "$(id -u)" = 0 ]; then
            mkdir -p "$DATADIR" /run/mysqld
            find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
            exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
        fi
        if [ ! -d "$DATADIR/mysql" ]; then
            init_database "$@"
        else
            log "database directory contains data; skipping initialisation"
        fi
        unset MARIADB_ROOT_PASSWORD MARIADB_PASSWORD
    fi

    exec "$@"
}

main "$@"
