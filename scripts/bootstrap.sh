#!/usr/bin/env bash
# Prepare a Debian bookworm machine for headway.
#
#   1. installs docker.io, debootstrap, docker-compose, wrk and pebble (the ACME test CA) when missing
#   2. starts dockerd when the daemon is not reachable (machines without systemd)
#   3. builds the base images headway and the examples need, when missing:
#        python:3.11-slim  postgres:15  redis:7  nginx:stable  mariadb:10.11
#        openresty/openresty:bookworm (headway's proxy: nginx with the lua module)
#      They are built locally from Debian packages (debootstrap + docker import),
#      so Dockerfiles and configs that name the official images resolve without
#      access to a registry.
#
# Safe to re-run: every step checks first and is skipped when already done.
#
# Usage: scripts/bootstrap.sh [--rebuild-images[=NAME,...]]
# Environment:
#   HEADWAY_IMAGE_CACHE   rootfs builds, downloaded packages and build logs
#                         (default /var/cache/headway-images)
#   HEADWAY_DEBIAN_MIRROR Debian mirror                (default http://deb.debian.org/debian)
#   HEADWAY_DEBIAN_SECURITY_MIRROR                     (default http://deb.debian.org/debian-security)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGES_DIR="$SCRIPT_DIR/images"
CACHE_DIR="${HEADWAY_IMAGE_CACHE:-/var/cache/headway-images}"
MIRROR="${HEADWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${HEADWAY_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
DOCKERD_LOG=/var/log/headway-dockerd.log
DOCKERD_WAIT=60
DOCKER_SOCK="${DOCKER_SOCK:-/var/run/docker.sock}"
DOCKER_PIDFILE="${DOCKER_PIDFILE:-/var/run/docker.pid}"
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
# sbin directories are missing from PATH after a plain `su`
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

REBUILD=""   # "all" or a comma-separated list of image names
for arg in "$@"; do
    case "$arg" in
        --rebuild-images) REBUILD=all ;;
        --rebuild-images=*) REBUILD="${arg#*=}" ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (needs apt-get, dockerd and debootstrap)"

# --------------------------------------------------------------------------
# 1. host packages
# --------------------------------------------------------------------------
# command -> package; a command already on PATH (e.g. docker from docker-ce) is fine
HOST_TOOLS=(dockerd:docker.io docker:docker.io debootstrap:debootstrap docker-compose:docker-compose wrk:wrk
            pebble:pebble pebble-challtestsrv:pebble docker-registry:docker-registry htpasswd:apache2-utils
            redis-server:redis-server redis-cli:redis-tools chromium:chromium chromedriver:chromium-driver)

