// anweddol-provision's set-up: its command line, read and checked.
#include "provision_settings.hpp"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <string_view>
#include <utility>

#include <sys/stat.h>
#include <unistd.h>

namespace provision_tool {
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

} // namespace

[[noreturn]] void bad_usage(const std::string& why) {
    std::cerr << "anweddol-provision: " << why << "\n\n" << usage;
    std::exit(2);
}

namespace {

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

} // namespace

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

} // namespace provision_tool
