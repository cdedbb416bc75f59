//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_SSH_JUMP_IPP
#define ANWEDDOL_IMPL_SSH_JUMP_IPP

#include <anweddol/detail/ssh/command_channel.hpp>
#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/host_key_settings.hpp>
#include <anweddol/detail/ssh/login.hpp>
#include <anweddol/detail/ssh/tunnel.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libssh/libssh.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>

namespace anweddol {

/// A login to the jump host in progress, which every tunnel opened
/// meanwhile awaits: one login, however many tunnels want the session. It
/// belongs to the jump, not to the first caller: cancelling that caller
/// must not fail the others.
struct ssh_jump::login_attempt {
    explicit login_attempt(const boost::asio::any_io_executor& executor)
        : connection(std::make_shared<detail::ssh_connection>(executor))
        , done(executor, boost::asio::steady_timer::time_point::max()) {}
    std::shared_ptr<detail::ssh_connection> connection;
    boost::asio::steady_timer done; // cancelled when the login ends
    bool finished = false;
    std::exception_ptr failure;
};

namespace detail {

ANWEDDOL_DECL tunnel_opener tunnel_through(std::shared_ptr<ssh_jump> jump) {
    return [jump = std::move(jump)](std::string host, std::uint16_t port,
                                    std::chrono::steady_clock::time_point at) {
        return jump->open_tunnel_op(std::move(host), port, at);
    };
}

/// The same error, with `context` before anweddol's side of its message.
inline std::exception_ptr with_context(std::exception_ptr failure, const std::string& context) {
    try {
        std::rethrow_exception(failure);
    } catch (const boost::system::system_error&) {
        auto [ec, diag] = to_error(failure);
        return std::make_exception_ptr(error_with_diagnostics(
            ec, diagnostics(context + diag.client_message(), diag.server_message())));
    } catch (...) {
        return failure;
    }
}

} // namespace detail

ANWEDDOL_DECL std::shared_ptr<ssh_jump> ssh_jump::create(boost::asio::any_io_executor executor,
                                                         ssh_jump_options options) {
    using detail::throw_error;
    if (options.host.empty())
        throw_error(errc::invalid_argument,
                    "ssh_jump_options::host is empty: set the jump host's IP address");
    boost::system::error_code parse_error;
    const auto address = boost::asio::ip::make_address(options.host, parse_error);
    if (parse_error)
        throw_error(errc::invalid_argument, "ssh_jump_options::host '" + options.host +
                                                "' is not an IP address: give the jump host's "
                                                "IPv4 or IPv6 address");
    if (options.port == 0)
        throw_error(errc::invalid_argument, "ssh_jump_options::port is 0: expected 1-65535");
    if (options.username.empty())
        throw_error(errc::invalid_argument, "ssh_jump_options::username is empty: set the "
                                            "account to log in to the jump host with");
    if (options.password.empty() && options.private_key_file.empty())
        throw_error(errc::invalid_argument,
                    "ssh_jump_options has no credentials: set private_key_file (preferred) or "
                    "password");
    if (!options.password.empty() && !options.private_key_file.empty())
        throw_error(errc::invalid_argument,
                    "ssh_jump_options has both a password and a private_key_file: set only one");
    if (!options.private_key_file.empty()) {
        // Read now rather than at the first login: a wrong path should fail
        // where it is given, not minutes later inside a guest's login.
        ssh_key key = nullptr;
        if (ssh_pki_import_privkey_file(options.private_key_file.c_str(), nullptr, nullptr, nullptr,
                                        &key) != SSH_OK)
            throw_error(errc::invalid_argument,
                        "ssh_jump_options::private_key_file '" + options.private_key_file +
                            "' cannot be read as an unencrypted OpenSSH private key: check the "
                            "path, or remove its passphrase (ssh-keygen -p)");
        ssh_key_free(key);
    }
    if (options.connect_timeout <= std::chrono::steady_clock::duration::zero())
        throw_error(errc::invalid_argument, "ssh_jump_options::connect_timeout must be positive");

    detail::ssh_login_params login;
    login.endpoint = {address, options.port};
    login.host = options.host;
    login.username = options.username;
    login.password = options.password;
    login.private_key_file = options.private_key_file;
    try {
        detail::apply_host_key_policy(login, options.host_keys, options.known_hosts_file,
                                      options.host_key_fingerprint, options.host_key_fingerprints);
    } catch (...) {
        std::rethrow_exception(
            detail::with_context(std::current_exception(), "ssh_jump_options: "));
    }
    return std::make_shared<ssh_jump>(private_tag{}, std::move(executor), std::move(options),
                                      std::move(login));
}

ANWEDDOL_DECL ssh_jump::ssh_jump(private_tag, boost::asio::any_io_executor executor,
                                 ssh_jump_options options, detail::ssh_login_params login)
    : executor_(std::move(executor))
    , options_(std::move(options))
    , login_params_(std::move(login)) {}

ANWEDDOL_DECL ssh_jump::~ssh_jump() {
    stop_tunnels();
    if (logging_in_)
        logging_in_->connection->shutdown();
    if (connection_)
        connection_->shutdown();
}

ANWEDDOL_DECL std::string ssh_jump::name() const {
    const bool v6 = options_.host.find(':') != std::string::npos;
    return options_.username + "@" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" +
           std::to_string(options_.port);
}

ANWEDDOL_DECL bool ssh_jump::is_connected() const noexcept {
    return connection_ && connection_->is_open();
}

ANWEDDOL_DECL std::size_t ssh_jump::tunnel_count() const noexcept {
    return static_cast<std::size_t>(std::count_if(tunnels_.begin(), tunnels_.end(),
                                                  [](const auto& t) { return !t.expired(); }));
}

ANWEDDOL_DECL void ssh_jump::stop_tunnels() noexcept {
    for (const auto& weak : tunnels_)
        if (auto tunnel = weak.lock())
            tunnel->stop();
    tunnels_.clear();
}

ANWEDDOL_DECL boost::asio::awaitable<ssh_jump::socket_type>
ssh_jump::open_tunnel_op(std::string host, std::uint16_t port,
                         std::chrono::steady_clock::time_point at) {
    auto self = shared_from_this();
    // The opening runs on the jump's executor (libssh runs there only) and
    // listens to one signal, which the caller's cancellation and the
    // deadline both emit.
    struct race {
        boost::asio::cancellation_signal cancel;
        bool expired = false;
    };
    auto state = std::make_shared<race>();
    boost::asio::steady_timer deadline(executor_, at);
    deadline.async_wait([state](boost::system::error_code ec) {
        if (ec)
            return;
        state->expired = true;
        state->cancel.emit(boost::asio::cancellation_type::terminal);
    });
    boost::asio::cancellation_slot caller =
        (co_await boost::asio::this_coro::cancellation_state).slot();
    if (caller.is_connected())
        caller.assign([weak = std::weak_ptr<race>(state)](boost::asio::cancellation_type type) {
            if (auto state = weak.lock())
                state->cancel.emit(type);
        });
    const std::string target = host + ":" + std::to_string(port);
    auto opening = boost::asio::co_spawn(
        executor_, open_tunnel_here(std::move(host), port),
        boost::asio::bind_cancellation_slot(state->cancel.slot(),
                                            boost::asio::as_tuple(boost::asio::use_awaitable)));
    auto [failure, socket] = co_await std::move(opening);
    if (caller.is_connected())
        caller.clear();
    deadline.cancel();
    if (failure) {
        if (state->expired)
            detail::throw_error(boost::asio::error::timed_out, "opening a tunnel to " + target +
                                                                   " via " + name() +
                                                                   " did not finish in time");
        std::rethrow_exception(failure);
    }
    co_return std::move(*socket);
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<detail::ssh_connection>>
ssh_jump::logged_in() {
    if (connection_ && connection_->is_open())
        co_return connection_;
    auto attempt = logging_in_;
    if (!attempt) {
        if (connection_) // it dropped: its tunnels end with it
            std::exchange(connection_, nullptr)->shutdown();
        attempt = std::make_shared<login_attempt>(executor_);
        logging_in_ = attempt;
        boost::asio::co_spawn(executor_,
                              run_login(weak_from_this(), attempt, login_params_,
                                        std::chrono::steady_clock::now() + options_.connect_timeout,
                                        name()),
                              boost::asio::detached);
    }
    while (!attempt->finished) {
        co_await attempt->done.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
            boost::asio::cancellation_type::none)
            detail::throw_error(boost::asio::error::operation_aborted,
                                "opening the tunnel was cancelled");
    }
    if (attempt->failure)
        std::rethrow_exception(attempt->failure);
    co_return attempt->connection;
}

ANWEDDOL_DECL boost::asio::awaitable<void>
ssh_jump::run_login(std::weak_ptr<ssh_jump> jump, std::shared_ptr<login_attempt> attempt,
                    detail::ssh_login_params params, std::chrono::steady_clock::time_point at,
                    std::string name) {
    try {
        auto login = detail::login(attempt->connection, std::move(params), at);
        co_await std::move(login);
    } catch (...) {
        attempt->failure = detail::with_context(std::current_exception(),
                                                "cannot log in to the jump host " + name + ": ");
    }
    attempt->finished = true;
    attempt->done.cancel();
    if (auto self = jump.lock()) {
        if (self->logging_in_ == attempt)
            self->logging_in_.reset();
        if (!attempt->failure) {
            self->connection_ = attempt->connection;
            ++self->login_count_;
        }
    }
}

ANWEDDOL_DECL boost::asio::awaitable<std::optional<ssh_jump::socket_type>>
ssh_jump::open_tunnel_here(std::string host, std::uint16_t port) {
    auto self = shared_from_this();
    for (bool retried = false;; retried = true) {
        const unsigned logins = login_count_;
        auto connection = co_await logged_in();
        const bool reused = login_count_ == logins;
        try {
            co_return co_await open_channel(connection, host, port);
        } catch (const boost::system::system_error& e) {
            // A session that dropped while no tunnel read it looks open
            // until a call finds out (a hypervisor's sshd restarted between
            // two guests): log in again, once, as after a drop seen sooner.
            if (retried || !reused || connection->is_open() ||
                e.code() == boost::asio::error::operation_aborted)
                throw;
        }
    }
}

ANWEDDOL_DECL boost::asio::awaitable<std::optional<ssh_jump::socket_type>>
ssh_jump::open_channel(std::shared_ptr<detail::ssh_connection> connection, std::string host,
                       std::uint16_t port) {
    const std::string route = host + ":" + std::to_string(port) + " via " + name();
    detail::ssh_connection::operation_guard guard(connection);
    auto channel = std::make_unique<detail::command_channel>(connection);
    int opened = SSH_ERROR;
    try {
        auto opening = connection->repeat(
            [&] {
                // The originator is informational (OpenSSH logs it); a client
                // of ours has no address the jump host could use.
                return ssh_channel_open_forward(channel->get(), host.c_str(), port, "127.0.0.1", 0);
            },
            SSH_AGAIN);
        opened = co_await std::move(opening);
    } catch (...) {
        // Cancelled, or the session went: a channel still opening is closed
        // once the server answers, not left open on it.
        channel->reap_in_background();
        std::rethrow_exception(
            detail::with_context(std::current_exception(), "opening a tunnel to " + route + ": "));
    }
    if (opened != SSH_OK) {
        if (!connection->is_open())
            detail::throw_libssh_error(connection->session(), "the session to the jump host was "
                                                              "lost while opening a tunnel to " +
                                                                  route);
        throw error_with_diagnostics(
            boost::asio::error::connection_refused,
            diagnostics("the jump host " + name() + " could not connect to " + host + ":" +
                            std::to_string(port) +
                            " (is its SSH server up yet, and may the jump host's user forward "
                            "TCP connections?)",
                        detail::libssh_message(connection->session())));
    }

    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
        detail::throw_error(boost::system::error_code(errno, boost::system::system_category()),
                            "cannot create the socket pair of a tunnel to " + route);
    const boost::asio::generic::stream_protocol unix_stream(AF_UNIX, 0);
    socket_type user_end(executor_);
    socket_type relay_end(executor_);
    boost::system::error_code ec;
    user_end.assign(unix_stream, ends[0], ec);
    if (ec)
        ::close(ends[0]);
    else
        relay_end.assign(unix_stream, ends[1], ec);
    if (ec) {
        ::close(ends[1]);
        detail::throw_error(ec, "cannot register the socket pair of a tunnel to " + route);
    }
    auto tunnel =
        std::make_shared<detail::ssh_tunnel>(connection, std::move(channel), std::move(relay_end));
    std::erase_if(tunnels_, [](const auto& t) { return t.expired(); });
    tunnels_.push_back(tunnel);
    tunnel->start();
    co_return std::optional<socket_type>(std::move(user_end));
}

ANWEDDOL_DECL boost::asio::awaitable<void> ssh_jump::close_op() {
    auto closing = boost::asio::co_spawn(executor_, close_here(),
                                         boost::asio::as_tuple(boost::asio::use_awaitable));
    co_await std::move(closing);
}

ANWEDDOL_DECL boost::asio::awaitable<void> ssh_jump::close_here() {
    auto self = shared_from_this();
    // Never fails, as ssh_connection::close: a cancellation only cuts the
    // linger short.
    co_await boost::asio::this_coro::throw_if_cancelled(false);
    stop_tunnels();
    if (logging_in_)
        logging_in_->connection->shutdown();
    if (auto connection = std::exchange(connection_, nullptr)) {
        auto closing = boost::asio::co_spawn(executor_, connection->close(std::chrono::seconds(1)),
                                             boost::asio::as_tuple(boost::asio::use_awaitable));
        co_await std::move(closing);
    }
}

} // namespace anweddol

#endif
