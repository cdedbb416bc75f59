// The container server's command line: what it serves, its capacity, the
// bounds it puts on clients, and who may use it.
#ifndef CONTAINER_SERVER_SETTINGS_HPP
#define CONTAINER_SERVER_SETTINGS_HPP

#include <anweddol/container_capacity.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace example {

inline constexpr std::string_view usage =
    R"(usage: container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE] [options]

An HTTP/JSON container server on 127.0.0.1 (see the top of its source),
with its metrics for Prometheus on GET /metrics.

  --port PORT             where it listens (default 8080; 0: any free port)
  --uri URI               libvirt driver URI (default qemu:///system)
  --domain-type TYPE      kvm or qemu (default: kvm where the host has it)
  --pool K                keep K containers booted and waiting (default 0: boot one per
                          request); a POST for 512 MiB and 1 vCPU takes one from the pool,
                          others boot their own
who may use it (one of --token-file or --no-auth is required):
  --token-file FILE       the clients: one per line, "NAME SHA256", SHA256 being the hex
                          SHA-256 of the client's bearer token (printf %s "$token" |
                          sha256sum); '#' starts a comment. Every request needs
                          "Authorization: Bearer TOKEN" (401 otherwise); a client lists and
                          deletes only the containers it created
  --no-auth               no bearer tokens: anyone who reaches the port may create
                          containers; deleting one still needs its Owner-Token
  --allowed-host HOST     a Host header the server answers to (421 otherwise); may be
                          repeated; 127.0.0.1:PORT and localhost:PORT always are
  --allowed-origin ORIGIN a browser Origin allowed (403 for any other); may be repeated;
                          none by default
  --max-lifetime SECONDS  each container is destroyed this long after it is handed out
                          (default 3600)
capacity, beyond which POST gets 503 with Retry-After:
  --max-containers N      containers at once, booting, handed out or pooled (default 4;
                          0: no limit); with --pool K, clients get N - K of them
  --memory-headroom MIB   host memory kept free beyond the containers' (default 512;
                          with --pool K, K x 512 MiB more, for the pool's refills)
  --no-memory-check       do not ask the host's free memory
  --retry-after SECONDS   the Retry-After of a 503 (default 20: about one boot)
request bounds:
  --max-memory MIB        the most memory a container may ask (default 2048)
  --max-vcpus N           the most vCPUs a container may ask (default: the CPU count)
  --max-body BYTES        the largest request body (default 1024)
  --header-timeout SEC    from a connection's accept (and from each answer on) to the end
                          of its next request, or it is closed (default 10)
  --max-connections N     open connections at once (default 256): beyond them a new one
                          closes the oldest connection still waiting for its request, or
                          is answered 503 and closed when every one is busy
  --help                  this text
)";

struct server_settings {
    std::string iso;
    std::uint16_t port = 8080;
    std::string uri = "qemu:///system";
    std::string domain_type; // empty: kvm where the host has it
    anweddol::container_capacity::options capacity;
    std::chrono::seconds retry_after{20};
    unsigned max_memory_mib = 2048;
    unsigned max_vcpus = std::max(1u, std::thread::hardware_concurrency());
    std::size_t max_body_bytes = 1024;
    std::chrono::seconds header_timeout{10};
    std::size_t max_connections = 256;
    std::size_t pool = 0;   // K containers kept booted; 0: no pool
    std::string token_file; // empty with no_auth only
    bool no_auth = false;
    std::vector<std::string> allowed_hosts; // besides 127.0.0.1:PORT and localhost:PORT
    std::vector<std::string> allowed_origins;
    std::chrono::seconds max_lifetime{3600};
};

// The containers a pool keeps, and the only ones a POST takes from it.
inline constexpr unsigned pool_memory_mib = 512;
inline constexpr unsigned pool_vcpus = 1;

[[noreturn]] inline void bad_usage(const std::string& why) {
    std::cerr << "container_server: " << why << "\n\n" << usage;
    std::exit(2);
}

inline std::uint64_t number(std::string_view option, std::string_view value, std::uint64_t low,
                            std::uint64_t high) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < low || n > high)
        bad_usage(std::string(option) + " needs a whole number from " + std::to_string(low) +
                  " to " + std::to_string(high) + ", not '" + std::string(value) + "'");
    return n;
}

