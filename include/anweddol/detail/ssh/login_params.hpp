//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_LOGIN_PARAMS_HPP
#define ANWEDDOL_DETAIL_SSH_LOGIN_PARAMS_HPP

#include <anweddol/detail/credentials.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <string>
#include <vector>

namespace anweddol::detail {

/// How a server's host key is checked (see anweddol::host_key_policy).
enum class host_key_check { accept_new, known_hosts, fingerprint };

/// What one login attempt needs. Passed by value to the login coroutines:
/// a coroutine outlives the full expression that called it.
struct ssh_login_params {
    boost::asio::ip::tcp::endpoint endpoint;
    std::string host; ///< for known_hosts and messages
    std::string username;
    secret_string password;
    host_key_check host_keys = host_key_check::accept_new;
    std::string known_hosts_file;
    /// For host_key_check::fingerprint: the key must have one of these,
    /// "SHA256:<base64>" unpadded, as host_key_fingerprint() gives them.
    std::vector<std::string> fingerprints;
};

/// "host:port", for messages.
inline std::string endpoint_name(const ssh_login_params& params) {
    return params.host + ":" + std::to_string(params.endpoint.port());
}

} // namespace anweddol::detail

#endif
