//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_LOGIN_PARAMS_HPP
#define ANWEDDOL_DETAIL_SSH_LOGIN_PARAMS_HPP

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/secret.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace anweddol::detail {

/// How a server's host key is checked (see anweddol::host_key_policy).
enum class host_key_check { accept_new, known_hosts, fingerprint };

/// async: a connected stream to (host, port) as a jump host sees them, by
/// the deadline; what an ssh_jump offers the logins that go through it.
/// Held as a function so that the login need not know ssh_jump (whose own
/// login is this one).
using tunnel_opener =
    std::function<boost::asio::awaitable<boost::asio::generic::stream_protocol::socket>(
        std::string host, std::uint16_t port, std::chrono::steady_clock::time_point at)>;

/// What one login attempt needs. Passed by value to the login coroutines:
/// a coroutine outlives the full expression that called it.
struct ssh_login_params {
    boost::asio::ip::tcp::endpoint endpoint;
    std::string host; ///< for known_hosts and messages
    std::string username;
    /// Either a password, or an unencrypted OpenSSH private key file.
    secret password;
    std::string private_key_file;
    host_key_check host_keys = host_key_check::accept_new;
    std::string known_hosts_file;
    /// For host_key_check::fingerprint: the key must have one of these,
    /// "SHA256:<base64>" unpadded, as host_key_fingerprint() gives them.
    std::vector<std::string> fingerprints;
    /// Set to reach the server through a jump host instead of over TCP;
    /// `jump_name` ("user@host:port") names it in messages.
    tunnel_opener open_tunnel;
    std::string jump_name;
};

/// "host:port", or "host:port via user@jump:port", for messages.
inline std::string endpoint_name(const ssh_login_params& params) {
    std::string name = params.host + ":" + std::to_string(params.endpoint.port());
    if (params.open_tunnel)
        name += " via " + params.jump_name;
    return name;
}

} // namespace anweddol::detail

#endif
