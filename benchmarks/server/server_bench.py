#!/usr/bin/python3
"""anweddol-server against the reference Anweddol server (anwdlserver):
the same client stream, over REST, to each in turn, in the same sandbox,
with the same ISO, memory and vCPUs.

The stream, for each server:
  1. --sequential CREATEs, each followed by its DESTROY. Ours keeps a warm
     pool of --pool containers, and each CREATE comes once the pool is full
     again (a request every minute or so, as a lab hands containers out);
     the reference boots one per CREATE, as it always does.
  2. a burst of --burst CREATEs at once (beyond ours's pool when --burst is
     larger), then their DESTROYs one after another.

Measured: each CREATE's and DESTROY's time from request to answer; and the
CPU time of the server's process and its children (the reference's socat
forwarders), from /proc, over each phase, divided by its CREATEs. For ours,
each phase ends once the pool is full again, so that its CPU includes the
refills the CREATEs caused. QEMU's CPU is not counted for either (the
guests are libvirtd's children, and boot the same ISO).

Runs inside the sandbox (scripts/sandbox.sh exec), as root:

  server_bench.py --ours build/server/anweddol-server --reference-dir DIR
                  --iso ISO [--servers reference,ours] [--sequential 5]
                  [--burst 4] [--pool 2] [--memory 512] [--vcpus 1]
                  [--csv FILE] [--summary-csv FILE] [--log-dir DIR]

DIR is a checkout of Darnethal0z/Anweddol-server (its anwdlserver package);
it is imported, never copied. Prints the table; exits 1 if any request
failed or a domain was left behind.
"""
import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests
import yaml

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Starts the reference's web server in the foreground, as `anwdlserver start
# -d --web --skip-check --enable-stdout-log` does, but with a configuration
# file of ours (its CLI only reads /etc/anweddol/config.yaml).
REFERENCE_LAUNCHER = """
import sys
sys.path.insert(0, sys.argv[1])
from anwdlserver.config import loadConfigurationFileContent
from anwdlserver.process import launchServerProcess, SERVER_TYPE_WEB
valid, config = loadConfigurationFileContent(sys.argv[2])
if not valid:
    sys.exit("reference configuration refused: %r" % (config,))
launchServerProcess(SERVER_TYPE_WEB, config, enable_stdout_log=True)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def process_cpu(pid):
    """utime + stime + cutime + cstime of pid, in seconds, or 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After ") ": state is fields[0], so utime (field 14) is fields[11].
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS


