//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_SSH_JUMP_HPP
#define ANWEDDOL_SSH_JUMP_HPP

#include <anweddol/detail/config.hpp>

#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/ssh/login_params.hpp>
#include <anweddol/endpoint_shell_options.hpp>
#include <anweddol/error.hpp>
#include <anweddol/secret.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace anweddol {

class ssh_jump;

namespace detail {
class ssh_connection;
class ssh_tunnel;
/// What a login through `jump` uses instead of a TCP connection.
ANWEDDOL_DECL tunnel_opener tunnel_through(std::shared_ptr<ssh_jump> jump);
} // namespace detail

/// How to reach and log in to a jump host: the hypervisor host of guests on
/// a NAT network that the caller cannot route to.
struct ssh_jump_options {
    std::string host; ///< the jump host's address: an IPv4 or IPv6 literal
    std::uint16_t port = 22;
    std::string username;
    /// Either the password (assign a std::string with std::move to leave no
    /// copy of it behind: see secret) ...
    secret password;
    /// ... or an unencrypted OpenSSH private key file (preferred).
    std::string private_key_file;
    /// The jump host's key is checked as a container's is (see
    /// host_key_policy), with these settings.
    host_key_policy host_keys = host_key_policy::known_hosts;
    std::string known_hosts_file;
    std::string host_key_fingerprint;
    std::vector<std::string> host_key_fingerprints;
    /// The most a login to the jump host, or the opening of a tunnel by
    /// async_open_tunnel(), may take.
    std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(10);
};

/// One SSH session to a jump host, shared by any number of tunnels: each a
/// direct-tcpip channel of that session, relayed to a local socket, so that
/// an SSH login to a guest runs through it as over TCP (set
/// endpoint_shell_options::jump). Logs in lazily, at the first tunnel, and
/// again at the next after the session dropped.
///
/// libssh runs non-blocking on the executor given to create(): the session,
/// the tunnels' relays and every async operation below run there. Not
/// thread-safe: use it from that executor's thread (or strand). Destroying
/// it (or async_close()) ends every relay: the tunnels' users then see
/// their sockets reach EOF.
class ssh_jump : public std::enable_shared_from_this<ssh_jump> {
    struct private_tag {};

public:
    using socket_type = boost::asio::generic::stream_protocol::socket;

    /// Checks `options` and returns a jump that is not connected yet.
    /// Errors (boost::system::system_error, errc::invalid_argument, the
    /// message saying what to fix): an empty or non-IP host, port 0, an
    /// empty username, neither or both of password and private_key_file, a
    /// key file that is no unencrypted OpenSSH private key, a host key
    /// policy without its known_hosts_file or fingerprints, a
    /// connect_timeout that is not positive.
    static std::shared_ptr<ssh_jump> create(boost::asio::any_io_executor executor,
                                            ssh_jump_options options);

    ssh_jump(private_tag, boost::asio::any_io_executor executor, ssh_jump_options options,
             detail::ssh_login_params login);
    ssh_jump(const ssh_jump&) = delete;
    ssh_jump& operator=(const ssh_jump&) = delete;
    /// Ends every relay and closes the session at once.
    ~ssh_jump();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }
    const ssh_jump_options& get_options() const noexcept { return options_; }
    /// "user@host:port", for messages.
    std::string name() const;
    /// Whether the session to the jump host is logged in and open.
    bool is_connected() const noexcept;
    /// The tunnels whose relay runs now.
    std::size_t tunnel_count() const noexcept;
    /// How often it logged in: 1, plus one per login after a drop.
    unsigned login_count() const noexcept { return login_count_; }

    /// async: a connected stream socket (one end of a socketpair) whose
    /// bytes travel through a direct-tcpip channel of the jump session to
    /// `host`:`port` as the jump host sees them. Logs in to the jump host
    /// first when no session is open (several tunnels opened at once share
    /// one login). Completes with `void(error_code, socket_type)`; with the
    /// default token, `co_await` returns the socket and errors throw
    /// error_with_diagnostics. Errors: the login's
    /// (errc::authentication_failed, errc::host_key_mismatch, libssh's),
    /// asio::error::connection_refused when the jump host could not connect
    /// to the target (the diagnostics name both), a timeout
    /// (== std::errc::timed_out) after the options' connect_timeout,
    /// operation_aborted when cancelled, leaving no channel, descriptor or
    /// relay behind (a login in progress goes on, for the next tunnel).
    template <class CompletionToken = default_completion_token>
    auto async_open_tunnel(std::string host, std::uint16_t port, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(
            executor_,
            open_tunnel_op(std::move(host), port,
                           std::chrono::steady_clock::now() + options_.connect_timeout),
            nullptr, std::forward<CompletionToken>(token));
    }

    /// async: ends every tunnel's relay and closes the session gracefully
    /// (for up to a second); a login in progress fails with
    /// operation_aborted. Completes with `void(error_code)` and never fails.
    /// A later async_open_tunnel() logs in again.
    template <class CompletionToken = default_completion_token>
    auto async_close(CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, close_op(), nullptr,
                                          std::forward<CompletionToken>(token));
    }

private:
    struct login_attempt;
    friend detail::tunnel_opener detail::tunnel_through(std::shared_ptr<ssh_jump> jump);

    boost::asio::awaitable<socket_type> open_tunnel_op(std::string host, std::uint16_t port,
                                                       std::chrono::steady_clock::time_point at);
    boost::asio::awaitable<std::optional<socket_type>> open_tunnel_here(std::string host,
                                                                        std::uint16_t port);
    boost::asio::awaitable<std::optional<socket_type>>
    open_channel(std::shared_ptr<detail::ssh_connection> connection, std::string host,
                 std::uint16_t port);
    boost::asio::awaitable<std::shared_ptr<detail::ssh_connection>> logged_in();
    static boost::asio::awaitable<void> run_login(std::weak_ptr<ssh_jump> jump,
                                                  std::shared_ptr<login_attempt> attempt,
                                                  detail::ssh_login_params params,
                                                  std::chrono::steady_clock::time_point at,
                                                  std::string name);
    boost::asio::awaitable<void> close_op();
    boost::asio::awaitable<void> close_here();
    void stop_tunnels() noexcept;

    boost::asio::any_io_executor executor_;
    ssh_jump_options options_;
    detail::ssh_login_params login_params_;
    std::shared_ptr<detail::ssh_connection> connection_;
    std::shared_ptr<login_attempt> logging_in_;
    std::vector<std::weak_ptr<detail::ssh_tunnel>> tunnels_;
    unsigned login_count_ = 0;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/ssh_jump.ipp>
#endif

#endif
