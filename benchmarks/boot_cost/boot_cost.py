#!/usr/bin/env python3
"""The CPU a container's boot costs, per device and option of its domain.

Boots the test ISO once per variant and run, one guest at a time, from
`virsh create` until dnsmasq's status file holds the guest's lease, and
reports the CPU QEMU spent until then (utime + stime of the QEMU process, all
its threads, from /proc) and the wall time, median and range over the runs.
The variants are edits of the XML the library writes (print_domain_xml), so
"library" is always what anweddol defines now. Runs inside the sandbox, as
root, with the sandbox lock held:

  flock /tmp/anweddol-sandbox.lock bash -c 'scripts/sandbox.sh up &&
    scripts/sandbox.sh exec benchmarks/boot_cost/boot_cost.py --runs 2 \\
      --iso build/guest/anweddol-test.iso; scripts/sandbox.sh down'

  --variants a,b,...   which variants (default: all; --list shows them)
  --iso [LABEL=]PATH   an ISO to boot (repeatable: then every variant boots
                       each ISO, as "VARIANT@LABEL")
  --cmdline TEXT       direct-kernel variants boot the kernel and initramfs
                       taken from the first ISO with this command line instead of
                       the boot loader (repeatable, each a variant
                       "cmdline-N"), to measure kernel options without
                       rebuilding the ISO
  --json FILE          every boot's numbers, one JSON object a line

Besides CPU to lease it reports "busy until": the last moment before the
lease at which the guest's CPU use, over 0.5 s, was at least 50 % of a core;
after it, a boot mostly waits (for DHCP, for timers).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET

URI = "qemu:///system"
STATUS = "/var/lib/libvirt/dnsmasq/virbr0.status"
TICK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ET.register_namespace("anweddol", "https://anweddol.org/xmlns/container/1")


def devices(root):
    return root.find("devices")


def add_usb_none(root):
    ET.SubElement(devices(root), "controller", type="usb", model="none")


def balloon_none(root):
    devices(root).find("memballoon").set("model", "none")


def no_balloon_element(root):
    d = devices(root)
    for m in d.findall("memballoon"):
        d.remove(m)


def rom_bar_off(root):
    ET.SubElement(devices(root).find("interface"), "rom", bar="off")


def rom_disabled(root):
    ET.SubElement(devices(root).find("interface"), "rom", enabled="no")


def ps2_off(root):
    features = root.find("features")
    if features is None:
        features = ET.SubElement(root, "features")
    ET.SubElement(features, "ps2", state="off")


def video_none(root):
    video = ET.SubElement(devices(root), "video")
    ET.SubElement(video, "model", type="none")


def no_serial_bios(root):
    os_ = root.find("os")
    for b in os_.findall("bios"):
        os_.remove(b)


def cdrom_first(root):
    os_ = root.find("os")
    for b in os_.findall("boot"):
        os_.remove(b)
    boot = ET.Element("boot", dev="cdrom")
    os_.insert(1, boot)


def no_bootmenu_timeout(root):
    ET.SubElement(root.find("os"), "bootmenu", enable="no")


def q35(root):
    root.find("os").find("type").set("machine", "q35")
    # q35 has no IDE: the cdrom goes on SATA.
    target = devices(root).find("disk").find("target")
    target.set("dev", "sda")
    target.set("bus", "sata")


def sata_cdrom(root):
    ET.SubElement(devices(root), "controller", type="sata", index="0")
    target = devices(root).find("disk").find("target")
    target.set("dev", "sda")
    target.set("bus", "sata")


def scsi_cdrom(root):
    ET.SubElement(devices(root), "controller", type="scsi", index="0", model="virtio-scsi")
    target = devices(root).find("disk").find("target")
    target.set("dev", "sda")
    target.set("bus", "scsi")


def before_cuts(root):
    """The library's XML before the cuts: the cdrom on IDE, libvirt's USB
    controller, iPXE's option ROM on the NIC."""
    d = devices(root)
    for c in d.findall("controller"):
        if c.get("type") in ("sata", "usb"):
            d.remove(c)
    target = d.find("disk").find("target")
    target.set("dev", "hdc")
    target.set("bus", "ide")
    nic = d.find("interface")
    for rom in nic.findall("rom"):
        nic.remove(rom)


