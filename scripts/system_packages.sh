#!/usr/bin/env bash
# Debian packages the venv builds against: the MariaDB client library and headers, for mysqlclient (the MySQL
# provider's driver, which PyPI ships only as source for Linux).
set -euo pipefail
pkg-config --exists libmariadb 2>/dev/null && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "Installing Debian's libmariadb-dev (headers for mysqlclient) ..."
$sudo apt-get install -y -q --no-install-recommends libmariadb-dev pkg-config >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends libmariadb-dev pkg-config >/dev/null; }
