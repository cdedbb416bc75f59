"""The reference's way of learning a container's address: read dnsmasq's
status file, and if the MAC is not there yet, sleep a second and read it
again (ContainerInstance.startDomain with wait_available). For each MAC given
on stdin, prints the CLOCK_MONOTONIC time at which it was found. Run it with
/usr/bin/python3."""
import json
import sys
import time

status_file = sys.argv[1]


def find(mac):
    try:
        with open(status_file) as f:
            leases = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    for lease in leases:
        if lease.get("mac-address") == mac:
            return lease.get("ip-address")
    return None


for line in sys.stdin:
    mac = line.strip()
    while find(mac) is None:
        time.sleep(1)
    print(f"{time.monotonic():.6f}", flush=True)
