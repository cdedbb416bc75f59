#!/usr/bin/env python3
"""The hand-out latency benchmark: how long a client of anweddol-server
waits from "give me a container" (REST POST /create) to working credentials
(its answer), for a stream of requests, with a warm pool of K = 0, 1, 2 and
the reference's way: one request after another, each booting its own
container.

The stream (the same for every mode): --requests requests one every
--interval seconds, then a burst of --burst at once. Each container is
destroyed (POST /destroy with its token) as soon as its credentials arrive,
as a short lab session would. Latency counts from when a request was due,
so waiting behind another request counts too (that is what a one-at-a-time
server makes its clients do).

Runs inside the sandbox (scripts/sandbox.sh exec), against the real
anweddol-server over loopback; prints p50/p95 per mode and the ratios,
writes a CSV per request and a summary CSV for plot.gp.

  latency.py --server build/server/anweddol-server --iso ISO
             [--modes reference,0,1,2] [--requests 8] [--interval 10] [--burst 4]
             [--csv FILE] [--summary-csv FILE]
"""
import argparse
import http.client
import json
import socket
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=900, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def metric(port, name):
    """The value of one sample of the server's /metrics, or None."""
    status, data = request(port, "GET", "/metrics", timeout=10)
    if status != 200:
        return None
    for line in data.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def configuration(work, iso, pool):
    """anweddol-server's configuration, as JSON (which YAML reads as is)."""
    return {
        "container": {
            "container_iso_file_path": iso,
            "max_allowed_running_container_domains": 16,
            "container_memory": 512,
            "container_vcpus": 1,
            "nat_interface_name": "virbr0",
            "domain_type": "qemu",  # no KVM in the sandbox
            "wait_max_tryout": 600,
            "endpoint_username": "endpoint",
            "endpoint_password": "endpoint",
            "endpoint_listen_port": 22,
        },
        "server": {
            "public_rsa_key_file_path": os.path.join(work, "public.pem"),
            "private_rsa_key_file_path": os.path.join(work, "private.pem"),
            "bind_address": "127.0.0.1",
            "listen_port": free_port(),
        },
        "web_server": {"listen_port": free_port(), "enable_ssl": False},
        "port_forwarding": {"port_range": [22000, 22999]},
        "access_token": {"enabled": False},
        "anweddol": {
            "hypervisor_uri": "qemu:///system",
            "warm_pool_size": pool,
            "state_database_file_path": os.path.join(work, "state.db"),
            "owner": "anweddol-latency",
            "enable_classic_server": False,
        },
    }


class server:
    def __init__(self, binary, iso, pool):
        self.work = tempfile.mkdtemp(prefix="anweddol-latency-")
        config = configuration(self.work, iso, pool)
        self.port = config["web_server"]["listen_port"]
        path = os.path.join(self.work, "config.yaml")
        with open(path, "w") as f:
            json.dump(config, f)
        self.process = subprocess.Popen([binary, "--config", path], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("anweddol-server exited at start: " + self.process.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("anweddol-server did not listen")

    def wait_warm(self, pool, limit=600):
        """Until the pool holds `pool` ready containers."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready = metric(self.port, 'anweddol_server_containers{state="pool_ready"}')
            if ready is not None and ready >= pool:
                return
            time.sleep(0.5)
        raise RuntimeError("the pool did not fill within %d s" % limit)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def schedule(requests, interval, burst):
    """When each request is due, in seconds from the start."""
    due = [i * interval for i in range(requests)]
    return due + [requests * interval] * burst


def run_mode(mode, args):
    pool = 0 if mode == "reference" else int(mode)
    s = server(args.server, args.iso, pool)
    results = []
    lock = threading.Lock()
    try:
        if pool:
            s.wait_warm(pool)
        due = schedule(args.requests, args.interval, args.burst)
        start = time.monotonic()

        def one(index, at):
            status, data = request(s.port, "POST", "/create", body="{}")
            done = time.monotonic() - start
            answer = json.loads(data) if status == 200 else {}
            created = answer.get("data") or {}
            ok = answer.get("success") is True and "container_uuid" in created
            if ok:
                request(s.port, "POST", "/destroy", body=json.dumps({
                    "container_uuid": created["container_uuid"],
                    "client_token": created["client_token"]}))
            with lock:
                results.append((index, at, done - at, 200 if ok else 0))

        if mode == "reference":
            # One at a time, in order: a request that is due waits for the
            # one before it, as with a server that boots per request and
            # serves one request at a time.
            for index, at in enumerate(due):
                delay = at - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
                one(index, at)
        else:
            threads = []
            for index, at in enumerate(due):
                delay = at - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
                thread = threading.Thread(target=one, args=(index, at))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
    finally:
        s.stop()
    return sorted(results)


def percentile(values, p):
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--iso", required=True)
    parser.add_argument("--modes", default="reference,0,1,2")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--csv", default="latency.csv")
    parser.add_argument("--summary-csv", default="latency-summary.csv")
    args = parser.parse_args()

    print("%d requests, one every %g s, then a burst of %d; 512 MiB, 1 vCPU, qemu"
          % (args.requests, args.interval, args.burst))
    summary = {}
    with open(args.csv, "w") as out:
        out.write("mode,request,due_s,latency_s,status\n")
        for mode in args.modes.split(","):
            results = run_mode(mode, args)
            for index, at, latency, status in results:
                out.write("%s,%d,%.1f,%.3f,%d\n" % (mode, index, at, latency, status))
            latencies = [latency for _, _, latency, status in results if status == 200]
            failed = sum(1 for r in results if r[3] != 200)
            name = "reference (boot per request, one at a time)" if mode == "reference" \
                else "pool K=%s" % mode
            if not latencies:
                print("%-45s all %d requests failed" % (name, failed))
                continue
            p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
            summary[mode] = (p50, p95)
            print("%-45s p50 %6.2f s  p95 %6.2f s  max %6.2f s%s"
                  % (name, p50, p95, max(latencies),
                     "  (%d failed)" % failed if failed else ""), flush=True)
    if "reference" in summary:
        base = summary["reference"][0]
        for mode, (p50, _) in summary.items():
            if mode != "reference":
                print("pool K=%s: p50 %.1f times below the reference's" % (mode, base / p50))
    with open(args.summary_csv, "w") as out:
        out.write("mode,p50_s,p95_s\n")
        for mode, (p50, p95) in summary.items():
            label = "reference" if mode == "reference" else "K=%s" % mode
            out.write("%s,%.3f,%.3f\n" % (label, p50, p95))


if __name__ == "__main__":
    sys.exit(main())
