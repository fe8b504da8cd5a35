#!/usr/bin/env bash
# Installs the Debian packages the package, its tests, its models and its
# examples need, if any is missing. Safe to run again; does nothing when all
# are present. liburing-dev is the io_uring library the Aio target links.
# dbus-daemon and dbus-bin (dbus-daemon, dbus-run-session, dbus-send) and
# libglib2.0-bin (gdbus) are for GLibDaemon's demo and test.
set -euo pipefail

packages=(libglib2.0-dev libglib2.0-bin liburing-dev pkg-config gcc spin dbus-daemon dbus-bin)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