// Host and Origin are compared in lower case, as DNS names are.
inline std::string lower_case(std::string_view s) {
    std::string lower(s);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lower;
}

// The options that take a value; false: `arg` is none of them.
inline bool parse_option(server_settings& s, std::string_view arg, std::string_view value) {
    if (arg == "--port")
        s.port = static_cast<std::uint16_t>(number(arg, value, 0, 65535));
    else if (arg == "--uri")
        s.uri = value;
    else if (arg == "--domain-type")
        s.domain_type = value;
    else if (arg == "--max-containers")
        s.capacity.max_containers = number(arg, value, 0, 1 << 20);
    else if (arg == "--memory-headroom")
        s.capacity.memory_headroom_mib = number(arg, value, 0, 1 << 30);
    else if (arg == "--retry-after")
        s.retry_after = std::chrono::seconds(number(arg, value, 1, 86400));
    else if (arg == "--max-memory")
        s.max_memory_mib = static_cast<unsigned>(number(arg, value, 512, 1 << 24));
    else if (arg == "--max-vcpus")
        s.max_vcpus = static_cast<unsigned>(number(arg, value, 1, 4096));
    else if (arg == "--max-body")
        s.max_body_bytes = number(arg, value, 2, 1 << 20);
    else if (arg == "--header-timeout")
        s.header_timeout = std::chrono::seconds(number(arg, value, 1, 3600));
    else if (arg == "--max-connections")
        s.max_connections = number(arg, value, 1, 1 << 20);
    else if (arg == "--pool")
        s.pool = number(arg, value, 0, 1024);
    else if (arg == "--token-file")
        s.token_file = value;
    else if (arg == "--allowed-host")
        s.allowed_hosts.push_back(lower_case(value));
    else if (arg == "--allowed-origin")
        s.allowed_origins.push_back(lower_case(value));
    else if (arg == "--max-lifetime")
        s.max_lifetime = std::chrono::seconds(number(arg, value, 1, 30 * 86400));
    else
        return false;
    return true;
}

// The pool's containers count against --max-containers: the capacity grants
// clients the rest. It does not see the pool's refills boot, so their memory
// is kept free on top of the headroom.
inline void check_settings(server_settings& s) {
    if (s.iso.empty())
        bad_usage("the ISO is required");
    if (s.token_file.empty() == !s.no_auth)
        bad_usage(s.no_auth ? "--token-file and --no-auth exclude each other"
                            : "say who may use the server: --token-file FILE (bearer tokens), "
                              "or --no-auth to let anyone who reaches the port in");
    s.capacity.driver_uri = s.uri;
    if (s.pool) {
        if (s.capacity.max_containers && s.capacity.max_containers <= s.pool)
            bad_usage("--max-containers counts the pool's containers too: it must be more "
                      "than --pool (" +
                      std::to_string(s.pool) + "), or 0 for no limit");
        if (s.capacity.max_containers)
            s.capacity.max_containers -= s.pool;
        s.capacity.memory_headroom_mib += s.pool * pool_memory_mib;
    }
}

inline server_settings parse_command_line(int argc, char** argv) {
    server_settings s;
    s.capacity.max_containers = 4;
    int positional = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help") {
            std::cout << usage;
            std::exit(0);
        }
        if (arg == "--no-memory-check") {
            s.capacity.check_memory = false;
            continue;
        }
        if (arg == "--no-auth") {
            s.no_auth = true;
            continue;
        }
        if (!arg.starts_with("--")) {
            switch (positional++) {
            case 0:
                s.iso = arg;
                break;
            case 1:
                s.port = static_cast<std::uint16_t>(number("PORT", arg, 0, 65535));
                break;
            case 2:
                s.uri = arg;
                break;
            case 3:
                s.domain_type = arg;
                break;
            default:
                bad_usage("one argument too many: " + std::string(arg));
            }
            continue;
        }
        if (i + 1 == argc)
            bad_usage(std::string(arg) + " needs a value");
        if (!parse_option(s, arg, argv[++i]))
            bad_usage("unknown option " + std::string(arg));
    }
    check_settings(s);
    return s;
}

} // namespace example

#endif