def process_tree():
    """{ppid: [pid]} of every process."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(root):
    children, found, pending = process_tree(), [], [root]
    while pending:
        pid = pending.pop()
        found += children.get(pid, [])
        pending += children.get(pid, [])
    return found


def tree_cpu(root):
    """CPU seconds of root and every live descendant, with their reaped
    children (cutime, cstime)."""
    return sum(process_cpu(pid) for pid in [root] + descendants(root))


def domains():
    """{name: state} of every domain libvirt knows."""
    out = subprocess.run(VIRSH + ["list", "--all", "--name"], check=True,
                         capture_output=True, text=True).stdout.split()
    result = {}
    for name in out:
        state = subprocess.run(VIRSH + ["domstate", name], capture_output=True,
                               text=True).stdout.strip()
        result[name] = state
    return result


def base_configuration(reference_dir, iso, args, work, port_range):
    """The reference's shipped config.yaml with this run's values."""
    with open(os.path.join(reference_dir, "resources", "config.yaml")) as f:
        config = yaml.safe_load(f)
    c = config["container"]
    c["container_iso_file_path"] = iso
    c["max_allowed_running_container_domains"] = max(args.burst, 1) + 2
    c["container_memory"] = args.memory
    c["container_vcpus"] = args.vcpus
    c["nat_interface_name"] = "virbr0"
    c["domain_type"] = "qemu"  # no KVM in the sandbox
    c["wait_max_tryout"] = 600  # TCG boots are slow; the reference counts ~seconds
    for section in ("server", "web_server"):
        s = config[section]
        s["log_file_path"] = os.path.join(work, section + ".log")
        s["pid_file_path"] = os.path.join(work, section + ".pid")
        s["user"] = "root"
    config["server"]["public_rsa_key_file_path"] = os.path.join(work, "rsa", "public.pem")
    config["server"]["private_rsa_key_file_path"] = os.path.join(work, "rsa", "private.pem")
    config["server"]["listen_port"] = free_port()
    config["web_server"]["listen_port"] = free_port()
    config["port_forwarding"]["port_range"] = list(port_range)
    # The reference's log rotation thread re-reads the log file in a loop
    # without sleeping while it is short: it would spin a core throughout.
    config["log_rotation"]["enabled"] = False
    config["log_rotation"]["log_archive_folder_path"] = os.path.join(work, "archive")
    config["access_token"]["access_token_database_file_path"] = os.path.join(work, "tokens.db")
    return config


class server:
    """One server under test, started in the foreground."""

    def __init__(self, kind, args):
        self.kind = kind
        self.work = tempfile.mkdtemp(prefix="anweddol-bench-%s-" % kind)
        os.makedirs(os.path.join(self.work, "rsa"))
        port_range = (20000, 20999) if kind == "reference" else (21000, 21999)
        config = base_configuration(args.reference_dir, args.iso, args, self.work, port_range)
        if kind == "ours":
            config["anweddol"] = {
                "warm_pool_size": args.pool,
                "state_database_file_path": os.path.join(self.work, "state.db"),
                "owner": "anweddol-bench",
                # the reference serves REST only with --web
                "enable_classic_server": False,
            }
        self.port = config["web_server"]["listen_port"]
        path = os.path.join(self.work, "config.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        if kind == "ours":
            command = [args.ours, "--config", path]
        else:
            command = ["/usr/bin/python3", "-c", REFERENCE_LAUNCHER, args.reference_dir, path]
        self.log = open(os.path.join(self.work, "stdout.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("%s exited with %d at start: see %s" %
                                   (kind, self.process.returncode, self.log.name))
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("%s did not answer on %s" % (kind, self.url))

    def cpu(self):
        return tree_cpu(self.process.pid)

    def pool_ready(self):
        response = requests.get(self.url + "/metrics", timeout=10)
        for line in response.text.splitlines():
            if line.startswith('anweddol_server_containers{state="pool_ready"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def settle(self, pool, limit=600):
        """Until ours's pool is full again (nothing to wait for with the reference)."""
        if self.kind != "ours" or pool == 0:
            return
        deadline = time.monotonic() + limit
        while self.pool_ready() < pool:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm pool did not fill within %d s" % limit)
            time.sleep(0.5)

    def post(self, verb, body):
        started = time.monotonic()
        response = requests.post(self.url + "/" + verb, json=body, timeout=1800)
        took = time.monotonic() - started
        answer = response.json()
        return took, answer

    def stop(self):
        """SIGTERM; SIGKILL to it and its children (socat) after 60 s. The
        reference, stopped while a CREATE runs in its thread pool, may never
        exit."""
        children = descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("  %s did not stop within 60 s of SIGTERM: killed" % self.kind, flush=True)
            self.process.kill()
            self.process.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def create(s, results, phase, index):
    took, answer = s.post("create", {})
    row = {"server": s.kind, "phase": phase, "index": index, "create_s": took,
           "destroy_s": "", "ok": answer.get("success") is True,
           "message": answer.get("message", "")}
    data = answer.get("data") or {}
    results.append((row, data.get("container_uuid"), data.get("client_token")))


def destroy(s, entry):
    row, uuid, token = entry
    if not uuid:
        return
    took, answer = s.post("destroy", {"container_uuid": uuid, "client_token": token})
    row["destroy_s"] = took
    if answer.get("success") is not True:
        row["ok"] = False
        row["message"] += "; DESTROY: " + answer.get("message", "")


