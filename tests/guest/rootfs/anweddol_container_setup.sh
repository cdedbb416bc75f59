#!/bin/sh
# anweddol_container_setup.sh USERNAME PASSWORD LISTEN_PORT
#
# Hands the container over to its client, as anweddol's administrate_container
# expects: creates USERNAME with PASSWORD, serves SSH for it on LISTEN_PORT,
# and disables the `endpoint` user. Prints nothing on success. Every argument
# is checked before anything changes; on failure it says why on stderr and
# exits non-zero.
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
[ $# -eq 3 ] || die "expected 3 arguments USERNAME PASSWORD LISTEN_PORT, got $#"
username=$1
password=$2
port=$3

case $username in
  '' | *[!a-z0-9_-]* | [!a-z_]*)
    die "invalid username '$username': use 1-32 of [a-z0-9_-], starting with a letter or _" ;;
esac
[ ${#username} -le 32 ] || die "username longer than 32 characters"
grep -q "^$username:" /etc/passwd && die "user '$username' already exists"

[ -n "$password" ] || die "empty password"
[ ${#password} -le 4096 ] || die "password longer than 4096 characters"
case $password in
  *[![:print:]]*) die "password contains a control character" ;;
esac

case $port in
  '' | *[!0-9]* | 0*) die "invalid port '$port': expected 1-65535" ;;
esac
[ ${#port} -le 5 ] && [ "$port" -le 65535 ] || die "invalid port '$port': expected 1-65535"
if [ "$port" -ne 22 ] && netstat -ltn | grep -q ":$port "; then
  die "port $port is already in use"
fi

# Create the user; the next uid after the highest one in use.
uid=$(awk -F: '$3 >= 1001 && $3 > max { max = $3 } END { print (max ? max + 1 : 1001) }' /etc/passwd)
hash=$(printf '%s\n' "$password" | mkpasswd -m sha512 -P 0) || die "cannot hash the password"
echo "$username:x:$uid:$uid::/home/$username:/bin/sh" >>/etc/passwd
echo "$username:x:$uid:" >>/etc/group
echo "$username:$hash:19000:0:99999:7:::" >>/etc/shadow
quietly mkdir -p "/home/$username"
quietly chown "$uid:$uid" "/home/$username"

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
if [ "$port" -ne 22 ] && [ -n "$endpoint_server" ]; then
  quietly kill "$endpoint_server"
fi
exit 0
