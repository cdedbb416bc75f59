// anweddol-provision: boots N containers at once, hands each over to fresh
// client credentials, checks that they work, and prints a table with the
// time each phase took. Destroys them when it exits, unless --keep; Ctrl-C
// destroys every one of them before it exits, and libvirt destroys them if
// it is killed (autodestroy), except with --keep. With --host, places them
// across many libvirt hosts through a hypervisor_pool.
//
// Exit status: 0 when every container was administered; 1 when one was not,
// no --host was up, or an error stopped it; 2 for a usage error (an option
// it does not know or a value it refuses, an ISO or a key file it cannot
// read), before anything connects; 130 after Ctrl-C (or SIGTERM).
#include <anweddol/container_pool.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/runtime.hpp>
#include <anweddol/secret.hpp>
#include <anweddol/ssh_jump.hpp>
#include <anweddol/virtualization_interface.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/memory_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/storage_ptr.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view usage = R"(usage: anweddol-provision --iso PATH [options]

Boots containers from a live ISO, administers each over SSH, checks the
client credentials it hands out, and prints them with per-phase timings.

  --iso PATH          the live ISO to boot (required)
  --count N           how many containers to provision at once (default 1)
  --pool K            keep K containers booted in a warm pool first, then
                      take the N from it: the first K need only their
                      hand-over, the others wait for boots; the pool's
                      spare containers are destroyed at exit
  --memory MIB        memory of each, at least 512 (default 512)
  --vcpus N           virtual CPUs of each (default 1)
  --uri URI           libvirt driver URI (default qemu:///system)
  --domain-type TYPE  kvm or qemu (default: kvm where the host has it)
  --max-boots N       boots at the same time: a number, "auto" (the CPU
                      count for software emulation) or "unbounded"; with
                      --host, a number or "auto" per host
  --client-port PORT  where the client's SSH server listens (default 2222)
  --json              print JSON instead of a table
  --keep              leave the containers running at exit (and when killed:
                      they are not tied to this process's connection)
  --owner NAME        the owner recorded in each domain (default: this
                      host's name), for finding kept ones again
  --dynamic-address   let dnsmasq lease a dynamic address, as before the
                      address was reserved ahead (to measure the difference)
  --show-passwords    print the passwords instead of masking them
  --help              this text

Many hosts (a hypervisor_pool places each container on the host with the
fewest boots in flight among those with room for it):
  --host NAME=URI     a libvirt host, such as h1=qemu+tls://h1.example/system;
                      repeat it for each host. Not with --uri. Works with
                      --pool too. Before provisioning, waits up to 30 s for
                      every host to connect, prints each one's state (not
                      with --json), and stops if none is up
  --jump NAME=ADDRESS[:PORT]
                      reach the guests of host NAME (given with --host)
                      over SSH through ADDRESS (an IP address, port 22 by
                      default): for hosts whose NAT network is not routable
                      from here. Repeat it for each such host
  --jump-user USER    the account on the jump hosts (default root)
  --jump-key FILE     its unencrypted OpenSSH private key (required with
                      --jump)
  --known-hosts FILE  the jump hosts' keys, in OpenSSH's known_hosts format
                      (required with --jump): a key that differs from its
                      entry is refused; a host not in it is added on first
                      contact
The table and the JSON then say each container's host (and jump); a
container behind a jump gets the ssh -J command that reaches it, and a last
line counts the containers per host.

Exit status: 0 when every container was administered, 1 when one was not
(or no host was up), 2 for a usage error (with its reason on standard
error), 130 when interrupted.
)";

// One --host, with its --jump if any.
struct host_setting {
    std::string name;
    std::string uri;
    std::optional<std::string> jump_address;
    std::uint16_t jump_port = 22;
};

struct settings {
    std::string iso;
    unsigned count = 1;
    std::optional<unsigned> pool; // K, with --pool
    unsigned memory = 512;
    unsigned vcpus = 1;
    std::string uri = "qemu:///system";
    std::string domain_type;
    std::string max_boots = "auto";
    std::uint16_t client_port = 2222;
    bool json = false;
    bool keep = false;
    bool dynamic_address = false;
    bool show_passwords = false;
    std::string owner;
    std::vector<host_setting> hosts; // --host, in order
    std::string jump_user = "root";
    std::string jump_key;
    std::string known_hosts;
};

[[noreturn]] void bad_usage(const std::string& why) {
    std::cerr << "anweddol-provision: " << why << "\n\n" << usage;
    std::exit(2);
}

unsigned number(const std::string& option, const std::string& value, unsigned low, unsigned high) {
    try {
        std::size_t used = 0;
        const unsigned long n = std::stoul(value, &used);
        if (used == value.size() && n >= low && n <= high)
            return static_cast<unsigned>(n);
    } catch (const std::exception&) {
    }
    bad_usage(option + " needs a number from " + std::to_string(low) + " to " +
              std::to_string(high) + ", not '" + value + "'");
}

// NAME=VALUE, for --host and --jump.
std::pair<std::string, std::string> name_value(const std::string& option, const std::string& arg,
                                               const std::string& form) {
    const auto equals = arg.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == arg.size())
        bad_usage(option + " needs " + form + ", not '" + arg + "'");
    std::string name = arg.substr(0, equals);
    for (const char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            bad_usage(option + ": the host name '" + name +
                      "' may hold only letters, digits, '-', '_' and '.'");
    return {std::move(name), arg.substr(equals + 1)};
}

// ADDRESS[:PORT] of --jump: an IPv4 address, an IPv6 one (in brackets when
// a port follows), then an optional port.
void parse_jump(const std::string& name, const std::string& value, host_setting& host) {
    std::string address = value;
    std::string port;
    if (value.starts_with('[')) {
        const auto close = value.find(']');
        if (close == std::string::npos || (close + 1 < value.size() && value[close + 1] != ':') ||
            close + 2 == value.size())
            bad_usage("--jump " + name + "=" + value +
                      ": write an IPv6 address as [ADDRESS] or "
                      "[ADDRESS]:PORT");
        address = value.substr(1, close - 1);
        port = close + 1 < value.size() ? value.substr(close + 2) : "";
    } else if (std::count(value.begin(), value.end(), ':') == 1) {
        address = value.substr(0, value.find(':'));
        port = value.substr(value.find(':') + 1);
    }
    boost::system::error_code invalid;
    boost::asio::ip::make_address(address, invalid);
    if (invalid)
        bad_usage("--jump " + name + "=" + value + ": '" + address +
                  "' is no IP address (the jump host is given by its address, not by name)");
    host.jump_address = address;
    if (!port.empty())
        host.jump_port = static_cast<std::uint16_t>(
            number("--jump " + name + "=" + value + ": the port", port, 1, 65535));
}

void require_readable(const std::string& option, const std::string& path) {
    if (!std::ifstream(path))
        bad_usage(option + " " + path + ": cannot read this file");
}

// --iso's file, checked before anything connects: without a libvirtd the
// connection would fail first, and hide a mistyped path behind it. The
// library checks it here too (with --host as well), but only once
// connected.
void check_iso(const settings& s) {
    struct stat status {};
    std::string problem;
    if (::stat(s.iso.c_str(), &status) != 0)
        problem = errno == ENOENT ? "no such file"
                                  : "cannot use it: " + std::string(std::strerror(errno));
    else if (S_ISDIR(status.st_mode))
        problem = "a directory, not a file";
    else if (!S_ISREG(status.st_mode))
        problem = "not a regular file";
    else if (::access(s.iso.c_str(), R_OK) != 0)
        problem = "cannot read it: " + std::string(std::strerror(errno));
    if (problem.empty())
        return;
    std::cerr << "anweddol-provision: --iso " << s.iso << ": " << problem << "\n"
              << "  give --iso the live ISO to boot, a file this user can read"
              << (s.hosts.empty() ? "" : ",\n  and at the same path on every --host") << ";\n"
              << "  tests/guest/build-iso.sh builds a test one, and scripts/provision.sh\n"
              << "  builds it and boots it (in the sandbox)\n";
    std::exit(2);
}

// What the command line says, before its options are checked together.
struct command_line {
    settings s;
    bool uri_given = false;
    bool jump_user_given = false;
    std::vector<std::pair<std::string, std::string>> jumps; // --jump NAME, ADDRESS[:PORT]
};

// --host NAME=URI: one more host, under a name of its own.
void add_host(command_line& c, const std::string& value) {
    auto [name, uri] = name_value("--host", value, "NAME=URI, such as h1=qemu+tls://h1/system");
    if (uri.find(':') == std::string::npos)
        bad_usage("--host " + value + ": '" + uri +
                  "' is no libvirt URI (such as qemu+tls://h1/system)");
    for (const auto& host : c.s.hosts)
        if (host.name == name)
            bad_usage("--host " + value + ": a host named '" + name +
                      "' was given already; give each host a name of its own");
    host_setting host;
    host.name = std::move(name);
    host.uri = std::move(uri);
    c.s.hosts.push_back(std::move(host));
}

// The options without a value.
const std::map<std::string_view, bool settings::*> flags{
    {"--json", &settings::json},
    {"--keep", &settings::keep},
    {"--dynamic-address", &settings::dynamic_address},
    {"--show-passwords", &settings::show_passwords}};

// The options with a value, and what each does with it.
using option_setter = void (*)(command_line&, const std::string& option, const std::string& value);
const std::map<std::string_view, option_setter> valued_options{
    {"--iso",
     [](auto& c, auto&, auto& value) {
         c.s.iso = value;
     }},
    {"--count",
     [](auto& c, auto& o, auto& value) {
         c.s.count = number(o, value, 1, 256);
     }},
    {"--pool",
     [](auto& c, auto& o, auto& value) {
         c.s.pool = number(o, value, 0, 64);
     }},
    {"--memory",
     [](auto& c, auto& o, auto& value) {
         c.s.memory = number(o, value, 512, 1 << 20);
     }},
    {"--vcpus",
     [](auto& c, auto& o, auto& value) {
         c.s.vcpus = number(o, value, 1, 256);
     }},
    {"--uri",
     [](auto& c, auto&, auto& value) {
         c.s.uri = value, c.uri_given = true;
     }},
    {"--host",
     [](auto& c, auto&, auto& value) {
         add_host(c, value);
     }},
    {"--jump",
     [](auto& c, auto& o, auto& value) {
         c.jumps.push_back(name_value(o, value, "NAME=ADDRESS[:PORT], such as h1=10.0.0.5"));
     }},
    {"--jump-user",
     [](auto& c, auto&, auto& value) {
         if (value.empty())
             bad_usage("--jump-user needs a user name");
         c.s.jump_user = value, c.jump_user_given = true;
     }},
    {"--jump-key",
     [](auto& c, auto&, auto& value) {
         c.s.jump_key = value;
     }},
    {"--known-hosts",
     [](auto& c, auto&, auto& value) {
         c.s.known_hosts = value;
     }},
    {"--domain-type",
     [](auto& c, auto&, auto& value) {
         c.s.domain_type = value;
     }},
    {"--max-boots",
     [](auto& c, auto& o, auto& value) {
         c.s.max_boots = value == "auto" || value == "unbounded"
                             ? value
                             : std::to_string(number(o, value, 1, 1024));
     }},
    {"--owner",
     [](auto& c, auto&, auto& value) {
         c.s.owner = value;
     }},
    {"--client-port", [](auto& c, auto& o, auto& value) {
         c.s.client_port = static_cast<std::uint16_t>(number(o, value, 1, 65535));
     }}};

// Each --jump on its host, and the options that go with jumps.
void check_jumps(command_line& c) {
    for (const auto& [name, value] : c.jumps) {
        const auto host = std::find_if(c.s.hosts.begin(), c.s.hosts.end(),
                                       [&name](const auto& h) { return h.name == name; });
        if (host == c.s.hosts.end())
            bad_usage("--jump " + name + "=" + value + ": no host named '" + name +
                      "' was given with --host");
        if (host->jump_address)
            bad_usage("--jump " + name + "=" + value + ": host '" + name +
                      "' has a jump already; give one per host");
        parse_jump(name, value, *host);
    }
    if (c.jumps.empty()) {
        for (const auto& [given, option] : {std::pair{c.jump_user_given, "--jump-user"},
                                            {!c.s.jump_key.empty(), "--jump-key"},
                                            {!c.s.known_hosts.empty(), "--known-hosts"}})
            if (given)
                bad_usage(std::string(option) + " is for jump hosts: give --jump NAME=ADDRESS too");
        return;
    }
    if (c.s.jump_key.empty())
        bad_usage("--jump needs --jump-key FILE: the private key that logs in to the jump hosts");
    if (c.s.known_hosts.empty())
        bad_usage("--jump needs --known-hosts FILE: the known_hosts file that checks the jump "
                  "hosts' keys");
    require_readable("--jump-key", c.s.jump_key);
    require_readable("--known-hosts", c.s.known_hosts);
}

// The options together: what is required, what contradicts what.
void check(command_line& c) {
    if (c.s.iso.empty())
        bad_usage("--iso is required");
    if (!c.s.hosts.empty() && c.uri_given)
        bad_usage("--uri and --host contradict each other: give one libvirt host with --uri, "
                  "or every host with --host");
    if (!c.s.hosts.empty() && c.s.max_boots == "unbounded")
        bad_usage("--max-boots unbounded is for one host: with --host, give a number per host "
                  "or auto (each host's CPU count)");
    check_jumps(c);
    check_iso(c.s);
}

// The set-up: the command line read and checked, or what is wrong with it
// on standard error and exit status 2.
settings parse(int argc, char** argv) {
    command_line c;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help") {
            std::cout << usage;
            std::exit(0);
        }
        if (const auto flag = flags.find(arg); flag != flags.end()) {
            c.s.*(flag->second) = true;
            continue;
        }
        // Known first: an unknown last option is no option missing its value.
        const auto option = valued_options.find(arg);
        if (option == valued_options.end())
            bad_usage("unknown option " + arg);
        if (i + 1 == argc)
            bad_usage(arg + " needs a value");
        option->second(c, arg, argv[++i]);
    }
    check(c);
    return std::move(c.s);
}