def everything_cut(root):
    for edit in (add_usb_none, balloon_none, rom_disabled, ps2_off, video_none, cdrom_first):
        edit(root)


VARIANTS = {
    "library": [],
    "before-cuts": [before_cuts],
    "usb-none": [add_usb_none],
    "balloon-none": [balloon_none],
    "rom-bar-off": [rom_bar_off],
    "rom-disabled": [rom_disabled],
    "ps2-off": [ps2_off],
    "video-none": [video_none],
    "no-bios-useserial": [no_serial_bios],
    "cdrom-first": [cdrom_first],
    "q35": [q35],
    "sata-cdrom": [sata_cdrom],
    "scsi-cdrom": [scsi_cdrom],
    "all-cuts": [everything_cut],
}


def stat_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def qemu_pid(name, deadline):
    path = f"/run/libvirt/qemu/{name}.pid"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no pid file {path}")


def has_lease(mac):
    try:
        with open(STATUS) as f:
            return f'"{mac}"' in f.read()
    except FileNotFoundError:
        return False


def virsh(*args):
    done = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def busy_until(samples, window=0.5, threshold=0.5):
    """The last sample time whose previous `window` seconds used >= threshold of a core."""
    last = 0.0
    j = 0
    for i, (t, cpu) in enumerate(samples):
        while samples[j][0] < t - window:
            j += 1
        if j < i and t - samples[j][0] > 0:
            if (cpu - samples[j][1]) / (t - samples[j][0]) >= threshold:
                last = t
    return last


def read_new_lines(path, state, at, timeline):
    """Appends (at, line) for every complete line added to `path` since the last call."""
    try:
        with open(path, "rb") as f:
            f.seek(state["offset"])
            data = state["rest"] + f.read()
            state["offset"] = f.tell()
    except FileNotFoundError:
        return
    *lines, state["rest"] = data.split(b"\n")
    for line in lines:
        text = line.decode(errors="replace").strip()
        if text:
            timeline.append((round(at, 2), text))


def boot(xml_text, name, mac, timeout, console=None):
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(xml_text)
        path = f.name
    try:
        began = time.monotonic()
        virsh("create", path)
        pid = qemu_pid(name, began + 30)
        samples = []
        timeline = []
        state = {"offset": 0, "rest": b""}
        try:
            while True:
                now = time.monotonic()
                cpu = stat_cpu(pid)
                samples.append((now - began, cpu))
                if console:
                    read_new_lines(console, state, now - began, timeline)
                if has_lease(mac):
                    result = {"wall": now - began, "cpu": cpu,
                              "busy_until": busy_until(samples)}
                    if console:
                        result["console"] = timeline
                        result["samples"] = samples[::4]
                    return result
                if now - began > timeout:
                    raise RuntimeError(f"{name}: no lease after {timeout} s")
                time.sleep(0.05)
        finally:
            subprocess.run(["virsh", "-q", "-c", URI, "destroy", name],
                           capture_output=True)
    finally:
        os.unlink(path)


def extract_kernel(iso, into):
    for member in ("vmlinuz", "initrd.gz"):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract",
                        f"/isolinux/{member}", os.path.join(into, member)],
                       check=True, capture_output=True)
    return os.path.join(into, "vmlinuz"), os.path.join(into, "initrd.gz")