ensure_packages() {
    local missing=() tool pkg
    for tool in "${HOST_TOOLS[@]}"; do
        pkg="${tool#*:}"
        if ! command -v "${tool%%:*}" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    done
    [ -s "$CA_BUNDLE" ] || missing+=(ca-certificates)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages: ok"
        return
    fi
    log "packages: installing ${missing[*]}"
    # Refresh the package lists only when they are absent or older than a day,
    # and once more if the install fails on stale lists.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
        apt-get update -qq
    fi
    if ! apt-get install -y -qq "${missing[@]}" >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# --------------------------------------------------------------------------
# 2. docker daemon
# --------------------------------------------------------------------------
ensure_dockerd() {
    if docker info >/dev/null 2>&1; then
        log "dockerd: running"
        return
    fi
    local pid=""
    if [ -s "$DOCKER_PIDFILE" ] && kill -0 "$(cat "$DOCKER_PIDFILE")" 2>/dev/null; then
        pid="$(cat "$DOCKER_PIDFILE")"
        log "dockerd: pid $pid exists, waiting for it"
    else
        log "dockerd: starting (log: $DOCKERD_LOG)"
        # fd 9 (the bootstrap lock) must not stay open in the daemon
        setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
        pid=$!
    fi
    local waited=0
    until [ -S "$DOCKER_SOCK" ] && docker info >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up, see $DOCKERD_LOG"
        fi
        if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not become ready within ${DOCKERD_WAIT}s, see $DOCKERD_LOG"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd: ready after ${waited}s"
}

# --------------------------------------------------------------------------
# 3. base images
# --------------------------------------------------------------------------
# name | rootfs dir | extra packages
IMAGES=(
    "python:3.11-slim|python-3.11-slim|python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
    "postgres:15|postgres-15|postgresql-15"
    "redis:7|redis-7|redis-server,redis-tools"
    "nginx:stable|nginx-stable|nginx"
    "mariadb:10.11|mariadb-10.11|mariadb-server,mariadb-client"
    "openresty/openresty:bookworm|openresty-bookworm|nginx,libnginx-mod-http-lua,lua-resty-core"
)

# Remove a rootfs directory, first unmounting anything a failed debootstrap left behind.
remove_rootfs() {
    local dir="$1" mnt
    [ -e "$dir" ] || return 0
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    rm -rf --one-file-system "$dir"
}

# Package sources with updates and security fixes (also used by Dockerfiles
# that apt-get install more).
write_sources() {
    local root="$1"
    rm -f "$root/etc/apt/sources.list"
    cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Bring the freshly bootstrapped system up to date (bookworm-updates, security).
upgrade_rootfs() {
    local root="$1" rc=0
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"   # start no services
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    chroot "$root" sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade' || rc=$?
    umount "$root/proc" || true
    rm -f "$root/usr/sbin/policy-rc.d"
    return "$rc"
}

# Shared clean-up applied to every rootfs before import.
slim_rootfs() {
    local root="$1"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
           "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/archives/partial/* \
           "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
           "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/* "$root"/var/tmp/* \
           "$root"/debootstrap
    rm -f "$root"/var/log/bootstrap.log "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log
    # keep licence files, drop the rest of the package documentation
    find "$root/usr/share/doc" -mindepth 1 -type f ! -name copyright -delete 2>/dev/null || true
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
    # same for packages installed later by Dockerfiles (as in Debian's slim images)
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    # docker provides these at run time; do not ship the build machine's values
    : > "$root/etc/resolv.conf"
    echo localhost > "$root/etc/hostname"
}

customize_python() {
    local root="$1"
    # trust exactly what this machine trusts (corporate / egress CAs included)
    install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    # allow `pip install` outside a venv, as in the official image
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    chroot "$root" sh -c 'command -v useradd && command -v groupadd' >/dev/null
}

customize_postgres() {
    local root="$1"
    # the package created a default cluster; the entrypoint initialises $PGDATA instead
    rm -rf "$root/etc/postgresql/15" "$root/var/lib/postgresql/15"
    sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
        "$root/etc/postgresql-common/createcluster.conf"
    sed -ri "s/^#?(listen_addresses)\s*=\s*\S+.*/\1 = '*'/" \
        "$root/usr/share/postgresql/15/postgresql.conf.sample"
    grep -q "^listen_addresses = '\*'" "$root/usr/share/postgresql/15/postgresql.conf.sample"
    install -m 0755 "$IMAGES_DIR/postgres/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
    mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data" "$root/run/postgresql"
    chroot "$root" chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /run/postgresql
    chmod 0700 "$root/var/lib/postgresql/data"
    chmod 3777 "$root/run/postgresql"
}

customize_redis() {
    local root="$1"
    install -m 0755 "$IMAGES_DIR/redis/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
    mkdir -p "$root/data"
    chroot "$root" chown redis:redis /data
}

customize_mariadb() {
    local root="$1"
    # the package initialised a data directory; the entrypoint initialises /var/lib/mysql instead
    rm -rf "$root"/var/lib/mysql/*
    # clients come from other containers on the environment's network
    sed -ri 's/^#?\s*bind-address\s*=.*/bind-address = 0.0.0.0/' "$root/etc/mysql/mariadb.conf.d/50-server.cnf"
    grep -q '^bind-address = 0.0.0.0' "$root/etc/mysql/mariadb.conf.d/50-server.cnf"
    printf '[mariadbd]\nskip-name-resolve\n' > "$root/etc/mysql/mariadb.conf.d/90-container.cnf"
    install -m 0755 "$IMAGES_DIR/mariadb/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
    mkdir -p "$root/docker-entrypoint-initdb.d" "$root/run/mysqld"
    chroot "$root" chown mysql:mysql /var/lib/mysql /run/mysqld
}

customize_nginx() {
    local root="$1"
    chroot "$root" sh -c 'getent passwd nginx >/dev/null || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx'
    rm -f "$root/etc/nginx/sites-enabled/default"
    mkdir -p "$root/etc/nginx/conf.d" "$root/var/log/nginx" "$root/var/lib/nginx" "$root/var/cache/nginx"
    install -m 0644 "$IMAGES_DIR/nginx/nginx.conf" "$root/etc/nginx/nginx.conf"
    install -m 0644 "$IMAGES_DIR/nginx/default.conf" "$root/etc/nginx/conf.d/default.conf"
    [ -s "$root/usr/share/nginx/html/index.html" ] || {
        mkdir -p "$root/usr/share/nginx/html"
        echo '<!DOCTYPE html><title>nginx</title><p>nginx is running.</p>' > "$root/usr/share/nginx/html/index.html"
    }
    # log to the container's stdout/stderr
    ln -sf /dev/stdout "$root/var/log/nginx/access.log"
    ln -sf /dev/stderr "$root/var/log/nginx/error.log"
}

# Image metadata, one `docker import -c` per line; a final STOPSIGNAL (not
# accepted by `docker import`) is applied by a one-line docker build.
image_changes() {
    case "$1" in
        python:3.11-slim)
            printf '%s\n' \
                "ENV PATH=$DEFAULT_PATH LANG=C.UTF-8 PIP_CERT=$CA_BUNDLE SSL_CERT_FILE=$CA_BUNDLE REQUESTS_CA_BUNDLE=$CA_BUNDLE" \
                'CMD ["python3"]' ;;
        postgres:15)
            printf '%s\n' \
                "ENV PATH=/usr/lib/postgresql/15/bin:$DEFAULT_PATH LANG=C.UTF-8 PG_MAJOR=15 PGDATA=/var/lib/postgresql/data" \
                'VOLUME /var/lib/postgresql/data' \
                'EXPOSE 5432' \
                'ENTRYPOINT ["docker-entrypoint.sh"]' \
                'CMD ["postgres"]' ;;
        redis:7)
            printf '%s\n' \
                "ENV PATH=$DEFAULT_PATH LANG=C.UTF-8" \
                'VOLUME /data' \
                'WORKDIR /data' \
                'EXPOSE 6379' \
                'ENTRYPOINT ["docker-entrypoint.sh"]' \
                'CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0"]' ;;
        mariadb:10.11)
            printf '%s\n' \
                "ENV PATH=$DEFAULT_PATH LANG=C.UTF-8" \
                'VOLUME /var/lib/mysql' \
                'EXPOSE 3306' \
                'ENTRYPOINT ["docker-entrypoint.sh"]' \
                'CMD ["mariadbd"]' ;;
        nginx:stable|openresty/openresty:*)
            printf '%s\n' \
                "ENV PATH=$DEFAULT_PATH LANG=C.UTF-8" \
                'EXPOSE 80' \
                'CMD ["nginx", "-g", "daemon off;"]' ;;
    esac
}