double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

// One container's state, for the live display and the final report.
struct slot {
    std::shared_ptr<anweddol::container_instance> container;
    anweddol::provisioning_phase phase = anweddol::provisioning_phase::waiting_for_boot_slot;
    std::chrono::steady_clock::duration elapsed{};
    std::optional<anweddol::provisioned_container> result;
    std::string error;
    anweddol::diagnostics diagnostics; ///< libvirt's or libssh's own words on a failure
    bool done = false;
    bool waiting = false; ///< a take not started yet: the pool is warming up
    std::string host;     ///< with --host: where it was placed, once known
    asio::cancellation_signal cancel;

    // Its UUID; a take from a pool has none until a container is handed to it.
    std::string name(std::size_t index) const {
        return container ? container->get_uuid() : "take " + std::to_string(index + 1);
    }
};

std::string pool_line(const anweddol::container_pool_stats& p) {
    return "pool: " + std::to_string(p.ready) + " of " + std::to_string(p.target) + " ready, " +
           std::to_string(p.booting) + " booting, " + std::to_string(p.waiting) +
           " takes waiting (" + std::to_string(p.boots_started) + " boots, " +
           std::to_string(p.boots_failed) + " failed)";
}

// Live progress: redrawn in place on a terminal, one line per event elsewhere.
class progress_display {
public:
    progress_display(bool terminal, std::ostream& out)
        : terminal_(terminal)
        , out_(out) {}

