#!/usr/bin/env bash
# The test sandbox: libvirtd + virtlogd + QEMU inside a private network
# namespace, with libvirt's `default` NAT network (virbr0 + dnsmasq), so that
# guests on 192.168.122.0/24 exist only there and no test traffic leaves the
# machine.
#
#   scripts/sandbox.sh up          start it (idempotent)
#   scripts/sandbox.sh down        destroy every domain, stop the daemons,
#                                  remove the namespace; safe after a failure
#   scripts/sandbox.sh exec CMD..  run CMD inside the namespace
#   scripts/sandbox.sh status      say whether it runs
#   scripts/sandbox.sh kill-libvirtd
#                                  SIGKILL libvirtd (a crash, for the tests
#                                  that check reconnection); `up` restarts it
#
# Pid files and logs live in $ANWEDDOL_SANDBOX_DIR (default build/sandbox).
# No systemd is needed. If a libvirtd runs on the machine outside the sandbox,
# `up` says so and stops rather than disturb it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
netns=${ANWEDDOL_SANDBOX_NETNS:-anweddol}
state=$(realpath -m "${ANWEDDOL_SANDBOX_DIR:-$repo/build/sandbox}")
uri=qemu:///system

say() { echo "sandbox: $*" >&2; }
die() { say "$*"; exit 1; }

# Whether process $1 runs. A zombie does not: daemons are reparented to pid 1,
# which may reap them only a second or two after they exit.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the state follows the command name, which may hold spaces
  [[ ${stat%% *} != Z ]]
}

pid_of() { # the live pid recorded in pid file $1, or nothing
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ -n $pid ]] && alive "$pid" && echo "$pid"
  return 0
}

in_netns() { ip netns exec "$netns" "$@"; }

virsh_quiet() { virsh -q -c "$uri" "$@"; }

network_active() { virsh_quiet net-info default 2>/dev/null | grep -q '^Active: *yes'; }

stop_pid() { # SIGTERM, then SIGKILL after 10 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root: it creates a network namespace and starts libvirtd"
}

refuse_foreign_libvirtd() {
  local ours foreign pid
  ours=$(pid_of "$state/libvirtd.pid")
  foreign=$( (pgrep -x libvirtd; pgrep -x virtqemud) | grep -vx "${ours:-none}" || true)
  # A libvirtd just killed (kill-libvirtd) may linger as a zombie.
  foreign=$(for pid in $foreign; do if alive "$pid"; then echo "$pid"; fi; done)
  if [[ -n $foreign ]]; then
    die "a libvirt daemon already runs outside the sandbox (pid $(echo $foreign)):" \
      "stop it first (e.g. 'systemctl stop libvirtd' or 'kill $(echo $foreign)');" \
      "the sandbox will not share or disturb it"
  fi
}

wait_for_libvirtd() {
  for _ in $(seq 300); do
    virsh_quiet version >/dev/null 2>&1 && return 0
    [[ -n $(pid_of "$state/libvirtd.pid") ]] || break
    sleep 0.1
  done
  die "libvirtd did not answer on $uri; see $state/libvirtd.log"
}

# Without udev nobody gives /dev/kvm its usual root:kvm 0660, and libvirt
# then sees KVM as present when it probes QEMU (as root) but unusable when it
# checks for the qemu user: it throws its capability cache away and re-probes
# QEMU for every domain it starts (about a minute each). Do what Debian's udev
# rule does. Whether KVM works is a separate question: tests choose the domain
# type themselves.
fix_kvm_permissions() {
  [[ -c /dev/kvm ]] || return 0
  if [[ $(stat -c %G:%a /dev/kvm) != kvm:660 ]] && getent group kvm >/dev/null; then
    say "giving /dev/kvm udev's ownership (root:kvm 0660)"
    chgrp kvm /dev/kvm && chmod 660 /dev/kvm
  fi
}