stop_signal() {
    case "$1" in
        postgres:15) echo SIGINT ;;    # fast shutdown instead of waiting for clients
        nginx:stable|openresty/openresty:*) echo SIGQUIT ;;  # graceful shutdown
        *) echo "" ;;
    esac
}

build_image() {
    local name="$1" slug="$2" include="$3"
    local root="$CACHE_DIR/rootfs/$slug" debs="$CACHE_DIR/debs/$slug" logf="$CACHE_DIR/logs/$slug.log"
    local tmp_tag="headway-base-tmp/$slug:latest" changes=() line sig start=$SECONDS

    remove_rootfs "$root"
    mkdir -p "$debs" "$CACHE_DIR/rootfs"
    : > "$logf"
    debootstrap --variant=minbase --include="$include" --cache-dir="$debs" \
        "$SUITE" "$root" "$MIRROR" >>"$logf" 2>&1
    write_sources "$root"
    upgrade_rootfs "$root" >>"$logf" 2>&1

    case "$name" in
        python:*) customize_python "$root" ;;
        postgres:*) customize_postgres "$root" ;;
        redis:*) customize_redis "$root" ;;
        nginx:*|openresty/*) customize_nginx "$root" ;;
        mariadb:*) customize_mariadb "$root" ;;
    esac >>"$logf" 2>&1
    slim_rootfs "$root"

    while IFS= read -r line; do
        changes+=(-c "$line")
    done < <(image_changes "$name")
    changes+=(-c "LABEL io.headway.base=debootstrap-$SUITE")

    # import under a temporary tag; the real tag only appears on success
    tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -C "$root" -c . \
        | docker import "${changes[@]}" - "$tmp_tag" >>"$logf"
    sig="$(stop_signal "$name")"
    if [ -n "$sig" ]; then
        printf 'FROM %s\nSTOPSIGNAL %s\n' "$tmp_tag" "$sig" | docker build -q -t "$name" - >>"$logf" 2>&1
    else
        docker tag "$tmp_tag" "$name"
    fi
    docker rmi "$tmp_tag" >>"$logf"
    remove_rootfs "$root"
    log "image $name: built in $((SECONDS - start))s ($(( $(docker image inspect -f '{{.Size}}' "$name") / 1000000 )) MB)"
}

ensure_images() {
    mkdir -p "$CACHE_DIR/logs"
    [ -s "$CA_BUNDLE" ] || die "$CA_BUNDLE missing (install ca-certificates)"
    local entry name slug include
    local -a pids=() names=() slugs=()
    for entry in "${IMAGES[@]}"; do
        IFS='|' read -r name slug include <<<"$entry"
        if [ "$REBUILD" != all ] && [[ ",$REBUILD," != *",$name,"* ]] \
            && docker image inspect "$name" >/dev/null 2>&1; then
            log "image $name: present"
            continue
        fi
        ( set -euo pipefail; build_image "$name" "$slug" "$include" ) &
        pids+=("$!"); names+=("$name"); slugs+=("$slug")
    done
    [ "${#pids[@]}" -gt 0 ] || return 0

    local i failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            failed=1
            log "image ${names[$i]}: FAILED, last lines of $CACHE_DIR/logs/${slugs[$i]}.log:"
            tail -n 15 "$CACHE_DIR/logs/${slugs[$i]}.log" | sed 's/^/    /' >&2 || true
        fi
    done
    [ "$failed" -eq 0 ] || die "some base images could not be built"
}

main() {
    local t0=$SECONDS
    # one bootstrap at a time
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.bootstrap.lock"
    flock 9
    ensure_packages
    ensure_dockerd
    ensure_images
    log "done in $((SECONDS - t0))s"
}

main
