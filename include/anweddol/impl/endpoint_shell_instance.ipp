//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_ENDPOINT_SHELL_INSTANCE_IPP
#define ANWEDDOL_IMPL_ENDPOINT_SHELL_INSTANCE_IPP

#include <anweddol/detail/ssh/command.hpp>
#include <anweddol/detail/ssh/connect.hpp>
#include <anweddol/detail/ssh/host_key_settings.hpp>
#include <anweddol/detail/ssh/setup_command.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <string_view>
#include <vector>

namespace anweddol {

namespace detail {
// Not a local class: in a non-inline coroutine (separate compilation) a
// local type in the frame trips -Wsubobject-linkage.
template <class Attempt>
struct end_of_open {
    std::shared_ptr<Attempt>& opening;
    std::shared_ptr<Attempt> attempt;
    ~end_of_open() {
        if (opening == attempt)
            opening.reset();
        attempt->done.cancel(); // wakes a close_shell() waiting for this open to end
    }
};
} // namespace detail

struct endpoint_shell_instance::open_attempt {
    explicit open_attempt(const boost::asio::any_io_executor& executor)
        : done(executor, boost::asio::steady_timer::time_point::max()) {}
    boost::asio::cancellation_signal cancel;
    boost::asio::steady_timer done; // cancelled when the open ends
    bool aborted = false;           // by close_shell()
};

ANWEDDOL_DECL endpoint_shell_instance::endpoint_shell_instance(boost::asio::any_io_executor ex,
                                                               std::string container_ip,
                                                               std::string endpoint_username,
                                                               secret endpoint_password,
                                                               std::uint16_t endpoint_listen_port)
    : executor_(std::move(ex))
    , container_ip_(std::move(container_ip))
    , endpoint_username_(std::move(endpoint_username))
    , endpoint_password_(std::move(endpoint_password))
    , endpoint_listen_port_(endpoint_listen_port) {}

ANWEDDOL_DECL endpoint_shell_instance::~endpoint_shell_instance() {
    if (connection_)
        connection_->shutdown();
}

ANWEDDOL_DECL bool endpoint_shell_instance::is_closed() const noexcept {
    return !connection_ || !connection_->is_open();
}

ANWEDDOL_DECL ssh_session endpoint_shell_instance::get_ssh_client() const noexcept {
    return is_closed() ? nullptr : connection_->session();
}

ANWEDDOL_DECL std::tuple<std::string, std::string, std::uint16_t>
endpoint_shell_instance::get_endpoint_credentials() const {
    return {endpoint_username_, std::string(endpoint_password_.reveal()), endpoint_listen_port_};
}

ANWEDDOL_DECL std::optional<std::tuple<std::string, std::string, std::uint16_t>>
endpoint_shell_instance::get_stored_client_ssh_credentials() const {
    if (!client_credentials_)
        return std::nullopt;
    return std::tuple{client_credentials_->username,
                      std::string(client_credentials_->password.reveal()),
                      client_credentials_->listen_port};
}

ANWEDDOL_DECL std::string endpoint_shell_instance::get_host_key_fingerprint() const {
    return connection_ ? connection_->host_key_fingerprint() : std::string();
}

ANWEDDOL_DECL void endpoint_shell_instance::set_container_ip(std::string ip) {
    container_ip_ = std::move(ip);
}

ANWEDDOL_DECL void endpoint_shell_instance::set_endpoint_credentials(std::string username,
                                                                     secret password,
                                                                     std::uint16_t listen_port) {
    endpoint_username_ = std::move(username);
    endpoint_password_ = std::move(password);
    endpoint_listen_port_ = listen_port;
}

ANWEDDOL_DECL void
endpoint_shell_instance::store_client_ssh_credentials(std::string username, secret password,
                                                      std::uint16_t listen_port) {
    if (!client_credentials_)
        client_credentials_.emplace();
    client_credentials_->username = std::move(username);
    client_credentials_->password = std::move(password);
    client_credentials_->listen_port = listen_port;
}

ANWEDDOL_DECL std::pair<std::string, std::string>
endpoint_shell_instance::generate_client_ssh_credentials(std::size_t password_length, bool store) {
    // The password is generated where it is returned from: built elsewhere
    // and moved in, a short one would stay behind in the moved-from string.
    std::pair<std::string, std::string> generated{detail::generate_username(), std::string()};
    detail::generate_password(generated.second, password_length);
    if (store)
        store_client_ssh_credentials(generated.first, generated.second);
    return generated;
}

ANWEDDOL_DECL std::shared_ptr<detail::ssh_connection>
endpoint_shell_instance::open_connection() const {
    if (is_closed())
        detail::throw_error(errc::shell_not_open, "the endpoint shell is not open");
    return connection_;
}

ANWEDDOL_DECL boost::asio::awaitable<void>
endpoint_shell_instance::open_shell_op(endpoint_shell_options options) {
    if (!is_closed() || opening_)
        detail::throw_error(errc::shell_already_open, opening_
                                                          ? "another open_shell() is in progress"
                                                          : "close_shell() first to open it again");
    if (container_ip_.empty())
        detail::throw_error(errc::invalid_argument,
                            "no container IP is set: call set_container_ip() first");
    boost::system::error_code parse_error;
    const auto address = boost::asio::ip::make_address(container_ip_, parse_error);
    if (parse_error)
        detail::throw_error(errc::invalid_argument, "'" + container_ip_ + "' is not an IP address");
    if (endpoint_listen_port_ == 0)
        detail::throw_error(errc::invalid_argument,
                            "the endpoint listen port is 0: expected 1-65535");
    if (endpoint_username_.empty() || endpoint_password_.empty())
        detail::throw_error(errc::endpoint_credentials_not_set,
                            "set_endpoint_credentials() with a username and a password first");
    detail::ssh_login_params params;
    params.endpoint = {address, endpoint_listen_port_};
    params.host = container_ip_;
    params.username = endpoint_username_;
    params.password = endpoint_password_;
    detail::apply_host_key_policy(params, options.host_keys, options.known_hosts_file,
                                  options.host_key_fingerprint, options.host_key_fingerprints);
    if (options.jump) {
        // Through the hypervisor host: the guest's address is the jump
        // host's to reach; known_hosts still records the guest's.
        params.open_tunnel = detail::tunnel_through(options.jump);
        params.jump_name = options.jump->name();
    }

    auto attempt = std::make_shared<open_attempt>(executor_);
    opening_ = attempt;
    const detail::end_of_open<open_attempt> reset_opening{opening_, attempt};
    if (connection_) // a lost session: release it before replacing it
        std::exchange(connection_, nullptr)->shutdown();

    // The login listens to one signal, which both the caller's cancellation
    // and close_shell() emit.
    boost::asio::cancellation_slot caller =
        (co_await boost::asio::this_coro::cancellation_state).slot();
    if (caller.is_connected())
        caller.assign(
            [weak = std::weak_ptr<open_attempt>(attempt)](boost::asio::cancellation_type type) {
                if (auto attempt = weak.lock())
                    attempt->cancel.emit(type);
            });
    // Spawned on the shell's executor: libssh must only ever run there.
    auto [failure, connection] = co_await boost::asio::co_spawn(
        executor_,
        detail::connect_when_ready(executor_, std::move(params), options.ready_timeout,
                                   options.attempt_timeout),
        boost::asio::bind_cancellation_slot(attempt->cancel.slot(),
                                            boost::asio::as_tuple(boost::asio::use_awaitable)));
    if (caller.is_connected())
        caller.clear();
    if (attempt->aborted) {
        if (connection) // it logged in just before the close
            connection->shutdown();
        detail::throw_error(boost::asio::error::operation_aborted,
                            "close_shell() was called while the shell was opening");
    }
    if (failure)
        std::rethrow_exception(failure);
    connection_ = std::move(connection);
}

ANWEDDOL_DECL boost::asio::awaitable<void> endpoint_shell_instance::close_shell_op() {
    // Never fails: after a cancellation (of this close, or of a coroutine
    // awaiting it), Asio would throw at the next co_await; the close must go
    // on and tear the session down. The caller's setting is restored.
    const bool throwing = co_await boost::asio::this_coro::throw_if_cancelled();
    co_await boost::asio::this_coro::throw_if_cancelled(false);
    if (auto attempt = opening_) {
        // An open in progress fails with operation_aborted; once it has
        // ended, nothing it made is left open.
        attempt->aborted = true;
        attempt->cancel.emit(boost::asio::cancellation_type::terminal);
        while (opening_ == attempt)
            co_await attempt->done.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    if (connection_) {
        auto connection = std::exchange(connection_, nullptr);
        co_await boost::asio::co_spawn(executor_, connection->close(options_.close_linger),
                                       boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    co_await boost::asio::this_coro::throw_if_cancelled(throwing);
}

ANWEDDOL_DECL boost::asio::awaitable<command_result>
endpoint_shell_instance::execute_op(std::string command, command_options options) {
    auto connection = open_connection();
    co_return co_await boost::asio::co_spawn(
        executor_,
        detail::run_command(std::move(connection), std::move(command), std::move(options)),
        boost::asio::use_awaitable);
}

ANWEDDOL_DECL boost::asio::awaitable<std::pair<std::string, std::string>>
endpoint_shell_instance::execute_command_op(std::string command, command_options options) {
    command_result result = co_await execute_op(std::move(command), std::move(options));
    co_return std::pair{std::move(result.std_out), std::move(result.std_err)};
}

ANWEDDOL_DECL boost::asio::awaitable<void> endpoint_shell_instance::administrate_container_op() {
    auto connection = open_connection();
    if (endpoint_username_.empty() || endpoint_password_.empty())
        detail::throw_error(errc::endpoint_credentials_not_set,
                            "set_endpoint_credentials() with a username and a password first");
    if (!client_credentials_ || client_credentials_->username.empty() ||
        client_credentials_->password.empty())
        detail::throw_error(
            errc::client_credentials_not_set,
            "generate_client_ssh_credentials() or store_client_ssh_credentials() first");
    const client_credentials& client = *client_credentials_;
    // Every argument is one quoted word: a username such as "x; reboot"
    // reaches the script as it is, and the script refuses it.
    command_options running_options;
    running_options.timeout = options_.administration_timeout;
    std::string command;
    if (options_.setup_password_delivery == password_delivery::standard_input) {
        command = detail::setup_script_stdin_command(client.username, client.listen_port);
        running_options.std_in = detail::standard_input_password(client.password.reveal());
    } else {
        command = detail::setup_script_command(client.username, client.password.reveal(),
                                               client.listen_port);
    }

    // run_command owns the command and the input (and so the password), and
    // wipes them.
    auto running = boost::asio::co_spawn(
        executor_,
        detail::run_command(std::move(connection), std::move(command), std::move(running_options)),
        boost::asio::use_awaitable);
    const command_result result = co_await std::move(running);
    if (result.exit_status != 0 || !result.std_out.empty() || !result.std_err.empty()) {
        std::string message = "anweddol_container_setup.sh ";
        message += result.exit_status >= 0
                       ? "exited with status " + std::to_string(result.exit_status)
                       : "ended without an exit status";
        if (!result.std_err.empty())
            message += "; stderr: " + result.std_err;
        if (!result.std_out.empty())
            message += "; stdout: " + result.std_out;
        detail::throw_error(errc::administration_failed, message);
    }
}

} // namespace anweddol

#endif
