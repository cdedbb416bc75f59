// The two-host sandbox as scripts/sandbox.sh exec describes it in the
// environment: each host's libvirt URI and SSH jump. For the two-host tests
// and benchmarks/hosts alike.
#ifndef ANWEDDOL_TESTS_HOSTS_TWO_HOSTS_HPP
#define ANWEDDOL_TESTS_HOSTS_TWO_HOSTS_HPP

#include <anweddol/hypervisor_pool.hpp>

#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace anweddol::test {

inline std::string environment(const char* name) {
    const char* value = std::getenv(name);
    if (!value || !*value)
        throw std::runtime_error(std::string(name) +
                                 " is not set: run with scripts/sandbox.sh exec after "
                                 "scripts/sandbox.sh up --hosts 2");
    return value;
}

// "h1=a h2=b" as {h1: a, h2: b}.
inline std::map<std::string, std::string> pairs(const std::string& text) {
    std::map<std::string, std::string> found;
    std::istringstream words(text);
    for (std::string word; words >> word;)
        if (const auto eq = word.find('='); eq != std::string::npos)
            found[word.substr(0, eq)] = word.substr(eq + 1);
    return found;
}

/// The sandbox's hosts, in name order, each with its jump (key
/// authentication, host key checked against the sandbox's known_hosts).
inline std::vector<hypervisor_host_options> sandbox_hosts() {
    const auto uris = pairs(environment("ANWEDDOL_SANDBOX_HOSTS"));
    const auto jumps = pairs(environment("ANWEDDOL_SANDBOX_JUMP_ADDRESSES"));
    std::vector<hypervisor_host_options> hosts;
    for (const auto& [name, uri] : uris) {
        hypervisor_host_options host;
        host.name = name;
        host.uri = uri;
        ssh_jump_options jump;
        jump.host = jumps.at(name);
        jump.username = environment("ANWEDDOL_SANDBOX_JUMP_USER");
        jump.private_key_file = environment("ANWEDDOL_SANDBOX_JUMP_KEY");
        jump.host_keys = host_key_policy::known_hosts;
        jump.known_hosts_file = environment("ANWEDDOL_SANDBOX_KNOWN_HOSTS");
        host.jump = jump;
        hosts.push_back(std::move(host));
    }
    return hosts;
}

} // namespace anweddol::test

#endif
