#!/bin/sh
# Writes the release this container serves (HEADWAY_RELEASE, set by headway) where nginx reads it, then runs
# the command (nginx). /release.json answers with it, and every response carries it as X-Release.
set -eu
mkdir -p /tmp/nginx
release=$(printf '%s' "${HEADWAY_RELEASE:-dev}" | tr -cd 'A-Za-z0-9._+-' | cut -c1-128)
printf 'map $host $tracker_release { default "%s"; }\n' "${release:-dev}" > /tmp/nginx/release.conf
exec "$@"
