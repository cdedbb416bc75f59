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
# Two-host mode, a test bed for a pool of hypervisor hosts:
#
#   scripts/sandbox.sh up --hosts 2
#                                  two hypervisor hosts h1 and h2, each in its
#                                  own network and mount namespaces with its
#                                  own virtlogd, libvirtd (qemu+tcp, no auth),
#                                  `default` network (both 192.168.122.0/24)
#                                  and sshd (the jump to its guests); the
#                                  tests run in a third, controller namespace
#                                  linked to both (idempotent; restarts a
#                                  killed libvirtd)
#   scripts/sandbox.sh kill-libvirtd --host N
#                                  SIGKILL host hN's libvirtd
#   down, status and exec work in either mode; exec exports the bed's
#   addresses and SSH credentials (see hosts_env below), also written to
#   $ANWEDDOL_SANDBOX_DIR/hosts.env.
#
# The two modes are exclusive: `up` of one while the other is up fails.
# Pid files and logs live in $ANWEDDOL_SANDBOX_DIR (default build/sandbox),
# those of the hosts in its hosts/h1 and hosts/h2.
# No systemd is needed. If a libvirtd runs on the machine outside the sandbox,
# `up` says so and stops rather than disturb it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
netns=${ANWEDDOL_SANDBOX_NETNS:-anweddol}
state=$(realpath -m "${ANWEDDOL_SANDBOX_DIR:-$repo/build/sandbox}")
uri=qemu:///system

# Two-host mode: the controller's netns, the hosts' names, and their state.
ctl_netns=$netns-ctl
hosts=(h1 h2)
hosts_dir=$state/hosts
ns_dir=$hosts_dir/ns # the hosts' mount namespaces, bound to files here

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

netns_exists() { ip netns list | grep -qx "$1\( .*\)\?"; }

virsh_quiet() { virsh -q -c "$uri" "$@"; }

network_active() { virsh_quiet net-info default 2>/dev/null | grep -q '^Active: *yes'; }

# The sandbox's `default` network: libvirt's own (virbr0, 192.168.122.0/24,
# NAT, DHCP), with STP off on its bridge. With STP on (libvirt's default), a
# new bridge port listens and learns for twice the forward delay (2 x 2 s,
# the kernel's least with STP) before it forwards: a cold boot barely
# notices, since its guest needs longer than that to ask for an address, but
# a container restored from a snapshot slot asks at once and waits about
# 4.5 s more (sshd answered 5.5-5.8 s after a restore began with STP on,
# 1.0-1.1 s with it off). Nothing else is bridged to virbr0, so no loop can
# form. `define_network VIRSH...` defines it with VIRSH (a virsh command for
# the right daemon) unless it is defined so already; an inactive network
# defined otherwise (by an earlier sandbox) is replaced.
network_xml="<network>
  <name>default</name>
  <bridge name='virbr0' stp='off' delay='0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>"
define_network() {
  local current
  current=$("$@" net-dumpxml --inactive default 2>/dev/null || true)
  [[ $current == *"stp='off'"* ]] && return 0
  if [[ -n $current ]]; then
    "$@" net-info default 2>/dev/null | grep -q '^Active: *yes' && return 0
    "$@" net-undefine default >/dev/null
  fi
  "$@" net-define /dev/stdin <<<"$network_xml" >/dev/null
}