    void event(const slot& s, std::size_t index) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(s.elapsed), 1) << " s] container " << index + 1 << " "
                 << s.name(index) << ": " << anweddol::to_string(s.phase) << "\n"
                 << std::flush;
    }

    void pool_event(const anweddol::container_pool_event& e,
                    std::chrono::steady_clock::duration elapsed) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(elapsed), 1) << " s] pool: " << e.uuid << " "
                 << anweddol::to_string(e.type) << (e.message.empty() ? "" : ": " + e.message)
                 << "\n"
                 << std::flush;
    }

    void host_event(const anweddol::hypervisor_pool_event& e,
                    std::chrono::steady_clock::duration elapsed) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(elapsed), 1) << " s] host " << e.host << ": "
                 << anweddol::to_string(e.type)
                 << (e.message.empty() ? e.uuid.empty() ? "" : " " + e.uuid : ": " + e.message)
                 << "\n"
                 << std::flush;
    }

    void redraw(const std::vector<std::unique_ptr<slot>>& slots,
                std::chrono::steady_clock::time_point began,
                const anweddol::container_pool* pool = nullptr) {
        if (!terminal_)
            return;
        if (drawn_ > 0)
            out_ << "\x1b[" << drawn_ << "F"; // back to the first line drawn
        const double now = seconds(std::chrono::steady_clock::now() - began);
        if (pool)
            out_ << "\x1b[2K  " << pool_line(pool->get_stats()) << "\n";
        for (std::size_t i = 0; i < slots.size(); ++i) {
            const auto& s = slots[i];
            const std::string state{s->done      ? (s->error.empty() ? "ready" : "FAILED")
                                    : s->waiting ? "not yet"
                                    : pool       ? "taking"
                                                 : anweddol::to_string(s->phase)};
            out_ << "\x1b[2K  " << pad(s->name(i), 36) << "  " << pad(state, 10) << " "
                 << fixed(s->done ? seconds(s->elapsed) : now, 1) << " s\n";
        }
        out_ << std::flush;
        drawn_ = slots.size() + (pool ? 1 : 0);
    }

