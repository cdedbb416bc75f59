#!/usr/bin/env python3
"""anweddol-server, the real binary, driven as the Anweddol client drives it:
the REST API with python3-requests, the classic protocol with
classic_client.py (both written from ../shared/spec/anweddol-protocol.md),
and a client's SSH with OpenSSH through the forwarded port.

  anweddol_server_test.py SERVER ISO config       a bad configuration is refused, naming file, key and reason
  anweddol_server_test.py SERVER ISO hostile      malformed, oversized, truncated, lying and slow requests on both ports
  anweddol_server_test.py SERVER ISO descriptors  out of descriptors (ulimit -n 64): no spinning, served again after
  anweddol_server_test.py SERVER ISO lifecycle    CREATE (warm pool, REST) and CREATE (classic), SSH through
                                                  the forwarded ports, capacity, a wrong token, DESTROY (sandbox)
  anweddol_server_test.py SERVER ISO restart      kill -9 with containers handed out, start again (sandbox)
  anweddol_server_test.py SERVER ISO lifetime     the maximum lifetime ends a container and its forward (sandbox)

The first three need no daemon: they run on libvirt's test driver, whose
3 MiB of free memory refuse every CREATE before anything boots. The others
boot real guests with the sandbox's libvirtd (scripts/sandbox.sh exec sets
ANWEDDOL_SANDBOX=1); elsewhere they exit with 77 (skipped), unless CI=true,
where that is a failure. They count libvirt's domains, so they run alone.
Every request goes to 127.0.0.1.
"""

import json
import os
import resource
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import classic_client  # noqa: E402

