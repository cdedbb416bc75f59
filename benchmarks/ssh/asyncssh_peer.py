#!/usr/bin/python3
"""asyncssh peer of the SSH fan-out benchmark (run by ssh_fanout, which reads
the JSON line this prints).

  asyncssh_peer.py fanout   HOST PORT USER SESSIONS CONCURRENCY   (password on stdin)
  asyncssh_peer.py channels HOST PORT USER COMMANDS CONCURRENCY   (password on stdin)

fanout: CONCURRENCY workers on one event loop, each repeating connect +
password auth + run("true") + close until SESSIONS sessions are done.
channels: one connection, COMMANDS runs of "true" with CONCURRENCY at once.
Prints {"count": N, "seconds": wall, "cpu": process CPU seconds} for the
workload alone (interpreter start-up excluded).
"""
import asyncio
import json
import resource
import sys
import time

import asyncssh


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_session(host, port, user, password):
    async with asyncssh.connect(host, port=port, username=user, password=password,
                                known_hosts=None, client_keys=None, agent_path=None,
                                config=None) as connection:
        await connection.run("true", check=True)


async def fanout(host, port, user, password, sessions, concurrency):
    remaining = sessions

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_session(host, port, user, password)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sessions


async def channels(host, port, user, password, commands, concurrency):
    async with asyncssh.connect(host, port=port, username=user, password=password,
                                known_hosts=None, client_keys=None, agent_path=None,
                                config=None) as connection:
        remaining = commands

        async def worker():
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await connection.run("true", check=True)

        start = time.monotonic()
        cpu = cpu_seconds()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return commands, time.monotonic() - start, cpu_seconds() - cpu


def main():
    mode, host, port, user, count, concurrency = sys.argv[1:7]
    password = sys.stdin.readline().rstrip("\n")
    port, count, concurrency = int(port), int(count), int(concurrency)
    if mode == "fanout":
        start = time.monotonic()
        cpu = cpu_seconds()
        done = asyncio.run(fanout(host, port, user, password, count, concurrency))
        seconds, cpu = time.monotonic() - start, cpu_seconds() - cpu
    else:
        done, seconds, cpu = asyncio.run(channels(host, port, user, password, count, concurrency))
    print(json.dumps({"count": done, "seconds": seconds, "cpu": cpu}))


if __name__ == "__main__":
    main()