private:
    static std::string fixed(double value, int decimals) {
        char text[32];
        std::snprintf(text, sizeof text, "%.*f", decimals, value);
        return text;
    }
    static std::string pad(std::string text, std::size_t width) {
        text.resize(std::max(width, text.size()), ' ');
        return text;
    }

    bool terminal_;
    std::ostream& out_;
    std::size_t drawn_ = 0;
};

// How the guest's SSH host key was checked, in a few words.
std::string host_key_check(const anweddol::provisioned_container& r) {
    switch (r.host_keys) {
    case anweddol::host_key_policy::pinned_fingerprints:
        return "pinned from the console (" + std::to_string(r.host_key_fingerprints.size()) +
               " keys)";
    case anweddol::host_key_policy::accept_new:
        return "accepted on first use (the console printed none)";
    default:
        return "checked as the shell options say";
    }
}

// What a failed container's guest wrote on its console: the last lines.
void print_console(const slot& failed, std::size_t index, std::ostream& out) {
    const std::string& console = failed.diagnostics.guest_console();
    if (console.empty())
        return;
    std::vector<std::string_view> lines;
    for (std::size_t at = 0; at < console.size();) {
        const auto end = std::min(console.find('\n', at), console.size());
        lines.emplace_back(console.data() + at, end - at);
        at = end + 1;
    }
    constexpr std::size_t shown = 25;
    const std::size_t first = lines.size() > shown ? lines.size() - shown : 0;
    out << "container " << index + 1 << " " << failed.name(index)
        << ": the last lines of its console:\n";
    for (std::size_t i = first; i < lines.size(); ++i)
        out << "  | " << lines[i] << "\n";
    out << std::flush;
}

// The ssh -J argument that reaches a container through its host's jump.
std::string jump_argument(const anweddol::ssh_jump& jump) {
    const auto& o = jump.get_options();
    if (o.port == 22)
        return o.username + "@" + o.host;
    return jump.name(); // user@host:port, an IPv6 host in brackets
}

void print_table(const std::vector<std::unique_ptr<slot>>& slots, const settings& s) {
    // With --host, a host column after the uuid.
    int host_width = 0;
    if (!s.hosts.empty()) {
        host_width = 4;
        for (const auto& h : s.hosts)
            host_width = std::max(host_width, static_cast<int>(h.name.size()));
    }
    const auto host_cell = [host_width](std::string host) {
        if (!host_width)
            return std::string();
        if (host.empty())
            host = "-";
        host.resize(static_cast<std::size_t>(host_width) + 2, ' ');
        return host;
    };
    std::printf("\n%-36s  %s%-15s  %5s  %-10s  %-12s  %7s %8s %8s %7s %7s %7s\n", "uuid",
                host_cell(host_width ? "host" : "").c_str(), "ip", "port", "username", "password",
                "define", "boot->ip", "ip->ssh", "admin", "verify", "total");
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const auto& slot = slots[i];
        if (!slot->result) {
            std::printf("%-36s  %sfailed: %s\n", slot->name(i).c_str(),
                        host_cell(slot->host).c_str(), slot->error.c_str());
            continue;
        }
        const auto& r = *slot->result;
        const auto& t = r.timings;
        // Not copied: a copy would be one more to wipe.
        const char* password = s.show_passwords ? r.password.c_str() : "************";
        std::printf(
            "%-36s  %s%-15s  %5u  %-10s  %-12s  %6.1fs %7.1fs %7.1fs %6.1fs %6.1fs %6.1fs\n",
            slot->name(i).c_str(), host_cell(r.host).c_str(), r.ip.c_str(), r.port,
            r.username.c_str(), password, seconds(t.define), seconds(t.boot_to_ip),
            seconds(t.ip_to_ssh), seconds(t.administration), seconds(t.verification),
            seconds(t.total));
    }
    // Behind a jump, the guest's address means nothing from the client's
    // side: say how to get there.
    bool header = false;
    for (const auto& slot : slots) {
        if (!slot->result || !slot->result->jump)
            continue;
        if (!header)
            std::printf("\nbehind their host's SSH jump, reach them with:\n");
        header = true;
        const auto& r = *slot->result;
        std::printf("  ssh -J %s -p %u %s@%s\n", jump_argument(*r.jump).c_str(), r.port,
                    r.username.c_str(), r.ip.c_str());
    }
}