SKIPPED = 77
UNIT = ("config", "hostile", "descriptors")
URI = "qemu:///system"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, limit, step=0.2):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def domains():
    """The UUIDs of every domain the sandbox's libvirtd has."""
    out = subprocess.run(["virsh", "-q", "-c", URI, "list", "--all", "--uuid"],
                         check=True, capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def domain_type():
    return os.environ.get("ANWEDDOL_TEST_DOMAIN_TYPE") or "qemu"


def config_text(directory, iso, *, uri, rest_port, classic_port, port_range, capacity=2,
                pool=0, lifetime=0, access_token=False, hypervisors=None):
    """A configuration file with every section of the reference's, and ours."""
    return f"""\
container:
  container_iso_file_path: {iso}
  max_allowed_running_container_domains: {capacity if capacity else "null"}
  container_memory: 512
  container_vcpus: 1
  nat_interface_name: virbr0
  domain_type: {domain_type()}
  wait_max_tryout: 600
  endpoint_username: endpoint
  endpoint_password: endpoint
  endpoint_listen_port: 22
server:
  public_rsa_key_file_path: {directory}/rsa/public.pem
  private_rsa_key_file_path: {directory}/rsa/private.pem
  log_file_path: {directory}/server.txt
  pid_file_path: {directory}/server.pid
  user: root
  bind_address: 127.0.0.1
  listen_port: {classic_port}
  timeout: 3
  enable_onetime_rsa_keys: False
web_server:
  log_file_path: {directory}/web_server.txt
  pid_file_path: {directory}/web_server.pid
  user: root
  listen_port: {rest_port}
  enable_ssl: False
  ssl_pem_private_key_file_path: {directory}/ssl/private_key.pem
  ssl_pem_certificate_file_path: {directory}/ssl/certificate.pem
port_forwarding:
  port_range: [{port_range[0]}, {port_range[1]}]
log_rotation:
  enabled: False
  log_archive_folder_path: {directory}/archived
  max_log_lines_amount: 4000
  action: delete
ip_filter:
  enabled: False
  denied_ip_list: []
  allowed_ip_list:
    - any
access_token:
  enabled: {access_token}
  access_token_database_file_path: {directory}/access_token.db
anweddol:
{f"  hypervisors:{chr(10)}{hypervisors}" if hypervisors else f"  hypervisor_uri: {uri}"}
  warm_pool_size: {pool}
  max_container_lifetime: {lifetime}
  state_database_file_path: {directory}/state.db
"""


class Server:
    """anweddol-server on free loopback ports, its output collected."""

    def __init__(self, binary, iso, uri=URI, directory=None, port_range=None, descriptors=None,
                 **settings):
        self.binary = binary
        self.descriptors = descriptors  # RLIMIT_NOFILE, when set
        self.directory = directory or tempfile.mkdtemp(prefix="anweddol-server-test-")
        self.rest_port = free_port()
        self.classic_port = free_port()
        base = 20000 + (os.getpid() * 7) % 20000
        self.port_range = port_range or (base, base + 40)
        self.config = os.path.join(self.directory, "config.yaml")
        with open(self.config, "w") as f:
            f.write(config_text(self.directory, iso, uri=uri, rest_port=self.rest_port,
                                classic_port=self.classic_port, port_range=self.port_range,
                                **settings))
        self.lines = []
        self.process = None
        self.start()

    def start(self, ready_within=120):
        self.lines = []
        limit = self.descriptors
        self.process = subprocess.Popen(
            [self.binary, "--config", self.config], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="backslashreplace",
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
            if limit else None)
        threading.Thread(target=self._collect, args=(self.process,), daemon=True).start()
        if not wait_until(self._answers, ready_within, 0.25):
            self.process.kill()
            raise Failure("the server did not answer STAT within "
                          f"{ready_within} s:\n{self.log()}")

    def _collect(self, process):
        for line in process.stdout:
            self.lines.append(line)

    def _answers(self):
        if self.process.poll() is not None:
            raise Failure(f"the server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return self.rest("stat", timeout=2)["success"]
        except requests.RequestException:
            return False

    def log(self):
        return "".join(self.lines)

    def rest(self, verb, parameters=None, timeout=900):
        """What the Anweddol client's WebClientInterface does: a POST of the
        parameters as JSON to /<verb, in lower case>."""
        answer = requests.post(f"http://127.0.0.1:{self.rest_port}/{verb.lower()}",
                               json=parameters or {}, timeout=timeout)
        check(answer.status_code == 200,
              f"{verb}: HTTP {answer.status_code}, the reference always answers 200")
        return answer.json()

    def gauge(self, state):
        """anweddol_server_containers{state=...} from /metrics, or None."""
        text = requests.get(f"http://127.0.0.1:{self.rest_port}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(f'anweddol_server_containers{{state="{state}"}}'):
                return float(line.split()[-1])
        return None

    def classic(self, verb, parameters=None, timeout=900):
        """The classic protocol's exchange, one request per connection (the
        server's key is its persistent RSA-4096; ours is 2048 bits, which
        the protocol allows, to keep the test quick)."""
        with classic_client.ClassicClient("127.0.0.1", self.classic_port, timeout=timeout,
                                          key_size=2048) as client:
            return client.request({"verb": verb, "parameters": parameters or {}})

    def stop(self, timeout=300):
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise Failure(f"the server did not stop within {timeout} s:\n{self.log()}")
        check(code == 0, f"the server exited with {code} after SIGTERM:\n{self.log()}")

    def kill(self):
        """The clean-up of a test that failed: SIGTERM first, so that the
        server destroys its containers (they outlive a SIGKILL, for the
        next start to adopt), then SIGKILL."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(300)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ssh(port, username, password, command="echo anweddol-ok", timeout=120):
    """OpenSSH's client, logging in with a password through SSH_ASKPASS."""
    with tempfile.TemporaryDirectory() as d:
        askpass = os.path.join(d, "askpass")
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
        os.chmod(askpass, stat.S_IRWXU)
        environment = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force",
                           DISPLAY=":0")
        result = subprocess.run(
            ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
             "-o", "PreferredAuthentications=password,keyboard-interactive",
             "-o", "ConnectTimeout=30", "-o", "NumberOfPasswordPrompts=1",
             "-o", "LogLevel=ERROR", f"{username}@127.0.0.1", command],
            env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout)
        return result.returncode, result.stdout + result.stderr


def check_create_answer(answer, what):
    import re
    check(answer["success"] and answer["message"] == "OK", f"{what}: {answer}")
    data = answer["data"]
    check(set(data) == {"container_uuid", "client_token", "container_iso_sha256",
                        "container_username", "container_password", "container_listen_port"},
          f"{what}: CREATE's data has the reference's six fields, not {sorted(data)}")
    check(re.match(UUID_RE, data["container_uuid"]), f"{what}: {data['container_uuid']}")
    check(re.match(r"^[0-9a-zA-Z_-]{255}$", data["client_token"]), f"{what}: client_token")
    check(re.match(r"^[a-f0-9]{64}$", data["container_iso_sha256"]), f"{what}: iso sha256")
    check(re.match(r"^user_[0-9]{5}$", data["container_username"]), f"{what}: username")
    check(re.match(r"^[a-zA-Z0-9]+$", data["container_password"]), f"{what}: password")
    check(type(data["container_listen_port"]) is int, f"{what}: the port must be a JSON integer")
    return data


def check_login(data, what):
    code, output = ssh(data["container_listen_port"], data["container_username"],
                       data["container_password"])
    check(code == 0 and "anweddol-ok" in output,
          f"{what}: OpenSSH through port {data['container_listen_port']} failed ({code}): {output}")


def port_closed(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---- config ------------------------------------------------------------------

def test_config(binary, iso):
    directory = tempfile.mkdtemp(prefix="anweddol-server-config-")
    good = config_text(directory, iso, uri="test:///default", rest_port=free_port(),
                       classic_port=free_port(), port_range=(30000, 30010))
    cases = [
        ("an unknown key", good.replace("  container_vcpus: 1", "  container_vcpus: 1\n  vcpu: 1"),
         "container.vcpu"),
        ("a wrong type", good.replace("container_memory: 512", "container_memory: lots"),
         "container.container_memory"),
        ("a port out of range", good.replace(f"port_range: [30000, 30010]",
                                             "port_range: [30000, 70000]"),
         "port_forwarding.port_range"),
        ("a range smaller than the capacity", good.replace("port_range: [30000, 30010]",
                                                           "port_range: [30000, 30000]"),
         "port_forwarding.port_range"),
        ("a missing ISO", good.replace(iso, directory + "/no-such.iso"),
         "container.container_iso_file_path"),
        ("an endpoint port the library cannot use", good.replace("endpoint_listen_port: 22",
                                                                 "endpoint_listen_port: 2022"),
         "container.endpoint_listen_port"),
    ]
    config = os.path.join(directory, "config.yaml")
    for what, text, key in cases:
        with open(config, "w") as f:
            f.write(text)
        result = subprocess.run([binary, "--config", config], capture_output=True, text=True,
                                timeout=60)
        output = result.stdout + result.stderr
        check(result.returncode != 0, f"{what}: the server started:\n{output}")
        check(config in output and key in output,
              f"{what}: the error should name {config} and {key}:\n{output}")
    # A second server on the same state database would adopt the first's
    # containers and destroy them: it is refused, and the first serves on.
    first = Server(binary, iso, uri="test:///default", directory=directory)
    try:
        result = subprocess.run([binary, "--config", first.config], capture_output=True,
                                text=True, timeout=60)
        output = result.stdout + result.stderr
        check(result.returncode != 0 and "another anweddol-server" in output,
              f"a second server on one state database should be refused:\n{output}")
        check(first.rest("stat")["success"], "the first server stopped serving")
        first.stop()
    finally:
        first.kill()
    print(f"config: {len(cases)} bad configurations refused, each naming the file and the key; "
          "a second server on one state database refused")


# ---- hostile (no hypervisor) ---------------------------------------------------

def raw_exchange(port, data, timeout=10, drip=None):
    """Sends `data` (all at once, or a byte every `drip` seconds) and reads
    until the server closes: (what came back, seconds until closed)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            if drip is None:
                s.sendall(data)
            else:
                for byte in data:
                    s.sendall(bytes([byte]))
                    time.sleep(drip)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            chunks = chunks if "chunks" in locals() else []
        return b"".join(chunks), time.monotonic() - began


def test_hostile(binary, iso):
    server = Server(binary, iso, uri="test:///default")
    try:
        # REST: what the reference answers "Bad request", always with 200.
        base = f"http://127.0.0.1:{server.rest_port}"
        for what, response in [
            ("malformed JSON", requests.post(base + "/create", data="{",
                                             headers={"Content-Type": "application/json"})),
            ("a JSON array", requests.post(base + "/create", data="[1]",
                                           headers={"Content-Type": "application/json"})),
            ("a UUID that is a number", requests.post(base + "/destroy", json={
                "container_uuid": 12, "client_token": "x" * 255})),
            ("two path segments", requests.post(base + "/foo/stat", json={})),
            ("an unknown verb", requests.post(base + "/reboot", json={})),
            ("GET /create", requests.get(base + "/create")),
        ]:
            check(response.status_code == 200, f"{what}: HTTP {response.status_code}")
            body = response.json()
            check(body["success"] is False and body["message"].startswith("Bad request"),
                  f"{what}: {body}")
        home = requests.get(base + "/").json()
        check(home["success"] and "links" in home["data"], f"GET /: {home}")
        stat_answer = requests.post(base + "/STAT", json={}).json()
        check(stat_answer["success"] and isinstance(stat_answer["data"]["uptime"], int)
              and "version" in stat_answer["data"], f"STAT: {stat_answer}")
        check(not any(line for line in server.lines if "booting" in line),
              "GET /create must not boot anything")

        # A body of 10 MB: refused without being read whole.
        body = b"{" + b" " * (10 * 1024 * 1024) + b"}"
        head = (f"POST /create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            answer, _ = raw_exchange(server.rest_port, head + body, timeout=30)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
        check(b'"success":true' not in answer, f"a 10 MB body: {answer[:200]!r}")

        # Slowloris on the REST port: a header byte a second is dropped.
        _, took = raw_exchange(server.rest_port, b"POST /stat HTTP/1.1\r\nHost: x\r\n" * 10,
                               timeout=120, drip=1.0)
        check(took < 60, f"a header byte a second kept the REST connection for {took:.0f} s")

        # Classic: a truncated handshake, a lying length, garbage, and a
        # slowloris are each dropped, and the server still serves.
        for what, data in [("a truncated handshake", b"00"),
                           ("a lying length", b"99999999"),
                           ("garbage", os.urandom(4096)),
                           ("a length of letters", b"abcdefgh")]:
            answer, took = raw_exchange(server.classic_port, data, timeout=30)
            check(took < 20, f"classic, {what}: held for {took:.0f} s")
            check(b"{" not in answer, f"classic, {what}: answered {answer[:100]!r}")
        _, took = raw_exchange(server.classic_port, b"800=====" + b"-" * 100, timeout=60,
                               drip=0.5)
        check(took < 30, f"classic slowloris held for {took:.0f} s (timeout is 3 s)")
        answer = server.classic("STAT", timeout=60)
        check(answer["success"] and "uptime" in answer["data"], f"classic STAT: {answer}")
        answer = server.classic("CREATE", timeout=60)
        check(answer["success"] is False and answer["message"].startswith("Unavailable"),
              f"classic CREATE on a host without memory: {answer}")
        # /metrics, with the refusals above counted, passes Prometheus's own
        # check (promtool, from Debian's prometheus).
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        checked = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                                 capture_output=True, text=True)
        check(checked.returncode == 0,
              f"promtool check metrics: {checked.stdout}{checked.stderr}\n{metrics}")
        check("anweddol_server_" in metrics, f"/metrics has no server metric:\n{metrics}")
        server.stop()
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.kill()
    print("hostile: malformed JSON, wrong types, extra segments, GET /create, a 10 MB body, "
          "a slowloris on both ports, truncated, lying and garbage handshakes: refused or "
          "dropped; the server serves on, and its /metrics pass promtool")


# ---- lifecycle (sandbox) ---------------------------------------------------------

def cpu_seconds(pid):
    """The user and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptors(binary, iso, descriptors=64, connections=200, window=3.0):
    """A client that holds many connections open, without a request, runs
    the server out of descriptors: accept must back off rather than spin,
    and the server must serve both ports again once they close."""
    server = Server(binary, iso, uri="test:///default", descriptors=descriptors)
    held = []
    used = 0.0
    try:
        for _ in range(connections):
            held.append(socket.create_connection(("127.0.0.1", server.rest_port), timeout=30))
        pid = server.process.pid
        check(wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= descriptors - 1, 30),
              f"the server never ran out of descriptors: it has "
              f"{len(os.listdir(f'/proc/{pid}/fd'))} of {descriptors}")
        before = cpu_seconds(pid)
        time.sleep(window)  # CPU use over a window: nothing to wait for
        used = cpu_seconds(pid) - before
        check(used < 0.15 * window,
              f"the server used {used:.2f} s of CPU in {window} s while out of descriptors")
        for s in held:
            s.close()
        held = []
        check(wait_until(lambda: server._answers(), 30, 0.5),
              "REST does not answer once the connections closed")
        check(server.classic("STAT")["success"], "the classic port does not answer after")
        server.stop()
    except Failure:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        for s in held:
            s.close()
        server.kill()
    print(f"descriptors: with {descriptors} descriptors and {connections} connections held, "
          f"{used:.2f} s of CPU in {window} s; both ports served again once they closed")


def test_lifecycle(binary, iso):
    before = domains()
    server = Server(binary, iso, capacity=2, pool=1)
    try:
        check(wait_until(lambda: server.gauge("pool_ready") == 1, 600, 0.5),
              "the warm pool should hold one booted container")
        check(len(domains() - before) == 1, "the warm pool booted more than one domain")
        began = time.monotonic()
        first = check_create_answer(server.rest("create"), "REST CREATE")
        warm = time.monotonic() - began
        check_login(first, "the REST container")
        second = check_create_answer(server.classic("CREATE"), "classic CREATE")
        check_login(second, "the classic container")
        check(first["container_listen_port"] != second["container_listen_port"],
              "two containers on one forwarded port")
        for data in (first, second):
            check(server.port_range[0] <= data["container_listen_port"] <= server.port_range[1],
                  f"port {data['container_listen_port']} outside the configured range")

        third = server.rest("create")
        check(not third["success"] and third["message"].startswith("Unavailable"),
              f"a CREATE over capacity: {third}")
        stat_answer = server.rest("stat")
        check(stat_answer["data"].get("available") == 0, f"STAT at capacity: {stat_answer}")

        # A wrong token, or another container's, changes nothing.
        wrong = server.rest("destroy", {"container_uuid": first["container_uuid"],
                                        "client_token": second["client_token"]})
        check(not wrong["success"] and wrong["message"].startswith("Bad authentication"),
              f"DESTROY with another container's token: {wrong}")
        check_login(first, "the REST container after a refused DESTROY")

        answer = server.rest("destroy", {"container_uuid": first["container_uuid"],
                                         "client_token": first["client_token"]})
        check(answer["success"], f"REST DESTROY: {answer}")
        check(first["container_uuid"] not in domains(), "DESTROY left the domain")
        check(port_closed(first["container_listen_port"]), "DESTROY left the forward open")
        answer = server.classic("DESTROY", {"container_uuid": second["container_uuid"],
                                            "client_token": second["client_token"]})
        check(answer["success"], f"classic DESTROY: {answer}")
        again = server.rest("destroy", {"container_uuid": second["container_uuid"],
                                        "client_token": second["client_token"]})
        check(not again["success"], f"a second DESTROY: {again}")
        server.stop()
        check(domains() == before, f"left behind: {domains() - before}")
        check(port_closed(second["container_listen_port"]), "a forward outlived the server")
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.kill()
    print(f"lifecycle: a warm CREATE answered in {warm:.2f} s; both transports' containers "
          "reached with OpenSSH through their ports; capacity, a wrong token, DESTROY; "
          "nothing left")


# ---- restart (sandbox) -----------------------------------------------------------

def test_restart(binary, iso):
    before = domains()
    server = Server(binary, iso, capacity=3)
    try:
        kept = check_create_answer(server.rest("create"), "CREATE")
        forgotten = check_create_answer(server.rest("create"), "CREATE")
        server.process.kill()  # kill -9: no clean-up at all
        server.process.wait()
        check({kept["container_uuid"], forgotten["container_uuid"]} <= domains(),
              "the containers should outlive the server's kill")
        # One record lost, one record of a domain that is gone.
        database = sqlite3.connect(os.path.join(server.directory, "state.db"))
        tables = [row[0] for row in database.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")]
        table = next(t for t in tables if "container" in t)
        columns = [row[1] for row in database.execute(f"PRAGMA table_info({table})")]
        key = next(c for c in columns if "uuid" in c)
        database.execute(f"DELETE FROM {table} WHERE {key} = ?", (forgotten["container_uuid"],))
        database.commit()
        database.close()

        server.start()
        check(wait_until(lambda: forgotten["container_uuid"] not in domains(), 120, 1),
              "the domain with no record should be destroyed at start")
        check_login(kept, "the container through its old port after the restart")
        answer = server.rest("destroy", {"container_uuid": kept["container_uuid"],
                                         "client_token": kept["client_token"]})
        check(answer["success"], f"DESTROY with the old token after the restart: {answer}")
        server.stop()
        check(domains() == before, f"left behind: {domains() - before}")
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.kill()
    print("restart: after kill -9, the recorded container was adopted (its port forwards again, "
          "its token destroys it) and the unrecorded one destroyed; nothing left")


# ---- lifetime (sandbox) ----------------------------------------------------------

def test_lifetime(binary, iso, lifetime=20):
    before = domains()
    server = Server(binary, iso, capacity=1, lifetime=lifetime)
    try:
        data = check_create_answer(server.rest("create"), "CREATE")
        handed = time.monotonic()
        check(wait_until(lambda: data["container_uuid"] not in domains(), lifetime + 120, 0.5),
              "the container outlived its lifetime")
        ended = time.monotonic() - handed
        check(port_closed(data["container_listen_port"]), "the forward outlived the container")
        check(server.rest("stat")["data"]["available"] == 1, "its place was not given back")

        # SIGTERM once the CREATE's container has booted, while it is handed
        # over (a few seconds of SSH): the CREATE gives up, its domain is
        # destroyed, the server exits cleanly.
        answers = []
        creating = threading.Thread(target=lambda: answers.append(server.rest("create")))
        creating.start()
        check(wait_until(lambda: any(" ready" in line and "pool: " in line
                                     for line in server.lines), 300, 0.05),
              "the CREATE's container never booted")
        server.stop()
        creating.join(60)
        check(not answers or not answers[0]["success"],
              f"a CREATE interrupted by SIGTERM handed out a container: {answers}")
        check(domains() == before, f"left behind after SIGTERM mid-CREATE: {domains() - before}")
        caught = any("ready as the server stops" in line for line in server.lines)
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.kill()
    print(f"lifetime: a container with a lifetime of {lifetime} s ended after {ended:.1f} s, "
          "its forward closed, its place given back; SIGTERM during a hand-over left nothing "
          f"({'the CREATE destroyed its container' if caught else 'the pool shutdown ended it'})")


# ---- hosts (the sandbox's two-host mode) ------------------------------------------

def sandbox_hosts():
    """The two-host sandbox's hosts, as scripts/sandbox.sh exec describes them."""
    def pairs(name):
        return dict(word.split("=", 1) for word in os.environ[name].split() if "=" in word)
    jumps = pairs("ANWEDDOL_SANDBOX_JUMP_ADDRESSES")
    return [(name, uri, jumps[name]) for name, uri in sorted(pairs("ANWEDDOL_SANDBOX_HOSTS").items())]


def host_domains(uri):
    out = subprocess.run(["virsh", "-q", "-c", uri, "list", "--all", "--uuid"],
                         check=True, capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_hosts(binary, iso):
    hosts = sandbox_hosts()
    check(len(hosts) >= 2, f"the two-host sandbox should describe two hosts, not {hosts}")
    listing = "".join(
        f"""    - name: {name}
      uri: {uri}
      jump:
        host: {address}
        username: {os.environ["ANWEDDOL_SANDBOX_JUMP_USER"]}
        private_key_file: {os.environ["ANWEDDOL_SANDBOX_JUMP_KEY"]}
        known_hosts_file: {os.environ["ANWEDDOL_SANDBOX_KNOWN_HOSTS"]}
""" for name, uri, address in hosts)
    before = {uri: host_domains(uri) for _, uri, _ in hosts}
    server = Server(binary, iso, uri=None, capacity=2, hypervisors=listing)
    try:
        created = [check_create_answer(server.rest("create"), f"CREATE {i}") for i in range(2)]
        # Where the hypervisor pool placed them is its business (by free
        # memory and boots in flight); each must run on one of the hosts.
        placed = {uri: host_domains(uri) - before[uri] for _, uri, _ in hosts}
        check(set().union(*placed.values()) == {d["container_uuid"] for d in created},
              f"the containers should run on the hosts: {placed}")
        for data in created:
            check_login(data, "a container on a remote host, through its jump")
        for data in created:
            answer = server.rest("destroy", {"container_uuid": data["container_uuid"],
                                             "client_token": data["client_token"]})
            check(answer["success"], f"DESTROY: {answer}")
        server.stop()
        left = {uri: host_domains(uri) - before[uri] for _, uri, _ in hosts}
        check(not any(left.values()), f"left behind: {left}")
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.kill()
    print(f"hosts: two containers placed on {', '.join(u for u, new in placed.items() if new)}, "
          "each reached with OpenSSH through its forwarded port and its host's SSH jump; "
          "nothing left on either host")


def main():
    tests = {"config": test_config, "hostile": test_hostile, "descriptors": test_descriptors,
             "lifecycle": test_lifecycle,
             "restart": test_restart, "lifetime": test_lifetime, "hosts": test_hosts}
    if len(sys.argv) != 4 or sys.argv[3] not in tests:
        print(__doc__, file=sys.stderr)
        return 2
    binary, iso, which = sys.argv[1:]
    if which not in UNIT and os.environ.get("ANWEDDOL_SANDBOX") != "1":
        if os.environ.get("CI") == "true":
            print("CI=true but not inside the sandbox: run scripts/test.sh", file=sys.stderr)
            return 1
        print("skipped: needs the test sandbox (scripts/test.sh, as root)")
        return SKIPPED
    try:
        tests[which](binary, iso)
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
