#!/usr/bin/env bash
# What `make demo` and `make test` need from the system, installed when missing.
#
#   bootstrap.sh          install what is missing, then return
#   bootstrap.sh start    install now what the venv needs; the rest in the background
#   bootstrap.sh wait     wait for that background install (its log on failure)
#
# Debian packages only; checked by the command or file each one provides, so a machine that
# has them (whatever installed them) is left alone. As root: one `apt-get update`, then one
# `apt-get install` of what is missing. Without root: one line naming the packages, exit 2,
# before anything is started. Python dependencies, the Go-built binaries and the images
# are the Makefile's next steps (venv, binaries, images). The Go build needs none of these
# packages, so `make` starts the install in the background and waits for it before the
# images: on a fresh machine apt (13.5 min here once, for `apt-get update` alone) and the
# Go build (~23 min) overlap.
set -euo pipefail
mode=${1:-now}
state=${TASKQUEUE_BOOTSTRAP_STATE:-$(cd "$(dirname "$0")/../.." && pwd)/.bootstrap}

if [ "$mode" = wait ]; then
  if [ -f "$state/apt.pid" ]; then
    pid=$(cat "$state/apt.pid")
    if kill -0 "$pid" 2>/dev/null; then
      echo "waiting for the system packages' install (log: $state/apt.log)"
      while kill -0 "$pid" 2>/dev/null; do sleep 1; done
    fi
    rc=$(cat "$state/apt.rc" 2>/dev/null || echo 1)
    if [ "$rc" != 0 ]; then
      echo "installing the system packages failed (exit $rc):" >&2
      tail -20 "$state/apt.log" >&2
      exit "$rc"
    fi
    rm -f "$state/apt.pid" "$state/apt.rc"
  fi
  mode=now  # what is still missing (nothing, normally) is installed or named now
fi

# package:how to tell it is there (a command on PATH, or an absolute path)
needs=(
  python3:python3
  python3-venv:/usr/lib/python3/dist-packages/ensurepip
  ca-certificates:/etc/ssl/certs/ca-certificates.crt
  make:make
  curl:curl
  openssl:openssl
  redis-server:redis-server
  chromium:chromium
  iproute2:ip
  iptables:iptables
  util-linux:nsenter
  conntrack:conntrack
  containerd:containerd
  runc:runc
  containernetworking-plugins:/usr/lib/cni/bridge
  buildah:buildah
  debootstrap:debootstrap
  gcc:gcc
  libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a
)

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

missing=()
for entry in "${needs[@]}"; do
  package=${entry%%:*}
  probe=${entry#*:}
  if [ "$package" = python3-venv ]; then
    # Any Python 3.11+ with venv + ensurepip will do (pyenv, python.org, Debian's).
    if python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      continue
    fi
  fi
  if [ "$package" = libc6-dev ]; then
    # The static pause binary: any libc.a the compiler finds.
    if [ -n "$(gcc -print-file-name=libc.a 2>/dev/null | grep /)" ] && [ -e "$(gcc -print-file-name=libc.a)" ]; then
      continue
    fi
  fi
  have "$probe" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
  echo "missing system packages: sudo apt-get install ${missing[*]}" >&2
  exit 2
fi
if [ -z "${KUBECONFIG:-}" ] && [ "$(id -u)" != 0 ]; then
  # The test bed's node needs a network namespace and cgroups of its own.
  echo "the local test bed needs root: run as root, or set KUBECONFIG to a cluster of yours" >&2
  exit 2
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
# What `python3 -m venv` and pip need is installed at once; so is everything when a
# Python venv is missing anyway (the update is the slow part and is then already done).
if [ "$mode" = start ] && ! printf '%s\n' "${missing[@]}" | grep -qxE 'python3|python3-venv|ca-certificates|make'; then
  if [ -f "$state/apt.pid" ] && kill -0 "$(cat "$state/apt.pid")" 2>/dev/null; then
    exit 0  # an earlier start's install is still running: wait collects it
  fi
  mkdir -p "$state"
  rm -f "$state/apt.rc"
  echo "installing ${missing[*]} in the background (log: $state/apt.log)"
  export -f install
  setsid bash -c 'install "$@" > "$0/apt.log" 2>&1; echo $? > "$0/apt.rc"' "$state" "${missing[@]}" \
    < /dev/null > /dev/null 2>&1 &
  echo $! > "$state/apt.pid"
  exit 0
fi
echo "installing ${missing[*]}"
install "${missing[@]}"
