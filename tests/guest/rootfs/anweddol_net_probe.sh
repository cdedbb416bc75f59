#!/bin/sh
# anweddol_net_probe.sh direct|gateway|ip SOURCE_IP|mac SOURCE_MAC TARGET_IP PORT
# anweddol_net_probe.sh ping TARGET_IP
#
# The test image's one root tool for tenants, run through sudo: tries a TCP
# connection to TARGET_IP:PORT the way a guest with root would to get past
# the host's isolation, and prints `reached` when the target sent at least
# one byte back (an SSH banner, a test listener's greeting), `blocked`
# otherwise. `direct`: as anyone; `gateway`: routed through the default
# gateway instead of straight over the bridge; `ip`: from a source address
# that is not the guest's (the address is added, then removed); `mac`: from
# another MAC address (set, then restored). What it changes it restores, and
# it changes nothing else. `ping` prints `reached` when TARGET_IP answers an
# ICMP echo (busybox's ping needs root). It exists so that the tests can
# show, from inside a real guest, that anweddol's network isolation stops
# each of these, which a tenant with root in their own guest could try.
set -eu

die() {
  echo "anweddol_net_probe.sh: $*" >&2
  exit 2
}
# Digits and dots only (grep alone checks line by line: a newline would let
# an option through to nc), in the shape of an address.
is_ipv4() {
  case $1 in '' | *[!0-9.]*) return 1 ;; esac
  echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$'
}

mode=${1:-}
if [ "$mode" = ping ]; then
  [ $# -eq 2 ] && is_ipv4 "$2" || die "usage: ping TARGET_IP"
  if ping -c 2 -W 2 "$2" >/dev/null 2>&1; then echo reached; else echo blocked; fi
  exit 0
fi
case $mode in
  direct | gateway) [ $# -eq 3 ] || die "usage: $mode TARGET_IP PORT"; shift ;;
  ip | mac) [ $# -eq 4 ] || die "usage: $mode SOURCE TARGET_IP PORT"; source=$2; shift 2 ;;
  *) die "unknown mode '$mode': direct, gateway, ip, mac or ping" ;;
esac
target=$1
port=$2
is_ipv4 "$target" || die "invalid target address '$target'"
case $port in '' | *[!0-9]*) die "invalid port '$port'" ;; esac
cd /

interface=eth0
gateway=$(ip route show default | awk '{ print $3; exit }')
undo() { :; }
case $mode in
  gateway)
    ip route add "$target/32" via "$gateway" dev "$interface"
    undo() { ip route del "$target/32" via "$gateway" dev "$interface"; } ;;
  ip)
    # busybox's nc binds no source address: a route to the target that
    # names the spoofed one as its source does it for every connection.
    is_ipv4 "$source" || die "invalid source address '$source'"
    ip addr add "$source/32" dev "$interface"
    ip route add "$target/32" dev "$interface" src "$source"
    undo() {
      ip route del "$target/32" dev "$interface" src "$source"
      ip addr del "$source/32" dev "$interface"
    } ;;
  mac)
    case $source in '' | *[!0-9a-f:]*) die "invalid MAC '$source'" ;; esac
    echo "$source" | grep -Eq '^([0-9a-f]{2}:){5}[0-9a-f]{2}$' || die "invalid MAC '$source'"
    own_mac=$(cat "/sys/class/net/$interface/address")
    ip link set dev "$interface" address "$source"
    # Forget the neighbours learned with the old address, so that the
    # probe's first frame is an ARP request from the new one.
    ip neigh flush dev "$interface" >/dev/null 2>&1
    undo() {
      ip link set dev "$interface" address "$own_mac"
      ip neigh flush dev "$interface" >/dev/null 2>&1
    } ;;
esac

answer=$(nc -w 3 -- "$target" "$port" </dev/null 2>/dev/null | head -c 64 | wc -c) || answer=0
undo
if [ "$answer" -gt 0 ]; then echo reached; else echo blocked; fi
