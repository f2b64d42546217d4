#!/bin/sh
# Stands in for a package manager (npm ci, pip install, apt-get install): "installs" every
# package listed in packages.txt under /app/www/vendor. The sleep stands in for the download
# and build time that makes this the step worth caching.
set -eu
mkdir -p /app/www/vendor
grep -v '^#' /app/deps/packages.txt | while read -r name version; do
    [ -n "$name" ] || continue
    echo "installing $name $version"
    echo "/* $name $version */" > "/app/www/vendor/$name.txt"
    sleep 1
done
