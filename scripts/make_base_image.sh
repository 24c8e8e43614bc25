#!/usr/bin/env bash
# Makes a Debian 12 (bookworm) container image from Debian's packages alone (mmdebstrap), for a
# machine that reaches Debian's archive but no container registry.
#
#   scripts/make_base_image.sh python [TAG]   stand-in for python:3.11-slim-bookworm, the Dockerfile's
#                                             base: Debian's python3 (3.11) with venv and pip, CA
#                                             certificates (default TAG python:3.11-slim-bookworm)
#   scripts/make_base_image.sh bare [TAG]     what a new user's machine has: python3, curl and CA
#                                             certificates, nothing else (no venv module, no Java, no
#                                             compiler); the fresh-machine test runs the README in it
#                                             (default TAG localhost/alm-bare-debian:bookworm)
#
# The engine is podman, else docker (CONTAINER_ENGINE overrides). Certificates that the host
# added under /usr/local/share/ca-certificates (a company proxy's) are added to the image too,
# so pip and apt inside it trust what the host trusts. Needs root and Debian's mmdebstrap.
set -euo pipefail

kind=${1:-}
case "$kind" in
  python) tag=${2:-python:3.11-slim-bookworm}; packages=python3,python3-venv,python3-pip,ca-certificates,netbase,tzdata ;;
  bare) tag=${2:-localhost/alm-bare-debian:bookworm}; packages=python3,curl,ca-certificates,netbase ;;
  *) echo "usage: $0 python|bare [TAG]" >&2; exit 2 ;;
esac

engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
if [ -z "$engine" ]; then
  echo "error: no container engine: install podman (apt-get install podman) or docker" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "error: mmdebstrap is needed (apt-get install mmdebstrap)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org}
started=$(date +%s)
# The image trusts the certificates the host added itself (none on most machines).
# shellcheck disable=SC2016  # $1 is mmdebstrap's, expanded when it runs the hook
hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"
        chroot "$1" update-ca-certificates >/dev/null
      fi'
# Like Debian's slim images: no manual pages, translations or documentation but the licences,
# for the packages installed now and later.
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="$hook" \
  bookworm "$work/rootfs.tar" \
  "deb $mirror/debian bookworm main" \
  "deb $mirror/debian bookworm-updates main" \
  "deb $mirror/debian-security bookworm-security main"
# PATH must be set explicitly: an imported image has no environment, and a Dockerfile's
# ENV PATH=...:${PATH} would otherwise end in ':' and lose /usr/bin.
"$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "made $tag from Debian's packages in $(( $(date +%s) - started )) s"
