#!/usr/bin/env bash
# Builds the live ISO that anweddol's tests boot as a container:
#   build-iso.sh OUTPUT.iso
# Everything comes from Debian packages (the kernel is taken with
# `apt-get download` + `dpkg-deb -x`, never installed on the host). The whole
# system lives in an initramfs: isolinux loads the kernel and the initramfs
# from the CD, and nothing reads the CD afterwards.
# The ISO is rebuilt only when its inputs change: this script, rootfs/, the
# kernel package and the host binaries copied into the image.
#
# ANWEDDOL_ISO_PUBLIC_ENDPOINT=1 build-iso.sh OUTPUT.iso builds a variant for
# benchmarks against the reference server (benchmarks/server) ONLY, never for
# tenants: the `endpoint` account keeps the public password `endpoint` (the
# only one the reference knows, where the default image makes a secret one
# each boot and announces it on the console), the console carries no
# ANWEDDOL ENDPOINT block (the host keys are still printed), and busybox's
# `passwd` works as setuid root, so that a host can change the public password
# right after logging in (anweddol does; busybox drops root for every other
# applet). Give it an OUTPUT of its own, such as
# build/guest/anweddol-bench-public-endpoint.iso.
set -euo pipefail

output=${1:?usage: build-iso.sh OUTPUT.iso}
here=$(cd "$(dirname "$0")" && pwd)
output=$(realpath -m "$output")
work="$output.d"

die() { echo "build-iso.sh: $*" >&2; exit 1; }
public_endpoint=${ANWEDDOL_ISO_PUBLIC_ENDPOINT:-0}
[[ $public_endpoint == [01] ]] ||
  die "ANWEDDOL_ISO_PUBLIC_ENDPOINT must be 0 or 1, not '$public_endpoint'"
for tool in xorriso cpio gzip gcc /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/ssh /bin/busybox \
            /usr/lib/ISOLINUX/isolinux.bin; do
  command -v "$tool" >/dev/null || [[ -e $tool ]] ||
    die "missing $tool: run scripts/setup.sh first"
done

# The cloud kernel is small and has every virtio driver we need as modules.
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 |
  awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[[ -n $kernel_pkg ]] || die "apt knows no linux-image-cloud-amd64: run apt-get update"
kernel_version=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/ { print $2 }')

# Modules in load order: each one's dependencies come before it.
modules=(
  drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
  drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
  drivers/virtio/virtio_pci.ko
  net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko
  drivers/virtio/virtio_balloon.ko
  drivers/input/evdev.ko drivers/acpi/button.ko
)

stamp=$(
  {
    echo "$kernel_pkg $kernel_version"
    [[ $public_endpoint == 0 ]] || echo "public endpoint"
    cat "$0"
    find "$here/rootfs" -type f -print0 | sort -z | xargs -0 cat
    sha256sum /bin/busybox /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/ssh
  } | sha256sum | cut -d' ' -f1
)
if [[ -f $output && -f $output.stamp && $(cat "$output.stamp") == "$stamp" ]]; then
  echo "build-iso.sh: $output is up to date"
  exit 0
fi

echo "build-iso.sh: building $output ($kernel_pkg $kernel_version)"
rm -rf "$work"
mkdir -p "$work/deb" "$work/root" "$work/cd/isolinux"

(cd "$work/deb" && apt-get download -q "$kernel_pkg=$kernel_version" 2>&1 |
  grep -v 'Download is performed unsandboxed' || true)
dpkg-deb -x "$work"/deb/*.deb "$work/kernel"
kernel_release=$(ls "$work/kernel/lib/modules")
cp "$work/kernel/boot/vmlinuz-$kernel_release" "$work/cd/isolinux/vmlinuz"

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/ssh,etc/acpi/PWRF,lib/modules} \
         "$root"/{proc,sys,dev,run,tmp,root,home/endpoint,var/log}
chmod 1777 "$root/tmp"

# busybox provides the shell, init, udhcpc, mkpasswd and the rest.
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done

# OpenSSH's server, with the shared libraries it links against. (dropbear
# would be smaller, but refuses passwords over 100 characters, and the
# reference's client passwords have 120.)
copy_with_libraries() {
  local binary=$1
  install -D -m 755 "$binary" "$root$binary"
  ldd "$binary" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' |
    while read -r lib; do
      [[ -e $root$lib ]] || install -D -m 755 "$(realpath "$lib")" "$root$lib"
    done
}
copy_with_libraries /usr/sbin/sshd
copy_with_libraries /usr/bin/ssh-keygen
# OpenSSH's client too: the isolation tests log in from one guest to
# another, as a hostile tenant would try.
copy_with_libraries /usr/bin/ssh
install -m 644 "$here/rootfs/sshd_config" "$root/etc/ssh/sshd_config"

for module in "${modules[@]}"; do
  cp "$work/kernel/lib/modules/$kernel_release/kernel/$module" "$root/lib/modules/"
done
printf '%s\n' "${modules[@]##*/}" >"$root/etc/modules"

