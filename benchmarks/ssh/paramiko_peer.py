#!/usr/bin/python3
"""paramiko peer of the SSH fan-out benchmark, as the reference uses paramiko:
one blocking SSHClient per session, here a thread per connection.

  paramiko_peer.py fanout HOST PORT USER SESSIONS CONCURRENCY   (password on stdin)

CONCURRENCY threads, each repeating connect + password auth +
exec_command("true") + close until SESSIONS sessions are done. Prints
{"count": N, "seconds": wall, "cpu": process CPU seconds} for the workload.
"""
import json
import resource
import sys
import threading
import time

import paramiko


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_session(host, port, user, password):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(host, port=port, username=user, password=password,
                   look_for_keys=False, allow_agent=False)
    try:
        _, stdout, _ = client.exec_command("true")
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError("true failed")
    finally:
        client.close()


def main():
    mode, host, port, user, count, concurrency = sys.argv[1:7]
    if mode != "fanout":
        raise SystemExit("paramiko_peer.py: only fanout")
    password = sys.stdin.readline().rstrip("\n")
    port, count, concurrency = int(port), int(count), int(concurrency)
    lock = threading.Lock()
    remaining = count
    errors = []

    def worker():
        nonlocal remaining
        while True:
            with lock:
                if remaining <= 0:
                    return
                remaining -= 1
            try:
                one_session(host, port, user, password)
            except Exception as e:  # reported, and the run fails
                errors.append(repr(e))

    start = time.monotonic()
    cpu = cpu_seconds()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds, cpu = time.monotonic() - start, cpu_seconds() - cpu
    if errors:
        raise SystemExit("paramiko_peer.py: %d sessions failed, first: %s" % (len(errors), errors[0]))
    print(json.dumps({"count": count, "seconds": seconds, "cpu": cpu}))


if __name__ == "__main__":
    main()