// Each host's state when provisioning began or ends.
std::string host_line(const anweddol::hypervisor_host_status& h) {
    return "host " + h.name + " (" + h.uri + "): " + std::string(anweddol::to_string(h.state)) +
           (h.last_error.empty() ? "" : ": " + h.last_error);
}

// The one-line summary: containers handed out per host.
void print_host_summary(const std::vector<std::unique_ptr<slot>>& slots,
                        const anweddol::hypervisor_pool& hypervisors) {
    std::string line = "per host:";
    const auto hosts = hypervisors.get_hosts();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const auto& h = hosts[i];
        std::size_t ready = 0;
        std::size_t failed = 0;
        for (const auto& slot : slots)
            if (slot->host == h.name)
                ++(slot->result ? ready : failed);
        line += std::string(i ? ";" : "") + " " + h.name + " " + std::to_string(ready) +
                (ready == 1 ? " container" : " containers") +
                (failed ? " (" + std::to_string(failed) + " failed)" : "") + ", " +
                std::to_string(h.placements) + (h.placements == 1 ? " boot" : " boots") +
                " placed, " + std::string(anweddol::to_string(h.state));
    }
    std::printf("%s\n", line.c_str());
}

// The JSON report's memory: with --show-passwords the report holds the
// passwords, so every block it frees is wiped first.
class wiping_json_resource final : public boost::json::memory_resource {
    void* do_allocate(std::size_t size, std::size_t alignment) override {
        return ::operator new(size, std::align_val_t(alignment));
    }
    void do_deallocate(void* block, std::size_t size, std::size_t alignment) override {
        anweddol::wipe(std::span(static_cast<std::byte*>(block), size));
        ::operator delete(block, size, std::align_val_t(alignment));
    }
    bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
        return this == &other;
    }
};

void print_json(const std::vector<std::unique_ptr<slot>>& slots, const settings& s, double makespan,
                const anweddol::hypervisor_pool* hypervisors) {
    wiping_json_resource memory;
    const boost::json::storage_ptr storage(&memory);
    boost::json::array containers(storage);
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const auto& slot = slots[i];
        boost::json::object entry(storage);
        entry["uuid"] = slot->name(i);
        if (hypervisors && !slot->host.empty())
            entry["host"] = slot->host;
        if (slot->result) {
            const auto& r = *slot->result;
            entry["ip"] = r.ip;
            entry["port"] = r.port;
            entry["username"] = r.username;
            entry["password"] = s.show_passwords ? std::string_view(r.password) : "************";
            entry["host_keys"] = host_key_check(r);
            if (r.jump)
                entry["jump"] = r.jump->name();
            if (s.pool)
                entry["from_pool"] = r.from_pool;
            entry["timings"] = {{"queued", seconds(r.timings.queued)},
                                {"define", seconds(r.timings.define)},
                                {"boot_to_ip", seconds(r.timings.boot_to_ip)},
                                {"ip_to_ssh", seconds(r.timings.ip_to_ssh)},
                                {"administration", seconds(r.timings.administration)},
                                {"verification", seconds(r.timings.verification)},
                                {"pool_wait", seconds(r.timings.pool_wait)},
                                {"total", seconds(r.timings.total)}};
        } else {
            entry["error"] = slot->error;
        }
        containers.push_back(std::move(entry));
    }
    boost::json::object report(
        {{"containers", std::move(containers)}, {"makespan", makespan}, {"kept", s.keep}}, storage);
    if (hypervisors) {
        boost::json::array hosts;
        for (const auto& h : hypervisors->get_hosts()) {
            std::size_t ready = 0;
            for (const auto& slot : slots)
                ready += slot->result && slot->host == h.name;
            boost::json::object host{{"name", h.name},
                                     {"uri", h.uri},
                                     {"state", anweddol::to_string(h.state)},
                                     {"containers", ready},
                                     {"placements", h.placements}};
            if (!h.last_error.empty())
                host["last_error"] = h.last_error;
            hosts.push_back(std::move(host));
        }
        report["hosts"] = std::move(hosts);
    }
    std::string text = boost::json::serialize(report);
    std::cout << text << "\n";
    anweddol::wipe(text);
}

