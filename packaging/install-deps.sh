#!/usr/bin/env bash
# Installs, from Debian 12's archive only, every package openshell needs to build, test and
# benchmark. Idempotent: installs only what is missing and skips apt entirely when nothing is.
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config g++ python3
  libcli11-dev libasio-dev libmbedtls-dev
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libseccomp-dev libssh-dev libssl-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libhttp-parser-dev
  # tests
  catch2 curl openssl openssh-client openssh-sftp-server socat iproute2 procps
  # fuzzing (libFuzzer ships in clang's runtime)
  clang libclang-rt-14-dev
  # benchmarks and the peers they are compared with
  libbenchmark-dev tinyproxy squid bubblewrap mitmproxy
  # tests/bench/ssh_bench.py's peer: the bench starts its own sshd; policy-rc.d below keeps the
  # package from starting a system one on port 22
  openssh-server
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
# --no-install-recommends: libasio-dev would otherwise pull in nine Boost packages.
# Daemons in the list (squid, tinyproxy) must not start: benchmarks run their own instances.
printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
$sudo chmod 755 /usr/sbin/policy-rc.d
trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