up() {
  require_root
  refuse_foreign_libvirtd
  fix_kvm_permissions
  mkdir -p "$state"

  if ! ip netns list | grep -qx "$netns\( .*\)\?"; then
    ip netns add "$netns"
  fi
  in_netns ip link set lo up

  cat >"$state/virtlogd.conf" <<CONF
log_outputs = "3:file:$state/virtlogd.log"
CONF
  # ANWEDDOL_SANDBOX_LOG_FILTERS (libvirt's log_filters syntax, such as
  # "1:qemu 1:util.command") turns on debug logs for those modules.
  local filters=${ANWEDDOL_SANDBOX_LOG_FILTERS:-}
  cat >"$state/libvirtd.conf" <<CONF
log_filters = "$filters"
log_outputs = "$([[ -n $filters ]] && echo 1 || echo 3):file:$state/libvirtd.log"
CONF

  if [[ -z $(pid_of "$state/virtlogd.pid") ]]; then
    in_netns virtlogd --daemon --config "$state/virtlogd.conf" \
      --pid-file "$state/virtlogd.pid"
  fi
  if [[ -z $(pid_of "$state/libvirtd.pid") ]]; then
    in_netns libvirtd --daemon --config "$state/libvirtd.conf" \
      --pid-file "$state/libvirtd.pid"
  fi
  wait_for_libvirtd

  if ! virsh_quiet net-info default >/dev/null 2>&1; then
    virsh_quiet net-define /usr/share/libvirt/networks/default.xml >/dev/null
  fi
  # A restarted libvirtd answers, and calls its running network inactive,
  # before it has taken that network back: then net-start says "already
  # active", which is as good.
  if ! network_active && ! virsh_quiet net-start default >/dev/null 2>"$state/net-start.err" &&
    ! grep -q 'network is already active' "$state/net-start.err"; then
    die "cannot start network default: $(cat "$state/net-start.err")"
  fi
  say "up: libvirtd pid $(pid_of "$state/libvirtd.pid") in netns '$netns'," \
    "network default on virbr0 ($(in_netns ip -4 -o addr show virbr0 | awk '{ print $4 }'))"
}

down() {
  require_root
  if [[ -n $(pid_of "$state/libvirtd.pid") ]]; then
    local domain
    for domain in $(virsh_quiet list --name 2>/dev/null); do
      say "destroying leftover domain $domain"
      virsh_quiet destroy "$domain" >/dev/null 2>&1 || true
    done
    virsh_quiet net-destroy default >/dev/null 2>&1 || true
  fi
  local name pid
  for name in libvirtd virtlogd; do
    pid=$(pid_of "$state/$name.pid")
    [[ -n $pid ]] && stop_pid "$pid"
    rm -f "$state/$name.pid"
  done
  if ip netns list | grep -qx "$netns\( .*\)\?"; then
    # Whatever still runs in the namespace (a QEMU or dnsmasq that outlived
    # its daemon) goes with it.
    for pid in $(ip netns pids "$netns"); do
      stop_pid "$pid"
    done
    ip netns delete "$netns"
  fi
  # Every guest is gone, and none of them gave its lease back (a destroyed
  # guest sends no DHCPRELEASE): without this, libvirt's lease helper
  # replays them all to the next dnsmasq, and a few hundred boots within
  # the leases' hour exhaust 192.168.122.0/24, after which new guests wait
  # for an address until old leases expire.
  rm -f /var/lib/libvirt/dnsmasq/virbr0.status
  say "down"
}

status() {
  local pid
  pid=$(pid_of "$state/libvirtd.pid")
  if [[ -n $pid ]] && ip netns list | grep -qx "$netns\( .*\)\?"; then
    say "up: libvirtd pid $pid in netns '$netns'"
  else
    say "down"
    return 1
  fi
}

# A crash, not a shutdown: the tests check that clients notice and recover.
kill_libvirtd() {
  require_root
  local pid
  pid=$(pid_of "$state/libvirtd.pid")
  [[ -n $pid ]] || die "libvirtd is not running"
  kill -9 "$pid"
  for _ in $(seq 100); do
    alive "$pid" || break
    sleep 0.1
  done
  rm -f "$state/libvirtd.pid"
  say "killed libvirtd (pid $pid)"
}

case ${1:-} in
  up) up ;;
  kill-libvirtd) kill_libvirtd ;;
  down) down ;;
  status) status ;;
  exec)
    shift
    (($# > 0)) || die "usage: sandbox.sh exec CMD [ARGS...]"
    status >/dev/null 2>&1 || die "not up: run 'scripts/sandbox.sh up' first"
    ANWEDDOL_SANDBOX=1 exec ip netns exec "$netns" "$@"
    ;;
  *) die "usage: sandbox.sh up | down | status | kill-libvirtd | exec CMD [ARGS...]" ;;
esac