def run_server(kind, args):
    s = server(kind, args)
    rows, cpu = [], {}
    try:
        s.settle(args.pool)
        # Sequential: one CREATE then its DESTROY, again and again.
        before = s.cpu()
        for index in range(args.sequential):
            s.settle(args.pool)
            entries = []
            create(s, entries, "sequential", index)
            # A client keeps its container for a while: the pool has
            # refilled by its DESTROY, which then runs on an idle host.
            s.settle(args.pool)
            destroy(s, entries[0])
            rows.append(entries[0][0])
            print("  %s sequential %d: CREATE %.2f s, DESTROY %s s, %s" % (
                kind, index, entries[0][0]["create_s"], entries[0][0]["destroy_s"],
                entries[0][0]["message"]), flush=True)
        s.settle(args.pool)
        cpu["sequential"] = (s.cpu() - before) / max(args.sequential, 1)
        # Burst: all at once, then their DESTROYs.
        before = s.cpu()
        entries = []
        threads = [threading.Thread(target=create, args=(s, entries, "burst", i))
                   for i in range(args.burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        s.settle(args.pool)
        for entry in entries:
            destroy(s, entry)
            rows.append(entry[0])
            print("  %s burst: CREATE %.2f s, DESTROY %s s, %s" % (
                kind, entry[0]["create_s"], entry[0]["destroy_s"], entry[0]["message"]),
                flush=True)
        s.settle(args.pool)
        cpu["burst"] = (s.cpu() - before) / max(args.burst, 1)
    finally:
        s.stop()
    return rows, cpu, s.work


def clean_reference_definitions(before):
    """The reference defines a persistent domain per CREATE and never
    undefines it: remove those this run left (and stop any still running)."""
    left = []
    for name, state in domains().items():
        if name in before:
            continue
        if state == "running":
            subprocess.run(VIRSH + ["destroy", name], capture_output=True)
        subprocess.run(VIRSH + ["undefine", name], capture_output=True)
        left.append((name, state))
    return left


def summarize(rows, cpu):
    summary = {}
    for kind in cpu:
        for phase in ("sequential", "burst"):
            mine = [r for r in rows if r["server"] == kind and r["phase"] == phase and r["ok"]]
            creates = [r["create_s"] for r in mine]
            destroys = [r["destroy_s"] for r in mine if r["destroy_s"] != ""]
            summary[(kind, phase)] = {
                "n": len(mine),
                "failed": len([r for r in rows if r["server"] == kind and r["phase"] == phase
                               and not r["ok"]]),
                "create_p50": percentile(creates, 0.5),
                "create_p95": percentile(creates, 0.95),
                "destroy_p50": percentile(destroys, 0.5),
                "cpu_per_create": cpu[kind][phase],
            }
    return summary


def print_table(summary, args, machine):
    print()
    print("anweddol-server against the reference anwdlserver (REST), %s" % machine)
    print("ISO %s; %d MB, %d vCPU per container; ours with warm_pool_size %d" % (
        os.path.basename(args.iso), args.memory, args.vcpus, args.pool))
    print("%-11s %-10s %3s %6s %10s %10s %11s %12s" % (
        "phase", "server", "n", "failed", "CREATE p50", "CREATE p95", "DESTROY p50",
        "CPU/CREATE"))
    for (kind, phase), s in sorted(summary.items(), key=lambda x: (x[0][1] != "sequential", x[0][0])):
        print("%-11s %-10s %3d %6d %9.2fs %9.2fs %10.2fs %11.2fs" % (
            phase, kind, s["n"], s["failed"], s["create_p50"], s["create_p95"],
            s["destroy_p50"], s["cpu_per_create"]))
    if ("ours", "sequential") not in summary or ("reference", "sequential") not in summary:
        print("\nno ratios: both servers must run")
        return
    print("\nratios, ours / reference (lower is better):")
    for phase in ("sequential", "burst"):
        o, r = summary[("ours", phase)], summary[("reference", phase)]
        print("  %-10s CREATE p50 %.3f  CREATE p95 %.3f  DESTROY p50 %.3f  CPU/CREATE %.3f" % (
            phase, o["create_p50"] / r["create_p50"], o["create_p95"] / r["create_p95"],
            o["destroy_p50"] / r["destroy_p50"], o["cpu_per_create"] / r["cpu_per_create"]))
    p50 = summary[("ours", "sequential")]["create_p50"] / summary[("reference", "sequential")]["create_p50"]
    p95 = summary[("ours", "burst")]["create_p95"] / summary[("reference", "burst")]["create_p95"]
    print("targets: sequential CREATE p50 <= 0.1 of the reference's: %.3f, %s" % (
        p50, "met" if p50 <= 0.1 else "NOT met"))
    print("         burst CREATE p95 <= 0.5 of the reference's:      %.3f, %s" % (
        p95, "met" if p95 <= 0.5 else "NOT met"))


def main():
    # A SIGTERM (timeout, Ctrl-C from sandbox.sh) unwinds through the
    # finally blocks, which stop the server under test.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", required=True, help="the anweddol-server binary")
    parser.add_argument("--reference-dir", required=True,
                        help="a checkout of Darnethal0z/Anweddol-server")
    parser.add_argument("--iso", required=True,
                        help="an ISO whose endpoint keeps the public password endpoint "
                             "(build-iso.sh with ANWEDDOL_ISO_PUBLIC_ENDPOINT=1)")
    parser.add_argument("--servers", default="reference,ours")
    parser.add_argument("--sequential", type=int, default=5)
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--memory", type=int, default=512)
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--machine", default="")
    parser.add_argument("--csv")
    parser.add_argument("--summary-csv")
    parser.add_argument("--log-dir", help="keep each server's log here, as KIND.log (ours logs "
                        "each CREATE's phases)")
    args = parser.parse_args()
    args.iso = os.path.abspath(args.iso)
    args.reference_dir = os.path.abspath(args.reference_dir)

    before = domains()
    if before:
        print("note: domains already defined before the run: %s" % ", ".join(before))
    rows, cpu, leftovers = [], {}, []
    for kind in args.servers.split(","):
        print("%s:" % kind, flush=True)
        known = domains()
        try:
            kind_rows, kind_cpu, work = run_server(kind, args)
        finally:
            left = clean_reference_definitions(known)
        rows += kind_rows
        cpu[kind] = kind_cpu
        if kind == "ours":
            leftovers += left  # ours leaves nothing: anything here is a bug
        elif any(state == "running" for _, state in left):
            leftovers += [x for x in left if x[1] == "running"]
        if args.log_dir:
            os.makedirs(args.log_dir, exist_ok=True)
            shutil.copy(os.path.join(work, "stdout.log"), os.path.join(args.log_dir, kind + ".log"))
        shutil.rmtree(work, ignore_errors=True)

    summary = summarize(rows, cpu)
    print_table(summary, args, args.machine)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["server", "phase", "index", "create_s",
                                                   "destroy_s", "ok", "message"])
            writer.writeheader()
            writer.writerows(rows)
    if args.summary_csv:
        with open(args.summary_csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "create_p50", "create_p95", "destroy_p50", "cpu_per_create"])
            for phase in ("sequential", "burst"):
                for kind in ("reference", "ours"):
                    if (kind, phase) in summary:
                        s = summary[(kind, phase)]
                        writer.writerow(["%s %s" % (kind, phase), "%.3f" % s["create_p50"],
                                         "%.3f" % s["create_p95"], "%.3f" % s["destroy_p50"],
                                         "%.3f" % s["cpu_per_create"]])
    after = domains()
    if after != before:
        print("domains left behind: %s" % sorted(set(after) - set(before)))
    failed = any(not r["ok"] for r in rows)
    if leftovers:
        print("left running or defined after a server stopped: %s" % leftovers)
    sys.exit(1 if failed or leftovers or after != before else 0)


if __name__ == "__main__":
    main()