def direct_kernel(kernel, initrd, cmdline):
    def edit(root):
        os_ = root.find("os")
        for b in os_.findall("boot"):
            os_.remove(b)
        ET.SubElement(os_, "kernel").text = kernel
        ET.SubElement(os_, "initrd").text = initrd
        ET.SubElement(os_, "cmdline").text = cmdline
    return edit


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iso", action="append", required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--variants", default="")
    p.add_argument("--cmdline", action="append", default=[])
    p.add_argument("--memory", type=int, default=512)
    p.add_argument("--type", default="qemu")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--printer", default=os.path.join(REPO, "build/benchmarks/boot_cost/print_domain_xml"))
    p.add_argument("--json")
    p.add_argument("--console", metavar="DIR",
                   help="log each guest's serial console to DIR and keep its lines, "
                        "timed to 50 ms, in --json")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        print("\n".join(VARIANTS))
        return 0

    isos = []
    for item in args.iso:
        label, _, path = item.rpartition("=")
        isos.append((label or os.path.basename(path), os.path.abspath(path)))
    main_iso = isos[0][1]

    plan = []  # (label, iso, edits)
    names = [v for v in args.variants.split(",") if v] or list(VARIANTS)
    for v in names:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v}; --list shows them")
        for label, path in isos:
            plan.append((v if len(isos) == 1 else f"{v}@{label}", path, VARIANTS[v]))
    scratch = tempfile.mkdtemp(prefix="boot_cost.")
    os.chmod(scratch, 0o755)
    if args.cmdline:
        kernel, initrd = extract_kernel(main_iso, scratch)
        for i, cmdline in enumerate(args.cmdline):
            label = f"cmdline-{i}"
            print(f"{label}: direct kernel boot, {cmdline}")
            plan.append((label, main_iso, [direct_kernel(kernel, initrd, cmdline)]))

    print(f"{len(plan)} variants x {args.runs} runs, one guest at a time, "
          f"{args.type}, {args.memory} MiB, 1 vCPU, {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    results = {label: [] for label, _, _ in plan}
    out = open(args.json, "a") if args.json else None
    for run in range(args.runs):
        order = list(plan)
        random.shuffle(order)  # spreads the machine's noise over the variants
        for label, iso, edits in order:
            uuid = str(uuidlib.uuid4())
            mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))
            xml_text = subprocess.run([args.printer, uuid, args.type, str(args.memory), iso,
                                       "virbr0", mac], check=True, capture_output=True,
                                      text=True).stdout
            root = ET.fromstring(xml_text)
            for edit in edits:
                edit(root)
            console = None
            if args.console:
                os.makedirs(args.console, exist_ok=True)
                console = os.path.join(os.path.abspath(args.console), f"{label}-{run}.log")
                if os.path.exists(console):
                    os.unlink(console)
                serial = devices(root).find("serial")
                ET.SubElement(serial, "log", file=console, append="off")
            try:
                r = boot(ET.tostring(root, encoding="unicode"), uuid, mac, args.timeout,
                         console)
            except RuntimeError as e:
                print(f"  run {run + 1} {label:<18} failed: {e}", flush=True)
                continue
            r.update(variant=label, run=run, load=os.getloadavg()[0])
            results[label].append(r)
            print(f"  run {run + 1} {label:<18} cpu {r['cpu']:6.2f} s  wall {r['wall']:6.2f} s  "
                  f"busy until {r['busy_until']:5.1f} s", flush=True)
            if out:
                out.write(json.dumps(r) + "\n")
                out.flush()
    shutil.rmtree(scratch, ignore_errors=True)

    def spread(values):
        return f"{statistics.median(values):6.2f} ({min(values):5.2f}-{max(values):5.2f})"

    base = statistics.median(r["cpu"] for r in results[plan[0][0]] or [{"cpu": 0}])
    print(f"\n{'variant':<18} {'CPU to lease, s':<22} {'wall to lease, s':<22} "
          f"{'busy until, s':<22} CPU vs {plan[0][0]}")
    for label, _, _ in plan:
        rs = results[label]
        if not rs:
            print(f"{label:<18} (every boot failed)")
            continue
        cpu = [r["cpu"] for r in rs]
        print(f"{label:<18} {spread(cpu):<22} {spread([r['wall'] for r in rs]):<22} "
              f"{spread([r['busy_until'] for r in rs]):<22} "
              f"{statistics.median(cpu) - base:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
