#!/bin/sh
# Install the Debian packages a group of make targets needs.
#   sh tests/deps.sh base    build, make test, make run
#   sh tests/deps.sh fuzz    make fuzz (clang, libFuzzer runtime)
#   sh tests/deps.sh bench   make bench and make soak (wrk, nginx, haproxy)
# As root, missing packages are installed with apt-get; otherwise the exact
# command is printed and the script fails.
set -eu

base="build-essential pkg-config libevent-dev libcurl4-openssl-dev libssl-dev libjansson-dev libjwt-dev
openssl curl ca-certificates python3 python3-pytest python3-jwt python3-cryptography python3-yaml procps systemd"
fuzz="clang libclang-rt-14-dev"
bench="wrk nginx haproxy"

want=""
for group in "$@"; do
    case "$group" in
    base) want="$want $base" ;;
    fuzz) want="$want $base $fuzz" ;;
    bench) want="$want $base $bench" ;;
    *) echo "deps.sh: unknown group $group" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        case " $missing " in *" $p "*) ;; *) missing="$missing $p" ;; esac
    fi
done
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages:$missing" >&2
    echo "Run as root:  apt-get update && $cmd" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# The package lists of a fresh machine may be empty or stale.
apt-get update -q >/dev/null || apt-get update
$cmd >/dev/null
