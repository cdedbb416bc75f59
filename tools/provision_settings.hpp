// anweddol-provision's set-up: its command line, read and checked.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace provision_tool {

// One --host, with its --jump if any.
struct host_setting {
    std::string name;
    std::string uri;
    std::optional<std::string> jump_address;
    std::uint16_t jump_port = 22;
};

// What the command line asks for.
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

// The command line read and checked, or what is wrong with it on standard
// error and exit status 2. --help prints the usage and exits with 0.
settings parse(int argc, char** argv);

// A usage error: why, then the usage, on standard error; exit status 2.
[[noreturn]] void bad_usage(const std::string& why);

} // namespace provision_tool
