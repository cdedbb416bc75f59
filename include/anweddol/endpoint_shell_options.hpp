//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_ENDPOINT_SHELL_OPTIONS_HPP
#define ANWEDDOL_ENDPOINT_SHELL_OPTIONS_HPP

// How an endpoint shell connects and checks its server.

#include <anweddol/detail/config.hpp>
#include <anweddol/detail/ssh/host_key_policy.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace anweddol {

class ssh_jump;

// host_key_policy, how open_shell() checks the container's SSH host key, is
// defined in detail/ssh/host_key_policy.hpp (included above), where the
// detail code that applies it can include it.

/// How administrate_container() gives the client's password to the
/// container's setup script.
enum class password_delivery {
    /// As its second argument, the reference's form, which every image's
    /// script takes. While the script runs, every process of the endpoint
    /// user (and, without /proc's hidepid, of every user) can read it in the
    /// command line of the shell that runs sudo.
    argument,
    /// On its standard input (`--password-stdin USERNAME PORT`): in no
    /// command line. For images whose script takes it; such a guest
    /// announces `setup-password-stdin` on its console, and provision()
    /// then chooses it by itself.
    standard_input,
};

/// How an endpoint shell connects. The defaults suit a container that has
/// just got its address and is still starting its SSH server.
struct endpoint_shell_options {
    /// open_shell() retries until then: a booting container refuses
    /// connections at first, and an open port is not yet a working server.
    std::chrono::steady_clock::duration ready_timeout = std::chrono::seconds(60);
    /// The most one attempt (TCP connect, handshake, authentication) may take.
    std::chrono::steady_clock::duration attempt_timeout = std::chrono::seconds(10);
    host_key_policy host_keys = host_key_policy::accept_new;
    std::string known_hosts_file;     ///< for host_key_policy::known_hosts
    std::string host_key_fingerprint; ///< for host_key_policy::pinned_fingerprint
    /// For host_key_policy::pinned_fingerprints: "SHA256:<base64>" each, as
    /// ssh-keygen -l prints them (the prefix and the '=' padding may be
    /// left out). An empty set, or a string that is no SHA-256 fingerprint,
    /// fails open_shell() with errc::invalid_argument before it connects.
    std::vector<std::string> host_key_fingerprints;
    /// close_shell() waits this long at most for pending output to leave.
    std::chrono::steady_clock::duration close_linger = std::chrono::seconds(1);
    /// When set, every login with these options reaches the container
    /// through this jump host (its hypervisor host, for a guest on a NAT
    /// network the caller cannot route to): a tunnel of the jump's one
    /// session per login, instead of a TCP connection. Messages name the
    /// route ("192.168.122.5:22 via root@10.77.1.2:22"); the container's host
    /// key is checked as above, under the container's address. A tunnel the
    /// jump host cannot open (the container's sshd not up yet) is retried
    /// until ready_timeout as a refused connection is; a jump login refused
    /// for its credentials or host key fails at once. Include
    /// <anweddol/ssh_jump.hpp>.
    std::shared_ptr<ssh_jump> jump;
    /// How administrate_container() passes the client's password.
    password_delivery setup_password_delivery = password_delivery::argument;
    /// The most administrate_container()'s setup script may take; past it
    /// the script is killed and administrate_container() fails with
    /// asio::error::timed_out. Zero: no limit. A guest that hangs (paused,
    /// out of memory) must not hold a hand-over for ever.
    std::chrono::steady_clock::duration administration_timeout = std::chrono::seconds(120);
};

} // namespace anweddol

#endif