// What the report says besides each container's own line.
struct run_outcome {
    double makespan = 0; ///< seconds, from the first take with a pool
    bool kept = false;   ///< left running: --keep, and not interrupted
    const anweddol::container_pool* pool = nullptr;
    double warm_up = 0; ///< seconds the pool took to fill
    const anweddol::hypervisor_pool* hypervisors = nullptr;
};

// The report as text: the table, then a few lines on the whole run.
void print_text_report(const std::vector<std::unique_ptr<slot>>& slots, const settings& s,
                       const run_outcome& outcome) {
    print_table(slots, s);
    const auto administered = static_cast<std::size_t>(
        std::count_if(slots.begin(), slots.end(), [](const auto& x) { return x->result; }));
    std::printf("\n%zu of %zu administered in %.1f s (makespan%s)%s\n", administered, slots.size(),
                outcome.makespan, outcome.pool ? ", from the first take" : "",
                outcome.kept ? "; kept running" : "; destroying them");
    if (outcome.pool) {
        const auto stats = outcome.pool->get_stats();
        std::printf("the pool of %u warmed up in %.1f s; %llu handed out at once, %llu "
                    "after waiting for a boot\n",
                    *s.pool, outcome.warm_up, static_cast<unsigned long long>(stats.taken_warm),
                    static_cast<unsigned long long>(stats.taken_after_wait));
    }
    for (const auto& slot : slots)
        if (slot->result) {
            std::printf("host keys %s\n", host_key_check(*slot->result).c_str());
            break;
        }
    for (const auto& slot : slots)
        if (slot->container && !slot->container->get_domain_type().empty()) {
            std::printf("domain type %s (%s)\n", slot->container->get_domain_type().c_str(),
                        slot->container->get_domain_type_choice().c_str());
            break;
        }
    if (outcome.hypervisors)
        print_host_summary(slots, *outcome.hypervisors);
}

// One run: the containers provisioned at once (or taken from the pool),
// shown live, until each is ready or failed; then the report, and the
// destroys. The members are declared in the order of their lifetimes: the
// hosts outlive the containers and the pool.
class provisioning_run {
public:
    explicit provisioning_run(const settings& s);

    // With --host: waits up to 30 s for every host to connect, prints each
    // one's state, and says whether one is up.
    bool connect_hosts();
    // Starts every provisioning (or the pool, and its takes once it is full).
    void start();
    // Returns once every container is destroyed (or kept): the exit status.
    int wait();

private:
    void limit_boots();
    anweddol::hypervisor_pool_options hypervisor_options();
    anweddol::provisioning_options
    provisioning(std::function<void(const anweddol::provisioning_event&)> on_progress);
    void make_slots();
    void start_pool();
    void provision_each();
    std::function<void(boost::system::error_code, anweddol::provisioned_container)>
    completion(std::size_t i);
    void on_done(std::size_t i, boost::system::error_code error,
                 anweddol::provisioned_container& result);
    void take_all();
    void interrupt();
    void tick();
    void finish();
    void release_containers();
    void shutdown_hosts();

    const settings& s_;
    asio::io_context context_{1};
    anweddol::virtualization_interface interface_{context_.get_executor()};
    const bool terminal_;
    std::ostream& out_; // the live display's: stderr with --json
    progress_display display_;
    std::chrono::steady_clock::time_point began_ = std::chrono::steady_clock::now();
    // With --host: the hosts, and where each container was placed (for
    // those that fail, which have no provisioned_container to say it).
    std::optional<anweddol::hypervisor_pool> hypervisors_;
    std::map<std::string, std::string> placed_on_; // uuid -> host
    anweddol::container_instance::options container_options_;
    std::vector<std::unique_ptr<slot>> slots_;
    std::optional<anweddol::container_pool> pool_;
    std::optional<double> warm_up_; // seconds the pool took to fill
    std::size_t finished_ = 0;
    bool interrupted_ = false;
    asio::steady_timer ticker_{context_};
    std::optional<asio::signal_set> signals_; // once provisioning starts
};

provisioning_run::provisioning_run(const settings& s)
    : s_(s)
    , terminal_(!s.json && ::isatty(STDOUT_FILENO))
    , out_(s.json ? std::cerr : std::cout)
    , display_(terminal_, out_) {
    limit_boots();
    // Kept containers must outlive this process: not tied to its
    // connection. All others die with it, even on SIGKILL.
    container_options_.autodestroy = !s.keep;
    container_options_.reserve_address = !s.dynamic_address;
    if (!s.owner.empty())
        container_options_.owner = s.owner;
}

void provisioning_run::limit_boots() {
    auto& admission = anweddol::runtime::of(context_.get_executor()).admission();
    if (s_.max_boots == "unbounded")
        admission.set_unbounded();
    else if (s_.max_boots != "auto")
        admission.set_limit(std::stoul(s_.max_boots));
}

