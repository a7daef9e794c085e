#!/usr/bin/env bash
# Installs what airlift's commands need on a Debian machine (run as root or with sudo).
# Cheap when everything is present: system tools are checked by command, the venv by a
# stamp holding the hash of pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python=${PYTHON:-python3}

declare -A pkg_for=(
  [podman]=podman [runc]=runc [debootstrap]=debootstrap [ssh]=openssh-client
  [tar]=tar [systemd-analyze]=systemd
  # The lab's private registry for the stage tests (127.0.0.1, htpasswd bcrypt auth).
  [docker-registry]=docker-registry [htpasswd]=apache2-utils
)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
# podman's container networking; hosts run --network none but podman still wants it.
[ -d /usr/lib/cni ] || [ -x /usr/libexec/podman/netavark ] || missing+=(containernetworking-plugins)
"$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "airlift: missing ${missing[*]}; this is not a Debian machine, install them with" \
         "your package manager (podman, runc, debootstrap, openssh client, python3 venv)" >&2
    exit 2
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[setup] installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # The package starts a registry on every interface where systemd runs; the lab starts
  # its own on 127.0.0.1 only, for the length of a test.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null &&
     [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi

stamp="$venv/.airlift-stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] creating $venv with the pinned dependencies"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
