#!/usr/bin/env bash
# Installs, with apt-get, every Debian 12 package that anweddol's build, tests,
# examples, benchmarks, guest ISO and test sandbox need. Idempotent: packages
# already present are left alone, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  # Build: compiler, CMake + CTest, ccache, and the libraries the headers use.
  build-essential cmake ninja-build pkg-config ccache git clang-format
  libboost1.81-dev libboost-json1.81-dev
  libvirt-dev libssh-dev libssl-dev catch2
  # anweddol-server's /metrics: prometheus-cpp's registry and text
  # serializer.
  prometheus-cpp-dev
  # anweddol-server: its configuration file (yaml-cpp) and its state
  # database (SQLite); its tests speak both protocols with Debian's requests
  # and cryptography.
  libyaml-cpp-dev libsqlite3-dev python3-requests python3-cryptography
  # libxml2: the domain XML fuzz harness reads the XML back with it.
  libxml2-dev
  # Fuzzing (scripts/fuzz.sh): clang, and the runtimes of libFuzzer and of
  # clang's sanitizers, which Debian 12 ships apart in libclang-rt-14-dev
  # (only recommended, so --no-install-recommends would leave it out).
  clang libclang-rt-14-dev
  # Sandbox: libvirtd + virtlogd + QEMU (software emulation) and the NAT
  # network's bridge, dnsmasq and firewall rules, in a private netns.
  libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86
  qemu-utils dnsmasq-base iptables iproute2 procps
  # Tenant isolation: libvirt's network filters (clean-traffic), applied
  # with ebtables (iptables ships ebtables-nft).
  libvirt-daemon-config-nwfilter
  # Guest ISO: the kernel comes with `apt-get download` (never installed on
  # the host); these tools assemble the image.
  busybox-static isolinux syslinux-common xorriso cpio
  # Tests and benchmarks: a real sshd on loopback, and the reference peers.
  openssh-server openssh-client python3 python3-libvirt python3-asyncssh
  python3-paramiko gnuplot-nox
  # benchmarks/server: the reference Anweddol server's own dependencies
  # (it runs from a checkout beside ours), and the driver's YAML.
  python3-twisted python3-sqlalchemy python3-cerberus python3-daemon
  python3-psutil python3-defusedxml python3-yaml socat
  # promtool, which checks anweddol-server's /metrics. The package also
  # brings a Prometheus server, which must not run here: see the end.
  prometheus
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
    missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
# libvirt-daemon-system and openssh-server would start their daemons on the
# host; the sandbox must own libvirtd, so forbid service starts during the
# install unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=true
fi
trap '$own_policy && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Installing `prometheus` enables its server for the next boot (and starts it
# now where the machine's own policy-rc.d allows); only promtool is wanted, so
# stop and disable it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null &&
  [[ -d /run/systemd/system ]]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