anweddol::hypervisor_pool_options provisioning_run::hypervisor_options() {
    anweddol::hypervisor_pool_options options;
    for (const auto& h : s_.hosts) {
        anweddol::hypervisor_host_options host;
        host.name = h.name;
        host.uri = h.uri;
        if (s_.max_boots != "auto")
            host.max_cpu_heavy_boots = std::stoul(s_.max_boots);
        if (h.jump_address) {
            anweddol::ssh_jump_options jump;
            jump.host = *h.jump_address;
            jump.port = h.jump_port;
            jump.username = s_.jump_user;
            jump.private_key_file = s_.jump_key;
            jump.host_keys = anweddol::host_key_policy::known_hosts;
            jump.known_hosts_file = s_.known_hosts;
            host.jump = std::move(jump);
        }
        options.hosts.push_back(std::move(host));
    }
    options.on_event = [this](const anweddol::hypervisor_pool_event& e) {
        if (e.type == anweddol::hypervisor_pool_event_type::placed)
            placed_on_[e.uuid] = e.host;
        display_.host_event(e, std::chrono::steady_clock::now() - began_);
    };
    return options;
}

bool provisioning_run::connect_hosts() {
    if (s_.hosts.empty())
        return true;
    try {
        hypervisors_.emplace(context_.get_executor(), hypervisor_options());
    } catch (const anweddol::error_with_diagnostics& e) {
        // A key file that is no OpenSSH private key, and the like.
        if (e.code() != anweddol::errc::invalid_argument)
            throw;
        bad_usage(e.get_diagnostics().full_message());
    }
    // Every host up or down (not still connecting), for up to 30 s.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    const auto connecting = [&] {
        const auto hosts = hypervisors_->get_hosts();
        return std::any_of(hosts.begin(), hosts.end(), [](const auto& h) {
            return h.state == anweddol::hypervisor_host_state::connecting;
        });
    };
    while (connecting() && std::chrono::steady_clock::now() < deadline) {
        context_.run_for(100ms);
        if (context_.stopped())
            context_.restart();
    }
    const auto hosts = hypervisors_->get_hosts();
    if (!s_.json)
        for (const auto& h : hosts)
            std::cerr << host_line(h) << "\n";
    if (std::any_of(hosts.begin(), hosts.end(),
                    [](const auto& h) { return h.state == anweddol::hypervisor_host_state::up; }))
        return true;
    std::cerr << "anweddol-provision: no host is up (" << hosts.size()
              << " given), nothing was provisioned";
    if (s_.json) // the lines above were not printed
        for (const auto& h : hosts)
            std::cerr << "\n  " << host_line(h);
    std::cerr << "\n";
    return false;
}

// Every container's provisioning options.
anweddol::provisioning_options provisioning_run::provisioning(
    std::function<void(const anweddol::provisioning_event&)> on_progress) {
    anweddol::provisioning_options options;
    options.driver_uri = s_.uri;
    options.hypervisors = hypervisors_ ? &*hypervisors_ : nullptr;
    options.domain_type = s_.domain_type; // empty: kvm where the host has it
    options.client_port = s_.client_port;
    options.on_progress = std::move(on_progress);
    return options;
}

void provisioning_run::start() {
    make_slots();
    began_ = std::chrono::steady_clock::now();
    if (s_.pool)
        start_pool();
    signals_.emplace(context_, SIGINT, SIGTERM);
    if (!pool_)
        provision_each();
    // Ctrl-C: cancel every provisioning; each destroys its domain as it ends.
    signals_->async_wait([this](boost::system::error_code ec, int) {
        if (!ec)
            interrupt();
    });
    tick();
}

void provisioning_run::make_slots() {
    for (unsigned i = 0; i < s_.count; ++i) {
        slots_.push_back(std::make_unique<slot>());
        if (s_.pool)
            continue; // the pool makes the containers
        auto container = interface_.create_container(s_.iso, false);
        container->set_memory(s_.memory);
        container->set_vcpus(s_.vcpus);
        container->set_options(container_options_);
        slots_.back()->container = container;
    }
}

void provisioning_run::start_pool() {
    anweddol::container_pool_options options;
    options.size = *s_.pool;
    options.iso_path = s_.iso;
    options.memory = s_.memory;
    options.vcpus = s_.vcpus;
    options.container = container_options_;
    options.provisioning = provisioning(nullptr);
    options.on_event = [this](const anweddol::container_pool_event& e) {
        display_.pool_event(e, std::chrono::steady_clock::now() - began_);
    };
    pool_.emplace(context_.get_executor(), std::move(options));
    for (auto& slot : slots_)
        slot->waiting = true;
}

void provisioning_run::provision_each() {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        slot& current = *slots_[i];
        auto options = provisioning([this, &current, i](const anweddol::provisioning_event& e) {
            current.phase = e.phase;
            current.elapsed = e.elapsed;
            display_.event(current, i);
        });
        // A plain callback, with the slot that Ctrl-C cancels through.
        anweddol::provision(current.container, std::move(options), current.diagnostics,
                            asio::bind_cancellation_slot(current.cancel.slot(), completion(i)));
    }
}

// What ends one provisioning or take.
std::function<void(boost::system::error_code, anweddol::provisioned_container)>
provisioning_run::completion(std::size_t i) {
    return [this, i](boost::system::error_code error, anweddol::provisioned_container result) {
        on_done(i, error, result);
    };
}