stop_pid() { # SIGTERM, then SIGKILL after 10 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Stops the daemons named $2... whose pid files are in folder $1.
stop_daemons() {
  local dir=$1 name pid
  shift
  for name in "$@"; do
    pid=$(pid_of "$dir/$name.pid")
    [[ -n $pid ]] && stop_pid "$pid"
    rm -f "$dir/$name.pid"
  done
}

# Deletes network namespace $1, stopping whatever still runs in it first
# (a QEMU or dnsmasq that outlived its daemon).
delete_netns() {
  local pid
  netns_exists "$1" || return 0
  for pid in $(ip netns pids "$1"); do
    stop_pid "$pid"
  done
  ip netns delete "$1"
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root: it creates a network namespace and starts libvirtd"
}

# The libvirtds the sandbox started, of either mode, one pid a line.
our_libvirtds() {
  local h
  pid_of "$state/libvirtd.pid"
  for h in "${hosts[@]}"; do
    pid_of "$hosts_dir/$h/libvirtd.pid"
  done
}

refuse_foreign_libvirtd() {
  local ours foreign pid
  ours=$(our_libvirtds)
  foreign=$( (pgrep -x libvirtd; pgrep -x virtqemud) | grep -vxF "${ours:-none}" || true)
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

# libvirtd.conf's lines that send its log to file $1.
# ANWEDDOL_SANDBOX_LOG_FILTERS (libvirt's log_filters syntax, such as
# "1:qemu 1:util.command") turns on debug logs for those modules.
libvirtd_log_conf() {
  local filters=${ANWEDDOL_SANDBOX_LOG_FILTERS:-}
  echo "log_filters = \"$filters\""
  echo "log_outputs = \"$([[ -n $filters ]] && echo 1 || echo 3):file:$1\""
}

# Anything of the single sandbox left, even half made by a failed `up`.
single_present() { netns_exists "$netns" || [[ -n $(pid_of "$state/libvirtd.pid") ]]; }

up_single() {
  require_root
  ! hosts_present || die "the two-host sandbox is up: run 'scripts/sandbox.sh down' first"
  refuse_foreign_libvirtd
  fix_kvm_permissions
  mkdir -p "$state"

  netns_exists "$netns" || ip netns add "$netns"
  in_netns ip link set lo up

  cat >"$state/virtlogd.conf" <<CONF
log_outputs = "3:file:$state/virtlogd.log"
CONF
  libvirtd_log_conf "$state/libvirtd.log" >"$state/libvirtd.conf"

  if [[ -z $(pid_of "$state/virtlogd.pid") ]]; then
    without_inherited_fds in_netns virtlogd --daemon --config "$state/virtlogd.conf" \
      --pid-file "$state/virtlogd.pid"
  fi
  if [[ -z $(pid_of "$state/libvirtd.pid") ]]; then
    without_inherited_fds in_netns libvirtd --daemon --config "$state/libvirtd.conf" \
      --pid-file "$state/libvirtd.pid"
  fi
  wait_for_libvirtd

  define_network virsh_quiet
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

down_single() {
  if [[ -n $(pid_of "$state/libvirtd.pid") ]]; then
    local domain
    for domain in $(virsh_quiet list --name 2>/dev/null); do
      say "destroying leftover domain $domain"
      virsh_quiet destroy "$domain" >/dev/null 2>&1 || true
    done
    virsh_quiet net-destroy default >/dev/null 2>&1 || true
  fi
  stop_daemons "$state" libvirtd virtlogd
  delete_netns "$netns"
  # Every guest is gone, and none of them gave its lease back (a destroyed
  # guest sends no DHCPRELEASE): without this, libvirt's lease helper
  # replays them all to the next dnsmasq, and a few hundred boots within
  # the leases' hour exhaust 192.168.122.0/24, after which new guests wait
  # for an address until old leases expire.
  rm -f /var/lib/libvirt/dnsmasq/virbr0.status
}

status_single() {
  local pid
  pid=$(pid_of "$state/libvirtd.pid")
  [[ -n $pid ]] && netns_exists "$netns" || return 1
  say "up: libvirtd pid $pid in netns '$netns'"
}

# A crash, not a shutdown: the tests check that clients notice and recover.
# $1 names the libvirtd in messages, $2 is its pid file.
kill_libvirtd() {
  require_root
  local pid
  pid=$(pid_of "$2")
  [[ -n $pid ]] || die "$1 is not running"
  kill -9 "$pid"
  for _ in $(seq 100); do
    alive "$pid" || break
    sleep 0.1
  done
  rm -f "$2"
  say "killed $1 (pid $pid)"
}

# ---------------------------------------------------------------------------
# Two-host mode.
#
#   netns anweddol-ctl  to-h1 10.77.1.1/24 ---- to-ctl 10.77.1.2/24  netns anweddol-h1
#                       to-h2 10.77.2.1/24 ---- to-ctl 10.77.2.2/24  netns anweddol-h2
#
# Each host's netns has its own virbr0 on 192.168.122.0/24 (the same subnet on
# both, as two real hypervisors would have), which the controller has no route
# to: it reaches a guest through its host's sshd, as an SSH jump. Nothing is
# linked to the root namespace, so no traffic leaves the machine.
#
# Two libvirtds on one machine would share /run/libvirt (their sockets, pid
# files, the QEMU monitors), /var/lib/libvirt (dnsmasq's leases), /etc/libvirt
# (the network definitions) and more: each host gets a persistent mount
# namespace in which a private copy is bound over each of those folders.
# ---------------------------------------------------------------------------

host_netns() { echo "$netns-$1"; }
host_address() { echo "10.77.${1#h}.2"; }
ctl_address() { echo "10.77.${1#h}.1"; }
host_uri() { echo "qemu+tcp://$(host_address "$1")/system"; }
host_dir() { echo "$hosts_dir/$1"; }

jump_key=$hosts_dir/jump_ed25519
known_hosts=$hosts_dir/known_hosts
authorized_keys=$hosts_dir/authorized_keys

# The folders each host has its own copy of: the name of the copy in
# $hosts_dir/hN/root, and the folder it is bound over.
private_folders=(run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt
  log:/var/log/libvirt etc:/etc/libvirt)

is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# The tests run in the controller's netns but in the root mount namespace,
# which nsenter leaves them in. `ip netns exec` would give them a new one, and
# the kernel copies no mount namespace file into a new mount namespace: there
# the hosts' mount namespaces would be out of reach of the `up --hosts 2`
# that tests run to restart a killed libvirtd. (The price: /sys/class/net in
# the controller shows the root namespace's interfaces; `ip` is right.)
in_ctl() { nsenter --net="/run/netns/$ctl_netns" "$@"; }

in_host() {
  local h=$1
  shift
  nsenter --mount="$ns_dir/$h" --net="/run/netns/$(host_netns "$h")" "$@"
}

host_virsh() {
  local h=$1
  shift
  in_host "$h" virsh -q -c qemu:///system "$@"
}

# Anything of the two-host mode left, even half made by a failed `up`.
hosts_present() {
  local h
  if netns_exists "$ctl_netns" || is_mounted "$ns_dir"; then
    return 0
  fi
  for h in "${hosts[@]}"; do
    netns_exists "$(host_netns "$h")" && return 0
    [[ -n $(pid_of "$(host_dir "$h")/libvirtd.pid") ]] && return 0
  done
  return 1
}

# The controller and host network namespaces, and the veth pairs between
# them, created right where they belong so that no end ever sits in the root
# namespace.
make_topology() {
  local h hns
  netns_exists "$ctl_netns" || ip netns add "$ctl_netns"
  ip -n "$ctl_netns" link set lo up
  for h in "${hosts[@]}"; do
    hns=$(host_netns "$h")
    netns_exists "$hns" || ip netns add "$hns"
    ip -n "$hns" link set lo up
    if ! ip -n "$ctl_netns" link show "to-$h" >/dev/null 2>&1; then
      ip -n "$ctl_netns" link add "to-$h" type veth peer name to-ctl netns "$hns"
    fi
    ip -n "$ctl_netns" addr replace "$(ctl_address "$h")/24" dev "to-$h"
    ip -n "$hns" addr replace "$(host_address "$h")/24" dev to-ctl
    ip -n "$ctl_netns" link set "to-$h" up
    ip -n "$hns" link set to-ctl up
  done
}

# The folders of $1 (not their files), with their owners and modes, into $2:
# libvirtd expects /var/lib/libvirt/qemu and the like to exist, owned by the
# QEMU user.
copy_folders() {
  local folder
  (cd "$1" && find . -type d) | while IFS= read -r folder; do
    mkdir -p "$2/$folder"
    chown --reference="$1/$folder" "$2/$folder"
    chmod --reference="$1/$folder" "$2/$folder"
  done
}

# A fresh private copy of each folder of private_folders for host $1: the
# system's configuration and QEMU capability cache (which saves libvirtd a
# probe of QEMU of several seconds), but none of its domain or network
# definitions, leases or logs.
seed_host_folders() {
  local root
  root=$(host_dir "$1")/root
  rm -rf "${root:?}/run" "${root:?}/lib" "${root:?}/cache" "${root:?}/etc"
  mkdir -p "$root/run"
  copy_folders /var/lib/libvirt "$root/lib"
  copy_folders /var/log/libvirt "$root/log"
  cp -a /var/cache/libvirt "$root/cache"
  cp -a /etc/libvirt "$root/etc"
  rm -rf "$root/etc/qemu"
  mkdir -p "$root/etc/qemu/networks/autostart"
}

# `unshare --mount=FILE` binds the new namespace to FILE, which the kernel
# allows only on a mount that does not propagate (it could make a loop
# otherwise): $ns_dir is bound over itself and made private.
make_ns_dir() {
  mkdir -p "$ns_dir"
  is_mounted "$ns_dir" && return 0
  mount --bind "$ns_dir" "$ns_dir"
  mount --make-private "$ns_dir"
}

# Host $1's persistent mount namespace, with its private folders bound in it.
make_host_mount_ns() {
  local h=$1 ns=$ns_dir/$1 root folder
  is_mounted "$ns" && return 0
  root=$(host_dir "$h")/root
  seed_host_folders "$h"
  touch "$ns"
  unshare --mount="$ns" --propagation private true
  for folder in "${private_folders[@]}"; do
    nsenter --mount="$ns" mount --bind "$root/${folder%%:*}" "${folder#*:}"
  done
  # What `ip netns exec` does for the single sandbox: a /sys of the host's
  # netns (libvirt reads and sets bridges there), in place of the root's.
  # /sys/fs/cgroup goes with the old /sys, so libvirt makes no cgroups (as in
  # the single sandbox), and the two libvirtds cannot collide in one (each
  # would name its first domain's machine/qemu-1-NAME).
  in_host "$h" sh -c 'umount -l /sys && mount -t sysfs sysfs /sys'
}

# Writes standard input to file $1 at once: tests may read it while an
# `up --hosts 2` of theirs restarts a libvirtd.
replace_file() {
  cat >"$1.new"
  mv -f "$1.new" "$1"
}

# The jump key and each host's key, generated once; the authorized_keys the
# hosts' sshd share and the controller's known_hosts, written from them.
make_ssh_keys() {
  local h key
  [[ -f $jump_key ]] || ssh-keygen -q -t ed25519 -N '' -C anweddol-sandbox-jump -f "$jump_key"
  replace_file "$authorized_keys" <"$jump_key.pub"
  for h in "${hosts[@]}"; do
    key=$(host_dir "$h")/ssh_host_ed25519_key
    [[ -f $key ]] || ssh-keygen -q -t ed25519 -N '' -C "anweddol-sandbox-$h" -f "$key"
    echo "$(host_address "$h") $(cut -d' ' -f1,2 "$key.pub")"
  done | replace_file "$known_hosts"
}

write_host_configs() {
  local h=$1 dir
  dir=$(host_dir "$h")
  cat >"$dir/virtlogd.conf" <<CONF
log_outputs = "3:file:$dir/virtlogd.log"
CONF
  {
    cat <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "$(host_address "$h")"
auth_tcp = "none"
CONF
    libvirtd_log_conf "$dir/libvirtd.log"
  } >"$dir/libvirtd.conf"
  # StrictModes would refuse $authorized_keys wherever the state directory is
  # group-writable; this sshd is reachable from the controller only.
  cat >"$dir/sshd_config" <<CONF
ListenAddress $(host_address "$h"):22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
CONF
}

# Runs "$@" with no file descriptor above 2 open. A daemon keeps whatever its
# caller had open, such as the lock of `flock LOCK sandbox.sh up`, which it
# would then hold until `down` kills it: a `flock LOCK sandbox.sh down` would
# wait for it forever.
without_inherited_fds() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then
        eval "exec $fd>&-" 2>/dev/null || true
      fi
    done
    "$@"
  )
}

start_host_daemons() {
  local h=$1 dir
  dir=$(host_dir "$h")
  if [[ -z $(pid_of "$dir/virtlogd.pid") ]]; then
    without_inherited_fds in_host "$h" virtlogd --daemon --config "$dir/virtlogd.conf" \
      --pid-file "$dir/virtlogd.pid"
  fi
  if [[ -z $(pid_of "$dir/libvirtd.pid") ]]; then
    without_inherited_fds in_host "$h" libvirtd --listen --daemon --config "$dir/libvirtd.conf" \
      --pid-file "$dir/libvirtd.pid"
  fi
  if [[ -z $(pid_of "$dir/sshd.pid") ]]; then
    # The privilege separation folder, which Debian's service makes.
    mkdir -p /run/sshd
    without_inherited_fds in_host "$h" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  fi
}

# Until host $1's libvirtd answers on qemu+tcp from the controller, as the
# tests reach it.
wait_for_host_libvirtd() {
  local h=$1 dir
  dir=$(host_dir "$h")
  for _ in $(seq 300); do
    in_ctl virsh -q -c "$(host_uri "$h")" version >/dev/null 2>&1 && return 0
    [[ -n $(pid_of "$dir/libvirtd.pid") ]] || break
    sleep 0.1
  done
  die "libvirtd of $h did not answer on $(host_uri "$h") from netns '$ctl_netns';" \
    "see $dir/libvirtd.log"
}

# sshd writes its pid file once it listens.
wait_for_host_sshd() {
  local dir
  dir=$(host_dir "$1")
  for _ in $(seq 100); do
    [[ -n $(pid_of "$dir/sshd.pid") ]] && return 0
    sleep 0.1
  done
  die "sshd of $1 did not start; see $dir/sshd.log"
}

start_host_network() {
  local h=$1 err
  err=$(host_dir "$h")/net-start.err
  define_network host_virsh "$h"
  # As in up_single: a restarted libvirtd may call its network inactive
  # before it has taken it back.
  if ! host_virsh "$h" net-info default 2>/dev/null | grep -q '^Active: *yes' &&
    ! host_virsh "$h" net-start default >/dev/null 2>"$err" &&
    ! grep -q 'network is already active' "$err"; then
    die "cannot start network default of $h: $(cat "$err")"
  fi
}

# What `exec` exports in two-host mode, as NAME=VALUE lines.
hosts_env() {
  local h uris=() addresses=()
  for h in "${hosts[@]}"; do
    uris+=("$h=$(host_uri "$h")")
    addresses+=("$h=$(host_address "$h")")
  done
  echo "ANWEDDOL_SANDBOX_HOSTS=${uris[*]}"
  echo "ANWEDDOL_SANDBOX_JUMP_ADDRESSES=${addresses[*]}"
  echo "ANWEDDOL_SANDBOX_JUMP_USER=root"
  echo "ANWEDDOL_SANDBOX_JUMP_KEY=$jump_key"
  echo "ANWEDDOL_SANDBOX_KNOWN_HOSTS=$known_hosts"
}

up_hosts() {
  require_root
  ! single_present || die "the single sandbox is up: run 'scripts/sandbox.sh down' first"
  refuse_foreign_libvirtd
  fix_kvm_permissions
  local h
  for h in "${hosts[@]}"; do
    mkdir -p "$(host_dir "$h")"
  done
  make_topology
  make_ns_dir
  make_ssh_keys
  for h in "${hosts[@]}"; do
    make_host_mount_ns "$h"
    write_host_configs "$h"
    start_host_daemons "$h"
  done
  for h in "${hosts[@]}"; do
    wait_for_host_libvirtd "$h"
    start_host_network "$h"
    wait_for_host_sshd "$h"
  done
  hosts_env | sed 's/=/="/; s/$/"/' | replace_file "$state/hosts.env"
  for h in "${hosts[@]}"; do
    say "up: $h: libvirtd pid $(pid_of "$(host_dir "$h")/libvirtd.pid") on $(host_uri "$h")," \
      "sshd on $(host_address "$h"):22"
  done
  say "exec runs in netns '$ctl_netns' with $state/hosts.env"
}

# The processes in the mount namespace bound to file $1.
mount_ns_pids() {
  find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "mnt:\\[$(stat -L -c %i "$1")\\]" 2>/dev/null |
    cut -d/ -f3
}

down_host() {
  local h=$1 dir ns=$ns_dir/$1 hns pid domain
  dir=$(host_dir "$h")
  hns=$(host_netns "$h")
  if [[ -n $(pid_of "$dir/libvirtd.pid") ]] && is_mounted "$ns" && netns_exists "$hns"; then
    for domain in $(host_virsh "$h" list --name 2>/dev/null); do
      say "$h: destroying leftover domain $domain"
      host_virsh "$h" destroy "$domain" >/dev/null 2>&1 || true
    done
    host_virsh "$h" net-destroy default >/dev/null 2>&1 || true
  fi
  stop_daemons "$dir" libvirtd virtlogd sshd
  delete_netns "$hns"
  if is_mounted "$ns"; then
    for pid in $(mount_ns_pids "$ns"); do
      stop_pid "$pid"
    done
    umount "$ns"
  fi
  rm -f "$ns"
  # The host's dnsmasq leases and status go with its private folders (see
  # down_single why they must); its logs stay.
  rm -rf "$dir/root/run" "$dir/root/lib" "$dir/root/cache" "$dir/root/etc"
}

down_hosts() {
  local h pid
  for h in "${hosts[@]}"; do
    down_host "$h"
  done
  if netns_exists "$ctl_netns"; then
    for pid in $(ip netns pids "$ctl_netns"); do
      [[ $pid == "$$" ]] || stop_pid "$pid"
    done
    ip netns delete "$ctl_netns"
  fi
  if is_mounted "$ns_dir"; then
    umount "$ns_dir"
  fi
  rm -f "$state/hosts.env"
}

# Fails with 1 if nothing of the two-host mode is left, 2 if it is broken.
status_hosts() {
  local h pid
  hosts_present || return 1
  if ! netns_exists "$ctl_netns"; then
    say "two-host sandbox broken (no netns '$ctl_netns'): run 'scripts/sandbox.sh down'"
    return 2
  fi
  say "up: two hosts, exec runs in netns '$ctl_netns'"
  for h in "${hosts[@]}"; do
    pid=$(pid_of "$(host_dir "$h")/libvirtd.pid")
    if [[ -n $pid ]]; then
      say "  $h: libvirtd pid $pid on $(host_uri "$h")"
    else
      say "  $h: libvirtd not running: 'scripts/sandbox.sh up --hosts 2' restarts it"
    fi
  done
}

# ---------------------------------------------------------------------------

usage() {
  die "usage: sandbox.sh up [--hosts 2] | down | status | kill-libvirtd [--host N] |" \
    "exec CMD [ARGS...]"
}

# Sets option_value to the value of option $1 in "$2 $3" (an option and its
# value), or to nothing if there is none.
parse_option() {
  option_value=
  (($# == 1)) && return 0
  [[ $2 == "$1" && $# == 3 ]] || usage
  option_value=$3
}

verb=${1:-}
(($# > 0)) && shift
case $verb in
  up)
    parse_option --hosts "$@"
    case $option_value in
      "") up_single ;;
      2) up_hosts ;;
      *) die "only '--hosts 2' is supported" ;;
    esac
    ;;
  kill-libvirtd)
    parse_option --host "$@"
    if [[ -z $option_value ]]; then
      kill_libvirtd libvirtd "$state/libvirtd.pid"
    elif [[ " ${hosts[*]} " == *" h$option_value "* ]]; then
      kill_libvirtd "libvirtd of h$option_value" "$(host_dir "h$option_value")/libvirtd.pid"
    else
      die "no host '$option_value': the hosts are 1 and 2"
    fi
    ;;
  down)
    require_root
    down_single
    down_hosts
    say "down"
    ;;
  status)
    # Both modes, should both be up somehow (`down` clears both).
    up=false broken=false
    status_single && up=true
    if status_hosts; then
      up=true
    elif (($? == 2)); then
      broken=true
    fi
    $up && exit 0
    $broken || say "down"
    exit 1
    ;;
  exec)
    (($# > 0)) || die "usage: sandbox.sh exec CMD [ARGS...]"
    if status_single >/dev/null 2>&1; then
      ANWEDDOL_SANDBOX=1 exec ip netns exec "$netns" "$@"
    elif netns_exists "$ctl_netns"; then
      while IFS= read -r line; do
        export "${line?}"
      done < <(hosts_env)
      ANWEDDOL_SANDBOX=1 exec nsenter --net="/run/netns/$ctl_netns" "$@"
    fi
    die "not up: run 'scripts/sandbox.sh up' (or 'up --hosts 2') first"
    ;;
  *) usage ;;
esac
