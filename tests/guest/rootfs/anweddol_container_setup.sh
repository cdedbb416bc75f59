#!/bin/sh
# anweddol_container_setup.sh USERNAME PASSWORD LISTEN_PORT
# anweddol_container_setup.sh --password-stdin USERNAME LISTEN_PORT
# anweddol_container_setup.sh --rotate-endpoint-password
#
# Hands the container over to its client, as anweddol's administrate_container
# expects: creates USERNAME with PASSWORD, serves SSH for it on LISTEN_PORT,
# disables the `endpoint` user and ends every process of it but the caller's
# own session. Prints nothing on success. Every argument is checked before
# anything changes; on failure it says why on stderr and exits non-zero.
#
# The first form is the reference's. The second reads the password from the
# first line of standard input instead, so that it never appears in a command
# line (which every process of the same user can read, and, without
# hidepid, every user). The third reads the endpoint's next password from
# standard input and sets it: the host changes the per-boot password it read
# on the console as soon as it has logged in once. The console's
# `features` line announces the two extra forms.
set -eu

die() {
  echo "anweddol_container_setup.sh: $*" >&2
  exit 1
}
# Runs a command silently, but shows its output if it fails.
quietly() {
  output=$("$@" 2>&1) || die "'$*' failed: $output"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (sudo $0 ...)"
cd /
# Once handed over, the container is the client's: nobody, not a process of
# endpoint that outlived the hand-over either, may run this again (to
# unlock endpoint, or make an account of their own).
handed_over=/run/anweddol.handed-over
[ ! -e "$handed_over" ] || die "this container was already handed over"

# A password: non-empty, at most 4096 printable characters.
check_password() {
  [ -n "$1" ] || die "empty password"
  [ ${#1} -le 4096 ] || die "password longer than 4096 characters"
  case $1 in
    *[![:print:]]*) die "password contains a control character" ;;
  esac
}

# The first line of standard input, without reading a byte more.
read_password_line() {
  IFS= read -r line || [ -n "${line:-}" ] || die "no password on standard input"
  printf '%s' "$line"
}

# A SHA-512 crypt hash of $1, computed from standard input: mkpasswd's
# command line never holds the password.
hash_of() {
  printf '%s\n' "$1" | mkpasswd -m sha512 -P 0 || die "cannot hash the password"
}

if [ "${1:-}" = --rotate-endpoint-password ]; then
  [ $# -eq 1 ] || die "--rotate-endpoint-password takes no other argument"
  password=$(read_password_line)
  check_password "$password"
  hash=$(hash_of "$password")
  sed -i "s|^endpoint:[^:]*:|endpoint:$hash:|" /etc/shadow
  exit 0
fi

if [ "${1:-}" = --password-stdin ]; then
  [ $# -eq 3 ] || die "expected --password-stdin USERNAME LISTEN_PORT, got $# arguments"
  username=$2
  port=$3
  password=$(read_password_line)
else
  [ $# -eq 3 ] || die "expected 3 arguments USERNAME PASSWORD LISTEN_PORT, got $#"
  username=$1
  password=$2
  port=$3
fi

case $username in
  '' | *[!a-z0-9_-]* | [!a-z_]*)
    die "invalid username '$username': use 1-32 of [a-z0-9_-], starting with a letter or _" ;;
esac
[ ${#username} -le 32 ] || die "username longer than 32 characters"
grep -q "^$username:" /etc/passwd && die "user '$username' already exists"

check_password "$password"

case $port in
  '' | *[!0-9]* | 0*) die "invalid port '$port': expected 1-65535" ;;
esac
[ ${#port} -le 5 ] && [ "$port" -le 65535 ] || die "invalid port '$port': expected 1-65535"
if [ "$port" -ne 22 ] && netstat -ltn | grep -q ":$port "; then
  die "port $port is already in use"
fi

# Create the user; the next uid after the highest one in use.
uid=$(awk -F: '$3 >= 1001 && $3 > max { max = $3 } END { print (max ? max + 1 : 1001) }' /etc/passwd)
hash=$(hash_of "$password")
echo "$username:x:$uid:$uid::/home/$username:/bin/sh" >>/etc/passwd
echo "$username:x:$uid:" >>/etc/group
echo "$username:$hash:19000:0:99999:7:::" >>/etc/shadow
quietly mkdir -p "/home/$username"
quietly chown "$uid:$uid" "/home/$username"
quietly chmod 700 "/home/$username"

# Port 22's server, read before another sshd starts and could write a pid
# file of its own.
endpoint_server=$(cat /run/sshd.22.pid 2>/dev/null || true)

# Serve SSH on the client's port, for the client only (port 22's server
# already runs and serves whoever is not locked). sshd daemonizes before it
# binds: wait until the port listens, so that success means "log in now".
if [ "$port" -ne 22 ]; then
  quietly /usr/sbin/sshd -p "$port" -o "AllowUsers=$username" \
    -o "PidFile=/run/sshd.$port.pid" -E "/var/log/sshd.$port.log"
  tries=0
  until netstat -ltn | grep -q ":$port "; do
    tries=$((tries + 1))
    [ $tries -le 100 ] || die "sshd did not listen on port $port: $(cat "/var/log/sshd.$port.log")"
    usleep 50000
  done
fi

# Disable endpoint: lock its password, then stop port 22's listener unless the
# client uses it. Sessions already open, such as the caller's, keep running.
quietly passwd -l endpoint
: >"$handed_over"
if [ "$port" -ne 22 ] && [ -n "$endpoint_server" ]; then
  quietly kill "$endpoint_server"
fi

# The endpoint account is nobody's now: end each of its processes but this
# script's own ancestors (the caller's session, which ends when the host
# closes it), so that no one who logged in as endpoint before, or while the
# container waited in a pool, keeps a process beside the client's. Their
# files in the shared temporary directories go too. Processes are listed as
# root, whom hidepid does not hide anything from.
# Each process's status is read by one awk for all of them, not one awk per
# process: under software emulation every fork and exec costs milliseconds,
# and this ran in a second and more of each hand-over.
endpoint_uid=$(awk -F: '$1 == "endpoint" { print $3 }' /etc/passwd)
all_status() {
  cat /proc/[0-9]*/status 2>/dev/null || true # a process may end meanwhile
}
ancestors="$(all_status | awk -v self=$$ '/^Pid:/ { pid = $2 } /^PPid:/ { parent[pid] = $2 }
  END { for (p = self; p > 1 && (p in parent); p = parent[p]) printf " %s", p }') "
# Twice: a process may fork while the first pass runs; a forked child is
# seen by the second (SIGKILL leaves it no time to fork again).
for pass in 1 2; do
  for pid in $(all_status | awk -v uid="$endpoint_uid" '/^Pid:/ { pid = $2 }
                 /^Uid:/ && $2 == uid { print pid }'); do
    case $ancestors in *" $pid "*) continue ;; esac
    kill -KILL "$pid" 2>/dev/null || true
  done
done
# Its processes are dead, so none can swap a path for a symlink meanwhile.
# A process that forks and lets its parent exit, again and again, is never
# at a pid the loop above checks: once the caller's session has closed
# (the host closes it as soon as this script ends), a kill of everything the
# endpoint user runs, sent as that user, gets them all at once. Detached,
# so that it outlives this script and its session.
setsid sh -c 'sleep 2; exec su -s /bin/sh endpoint -c "kill -KILL -1"' \
  </dev/null >/dev/null 2>&1 &
for dir in /tmp /var/tmp /dev/shm /run; do
  [ -d "$dir" ] || continue
  find "$dir" -xdev -user endpoint -exec rm -rf {} \; 2>/dev/null || true
done
exit 0