void provisioning_run::on_done(std::size_t i, boost::system::error_code error,
                               anweddol::provisioned_container& result) {
    slot& done = *slots_[i];
    done.done = true;
    done.elapsed = std::chrono::steady_clock::now() - began_;
    if (error) {
        done.error = done.diagnostics.full_message();
        done.error += (done.error.empty() ? "" : ": ") + error.message();
        if (!terminal_)
            out_ << "container " << i + 1 << " failed: " << done.error << "\n";
    } else {
        done.container = result.container;
        done.host = result.host;
        done.result = std::move(result);
        // A short password stays behind in the moved-from string.
        anweddol::wipe(result.password);
    }
    if (done.host.empty() && done.container) {
        const auto placed = placed_on_.find(done.container->get_uuid());
        if (placed != placed_on_.end())
            done.host = placed->second;
    }
    if (++finished_ == slots_.size())
        finish();
}

// With a pool: every take at once, once it is full (or once a boot failed:
// the takes then get the failures the pool meets). The makespan counts
// from there.
void provisioning_run::take_all() {
    warm_up_ = seconds(std::chrono::steady_clock::now() - began_);
    began_ = std::chrono::steady_clock::now();
    if (!terminal_)
        out_ << "the pool is warm after " << *warm_up_ << " s: taking " << slots_.size() << "\n";
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        slots_[i]->waiting = false;
        pool_->take(slots_[i]->diagnostics,
                    asio::bind_cancellation_slot(slots_[i]->cancel.slot(), completion(i)));
    }
}

void provisioning_run::interrupt() {
    interrupted_ = true;
    out_ << "\ninterrupted: destroying every container\n";
    if (pool_ && !warm_up_) {
        // Nothing taken yet: the pool's own containers are all there is.
        ticker_.cancel();
        pool_->shutdown([this](boost::system::error_code) { shutdown_hosts(); });
        return;
    }
    for (auto& slot : slots_)
        slot->cancel.emit(asio::cancellation_type::terminal);
}

// The live display's redraw, and the pool's takes once it is full.
void provisioning_run::tick() {
    if (pool_ && !warm_up_ && !interrupted_) {
        const auto stats = pool_->get_stats();
        if (stats.ready >= stats.target || stats.boots_failed > 0)
            take_all();
    }
    display_.redraw(slots_, began_, pool_ ? &*pool_ : nullptr);
    ticker_.expires_after(200ms);
    ticker_.async_wait([this](boost::system::error_code ec) {
        if (!ec)
            tick();
    });
}

// Once every provisioning ended: the report, then the destroys. The
// io_context then runs out of work by itself: the last container gone
// closes libvirt's connection.
void provisioning_run::finish() {
    ticker_.cancel();   // the table below must not be redrawn over
    signals_->cancel(); // from here on, Ctrl-C waits for the destroys
    display_.redraw(slots_, began_, pool_ ? &*pool_ : nullptr);
    run_outcome outcome;
    outcome.makespan = seconds(std::chrono::steady_clock::now() - began_);
    outcome.kept = s_.keep && !interrupted_;
    outcome.pool = pool_ ? &*pool_ : nullptr;
    outcome.warm_up = warm_up_.value_or(0.0);
    outcome.hypervisors = hypervisors_ ? &*hypervisors_ : nullptr;
    if (s_.json)
        print_json(slots_, s_, outcome.makespan, outcome.hypervisors);
    else
        print_text_report(slots_, s_, outcome);
    for (std::size_t i = 0; i < slots_.size(); ++i)
        if (!slots_[i]->result)
            print_console(*slots_[i], i, out_);
    release_containers();
}

// Destroys what runs unless asked to keep it (never after Ctrl-C), and the
// pool's spare ones. The hosts' connections go last: the destroys need them.
void provisioning_run::release_containers() {
    auto pending = std::make_shared<std::size_t>(1);
    const auto release = [this, pending] {
        if (--*pending == 0)
            shutdown_hosts();
    };
    for (auto& slot : slots_) {
        if (!slot->container)
            continue;
        if (s_.keep && !interrupted_)
            slot->container->set_domain_descriptor(nullptr); // left running, forgotten
        else if (slot->container->is_domain_running()) {
            ++*pending;
            asio::co_spawn(context_, slot->container->stop_domain(true),
                           [release](std::exception_ptr) { release(); });
        }
    }
    if (pool_) {
        ++*pending;
        pool_->shutdown([release](boost::system::error_code) { release(); });
    }
    release();
}

// With --host, once nothing needs them: closes the hosts' connections and
// jumps, whose reconnection timers would keep the io_context busy.
void provisioning_run::shutdown_hosts() {
    if (hypervisors_)
        hypervisors_->shutdown(asio::detached);
}

int provisioning_run::wait() {
    context_.run(); // returns once every container is destroyed (or kept)
    for (auto& slot : slots_)
        if (slot->result)
            anweddol::wipe(slot->result->password);
    const bool all_ready = std::all_of(slots_.begin(), slots_.end(),
                                       [](const auto& x) { return x->result.has_value(); });
    return interrupted_ ? 130 : all_ready ? 0 : 1;
}

} // namespace

// The set-up (parse), the run, and the report (finish, at the run's end).
int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    provisioning_run run(s);
    if (!run.connect_hosts())
        return 1;
    run.start();
    return run.wait();
} catch (const std::exception& e) {
    std::cerr << "anweddol-provision: " << e.what() << "\n";
    return 1;
}