# The guest's own files; see rootfs/README.md.
install -m 755 "$here/rootfs/rcS" "$root/etc/rcS"
install -m 644 "$here/rootfs/inittab" "$root/etc/inittab"
install -m 755 "$here/rootfs/udhcpc.script" "$root/etc/udhcpc.script"
install -m 755 "$here/rootfs/power-button" "$root/etc/acpi/PWRF/00000080"
install -m 755 "$here/rootfs/anweddol_container_setup.sh" \
  "$root/bin/anweddol_container_setup.sh"
install -m 755 "$here/rootfs/anweddol_net_probe.sh" "$root/bin/anweddol_net_probe.sh"
gcc -static -Os -Wall -Wextra -Werror -o "$root/usr/bin/sudo" "$here/rootfs/sudo.c"
chmod 4755 "$root/usr/bin/sudo"
gcc -static -Os -Wall -Wextra -Werror -o "$root/usr/bin/anweddol_reseed" "$here/rootfs/reseed.c"
if [[ $public_endpoint == 1 ]]; then
  # rcS keeps endpoint's public password when this file exists.
  : >"$root/etc/anweddol-public-endpoint"
  # passwd must write /etc/shadow for endpoint. busybox's shell runs its
  # applets from /bin/busybox whatever PATH holds, so a setuid copy under
  # another name would never run: busybox itself is setuid here. It drops
  # root at start for the applets that do not need it (the shells, and most),
  # but keeps it for those that may use it (such as mount): one more reason
  # this image is for benchmarks only.
  chmod 4755 "$root/bin/busybox"
fi

endpoint_hash=$(printf 'endpoint\n' | /bin/busybox mkpasswd -m sha512 -P 0)
cat >"$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534:sshd privilege separation:/run/sshd:/bin/false
endpoint:x:1000:1000:anweddol endpoint:/home/endpoint:/bin/sh
PASSWD
cat >"$root/etc/shadow" <<SHADOW
root:*:19000:0:99999:7:::
sshd:*:19000:0:99999:7:::
endpoint:$endpoint_hash:19000:0:99999:7:::
SHADOW
chmod 600 "$root/etc/shadow"
printf 'root:x:0:\nnogroup:x:65534:\nendpoint:x:1000:\n' >"$root/etc/group"
printf '/bin/sh\n/bin/ash\n' >"$root/etc/shells"
echo anweddol-container >"$root/etc/hostname"
ln -s /bin/busybox "$root/init"

# Every file belongs to root; rcS gives endpoint its home at boot.
(cd "$root" && find . -print0 | cpio --null -o -H newc -R +0:+0 --quiet |
  gzip -9 >"$work/cd/isolinux/initrd.gz")

# No prompt and no wait: isolinux boots the one entry at once. The kernel's
# options skip what costs CPU under software emulation and serves nothing
# here (benchmarks/boot_cost measured them together: about 0.4 s of CPU a
# boot, none of them alone above the noise): no VGA console (the serial one
# is the only one read), no keyboard or mouse probing (the guest has no
# input but ACPI's power button), no timer or TSC checks, no audit, no
# Spectre/Meltdown mitigations (a throwaway guest running only our own
# code), no crypto self-tests.
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 \
   "$work/cd/isolinux/"
cat >"$work/cd/isolinux/isolinux.cfg" <<'CFG'
DEFAULT live
PROMPT 0
TIMEOUT 0
LABEL live
  KERNEL vmlinuz
  APPEND initrd=initrd.gz console=ttyS0,115200 quiet panic=5 tsc=reliable no_timer_check mitigations=off i8042.noaux i8042.nokbd i8042.nopnp nomodeset audit=0 cryptomgr.notests
CFG

xorriso -as mkisofs -quiet -o "$output.tmp" -V ANWEDDOL_TEST \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
  -c isolinux/boot.cat -b isolinux/isolinux.bin \
  -no-emul-boot -boot-load-size 4 -boot-info-table "$work/cd"
mv "$output.tmp" "$output"
echo "$stamp" >"$output.stamp"
rm -rf "$work"
echo "build-iso.sh: wrote $output ($(du -h "$output" | cut -f1))"
