#!/usr/bin/env bash
# Idempotent environment set-up from a fresh machine: system tools, virtual environment, pinned
# requirements and the compiled recurrence kernel. Used by scripts/serve.sh,
# scripts/run_tests.sh and the Dockerfile.
#   scripts/setup_env.sh           serving, training, evaluation and clients (requirements.txt)
#   scripts/setup_env.sh --serve   what a server needs only (requirements-serve.txt): the image
#   scripts/setup_env.sh --dev     everything, plus the test tools (requirements-dev.txt, kubectl
#                                  among them) and the Debian tools the deployment tests use
#                                  (promtool, Prometheus, podman and mmdebstrap for the image
#                                  tests); CI (ALM_REQUIRE_TOOLS=1) fails a test whose tool is missing
# What the machine lacks (Java, the venv module, a C++ compiler) is installed from Debian's
# packages when this runs as root with apt; otherwise it says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MODE=${1:-}
case "$MODE" in
  ""|--serve|--dev) ;;
  *) echo "usage: $0 [--serve|--dev]" >&2; exit 2 ;;
esac

can_apt() { [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; }
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  local log
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "error: apt-get install $* failed (above)" >&2
    return 1
  fi
  rm -f "$log"
}

# need WHAT PACKAGES... : install from Debian's packages (root with apt), else stop and say how.
need() {
  local what=$1
  shift
  if can_apt; then
    echo "Installing $what from Debian's packages: $*" >&2
    apt_install "$@"
  else
    echo "error: $what is missing. Install it, e.g. 'sudo apt-get install $*', then re-run $0." >&2
    exit 1
  fi
}

if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(1[1-9]|[2-9][0-9])'; then
  # Slim Debian images leave out /usr/share/man, where the JRE's post-install step puts links.
  if can_apt; then mkdir -p /usr/share/man/man1; fi
  need "a Java 11+ runtime (TorchServe's front end)" openjdk-17-jre-headless
fi

if [ ! -x "$VENV/bin/python" ]; then
  # Debian and Ubuntu ship venv's pip bootstrap separately (python3-venv).
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need "Python's venv module" python3-venv
  fi
  "$PYTHON" -m venv "$VENV"
fi

REQUIREMENTS=requirements.txt
[ "$MODE" = "--serve" ] && REQUIREMENTS=requirements-serve.txt
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
# The project itself, editable: its packages import by name from anywhere, no path edits.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .

if [ "$MODE" = "--dev" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
  # Packages whose declared dependencies would move the pins above (see the file).
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements-dev-nodeps.txt
  # Prometheus (server and promtool) for the scrape test and the config checks; podman, runc and
  # mmdebstrap to build and run the image here without a registry (tests/deploy/test_image.py).
  missing=()
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
  if ! { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }; then
    # podman's default runtime (crun) refuses hosts with hybrid cgroups: runc works everywhere.
    command -v podman >/dev/null 2>&1 \
      || missing+=(podman catatonit uidmap slirp4netns fuse-overlayfs netavark containernetworking-plugins iptables)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
  fi
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    if can_apt; then
      apt_install "${missing[@]}" || echo "warning: could not install ${missing[*]}; the tests that need them will say so" >&2
    else
      echo "warning: not installed: ${missing[*]} (Debian packages); the tests that need them will say so" >&2
    fi
  fi
fi

# The compiled kernel is optional (the PyTorch path computes the same forecasts, only slower),
# but it needs a C++ compiler: install one where we can, and say what is lost where we cannot.
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  if can_apt; then
    need "a C++ compiler (for the recurrence kernel)" g++
  else
    echo "warning: no C++ compiler (g++): the recurrence kernel is not built and the service runs on the" \
         "PyTorch path, ~3x slower. Install one ('sudo apt-get install g++') and re-run $0." >&2
    exit 0
  fi
fi
"$VENV/bin/python" scripts/build_native.py --quiet-failure
