//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_ENDPOINT_SHELL_INSTANCE_HPP
#define ANWEDDOL_ENDPOINT_SHELL_INSTANCE_HPP

#include <anweddol/detail/config.hpp>

#include <anweddol/command_result.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh/completion_token.hpp>
#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/endpoint_shell_options.hpp>
#include <anweddol/error.hpp>
#include <anweddol/secret.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <libssh/libssh.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace anweddol {

/// An SSH shell on a container's endpoint account, used to administer the
/// container: run commands, then hand it over to a client with
/// administrate_container().
///
/// libssh runs non-blocking on the executor given at construction: one
/// thread running one io_context can drive many shells at once, each with
/// many commands at once. Every async operation below runs on that executor,
/// whatever the awaiting coroutine's executor. Not thread-safe: use one
/// instance from one thread (or strand) at a time. The instance must outlive
/// the operations it started, as any Asio I/O object.
///
/// Every async operation takes a completion token last, by default
/// `default_completion_token` (`co_await shell.execute(cmd)` returns the
/// result and throws error_with_diagnostics); with any other token
/// (callback, `use_future`, `as_tuple(use_awaitable)`, `deferred`) it runs
/// on the shell's executor and completes with `void(error_code)` or
/// `void(error_code, T)`. Overloads taking `diagnostics&` fill it with any
/// token: anweddol's explanation (client_message()) and libssh's own
/// ssh_get_error text (server_message()). A cancellation slot bound to the
/// token cancels the operation.
class endpoint_shell_instance {
public:
    /// The passwords given here and to the setters below are kept in
    /// secrets: a std::string passed with std::move is taken over and what
    /// the move leaves in it wiped; one passed by lvalue is copied, and stays
    /// the caller's to wipe.
    explicit endpoint_shell_instance(boost::asio::any_io_executor ex, std::string container_ip = {},
                                     std::string endpoint_username = "endpoint",
                                     secret endpoint_password = "endpoint",
                                     std::uint16_t endpoint_listen_port = 22);
    endpoint_shell_instance(const endpoint_shell_instance&) = delete;
    endpoint_shell_instance& operator=(const endpoint_shell_instance&) = delete;
    /// Closes the shell without blocking or waiting: commands still running
    /// end with operation_aborted when their executor next runs them.
    ~endpoint_shell_instance();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// Whether no authenticated session is open (never opened, closed, or
    /// lost to a network error).
    bool is_closed() const noexcept;
    /// The open libssh session, or nullptr when closed. It belongs to this
    /// instance and runs non-blocking: use it only on the executor.
    ssh_session get_ssh_client() const noexcept;
    const std::string& get_container_ip() const noexcept { return container_ip_; }
    /// (username, password, listen port) of the endpoint account. The
    /// password is a copy, the caller's to wipe (anweddol::wipe).
    std::tuple<std::string, std::string, std::uint16_t> get_endpoint_credentials() const;
    /// (username, password, listen port) to hand over, if stored. The
    /// password is a copy, the caller's to wipe (anweddol::wipe).
    std::optional<std::tuple<std::string, std::string, std::uint16_t>>
    get_stored_client_ssh_credentials() const;
    /// The host key of the open (or last opened) session, "SHA256:<base64>".
    std::string get_host_key_fingerprint() const;
    const endpoint_shell_options& get_options() const noexcept { return options_; }

    /// These take effect at the next open_shell().
    void set_container_ip(std::string ip);
    /// The previous password is wiped.
    void set_endpoint_credentials(std::string username, secret password, std::uint16_t listen_port);
    void set_options(endpoint_shell_options options) { options_ = std::move(options); }

    /// Stores the credentials administrate_container() hands over; the
    /// previous password is wiped.
    void store_client_ssh_credentials(std::string username, secret password,
                                      std::uint16_t listen_port = 22);

    /// async: opens the SSH session: TCP connect, handshake, host key check
    /// (the options' policy), password login; retries while the server is
    /// not ready (100 ms growing to 1 s between attempts) until the options'
    /// ready_timeout. Uses get_options(), or `options` for this call only.
    /// Completes with `void(error_code)`. Errors: errc::shell_already_open
    /// (open or opening), errc::invalid_argument (no or malformed IP, port
    /// 0, a host key policy without its file or fingerprint, an empty or
    /// malformed host_key_fingerprints set: nothing is sent then),
    /// errc::endpoint_credentials_not_set, errc::authentication_failed at
    /// once for a refused password, errc::host_key_mismatch at once (the
    /// key is checked before the password is sent; the diagnostics name the
    /// key seen and the keys expected), a timeout
    /// (== std::errc::timed_out) with the last attempt's error in the
    /// diagnostics. Cancellation, or close_shell() meanwhile, completes it
    /// with operation_aborted and leaves nothing open. Thread-safety: on the
    /// shell's executor, as every member.
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto open_shell(CompletionToken&& token = CompletionToken()) {
        return open_shell(options_, std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto open_shell(diagnostics& diag, CompletionToken&& token = CompletionToken()) {
        return open_shell(options_, diag, std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto open_shell(endpoint_shell_options options, CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, open_shell_op(std::move(options)), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto open_shell(endpoint_shell_options options, diagnostics& diag,
                    CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, open_shell_op(std::move(options)), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// Generates client credentials: username `user_NNNNN` (10000-90000),
    /// a password of `password_length` characters from [A-Za-z0-9] (OpenSSL
    /// RAND_bytes, no modulo bias); stores them with port 22 if `store`.
    /// The returned password is the caller's to wipe (anweddol::wipe, or
    /// take it into a secret with std::move). Errors: errc::invalid_argument
    /// for a length of 0 or over 4096.
    std::pair<std::string, std::string>
    generate_client_ssh_credentials(std::size_t password_length = 120, bool store = true);

    /// async: closes the session gracefully: commands still running end with
    /// operation_aborted, their channels are closed, pending output leaves
    /// (for up to the options' close_linger), the server is told goodbye; an
    /// open_shell() in progress fails with operation_aborted. Does nothing
    /// when closed. Completes with `void(error_code)` and never fails:
    /// cancelling it only cuts the linger short, and the shell is closed
    /// either way. (A coroutine already cancelled throws at its next
    /// `co_await`, as Asio's do, before the close starts: reset its
    /// cancellation state first, or use a token.) On the shell's executor.
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto close_shell(CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, close_shell_op(), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto close_shell(diagnostics& diag, CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, close_shell_op(), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async: runs `command` and returns (stdout, stderr), as the reference
    /// (`void(error_code, std::pair<std::string, std::string>)`); as execute().
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute_command(std::string command, CompletionToken&& token = CompletionToken()) {
        return execute_command(std::move(command), command_options{},
                               std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute_command(std::string command, diagnostics& diag,
                         CompletionToken&& token = CompletionToken()) {
        return execute_command(std::move(command), command_options{}, diag,
                               std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute_command(std::string command, command_options options,
                         CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(
            executor_, execute_command_op(std::move(command), std::move(options)), nullptr,
            std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute_command(std::string command, command_options options, diagnostics& diag,
                         CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(
            executor_, execute_command_op(std::move(command), std::move(options)), &diag,
            std::forward<CompletionToken>(token));
    }

    /// async: runs `command` on a channel of its own (any number at once on
    /// one session) and returns its output and exit status: completes with
    /// `void(error_code, command_result)`; a non-zero exit status is a value.
    /// Errors: errc::shell_not_open, errc::output_limit_exceeded, a timeout
    /// (== std::errc::timed_out) at the options' deadline, libssh's errors
    /// (libssh_category(), libssh's message in the diagnostics) when the
    /// session fails, operation_aborted when cancelled or the shell closes;
    /// an exception thrown by the options' on_output propagates (coroutine
    /// mode) or completes with errc::unexpected_error. In every failure the
    /// remote command is killed and its channel closed; the session stays
    /// open. Thread-safety: on the shell's executor, as every member.
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute(std::string command, CompletionToken&& token = CompletionToken()) {
        return execute(std::move(command), command_options{}, std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute(std::string command, diagnostics& diag,
                 CompletionToken&& token = CompletionToken()) {
        return execute(std::move(command), command_options{}, diag,
                       std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute(std::string command, command_options options,
                 CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_,
                                          execute_op(std::move(command), std::move(options)),
                                          nullptr, std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto execute(std::string command, command_options options, diagnostics& diag,
                 CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_,
                                          execute_op(std::move(command), std::move(options)), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async: runs `sudo /bin/anweddol_container_setup.sh <user> <password>
    /// <port>` with the stored client credentials, each shell-quoted, so the
    /// container serves SSH to its client; completes with
    /// `void(error_code)`. Errors: errc::shell_not_open,
    /// errc::endpoint_credentials_not_set, errc::client_credentials_not_set,
    /// errc::invalid_argument (a NUL byte in a credential),
    /// errc::administration_failed with the script's output in the
    /// diagnostics when it printed anything or exited non-zero, execute()'s
    /// errors. Cancelling kills the script, which may have done part of its
    /// work. Thread-safety: on the shell's executor.
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto administrate_container(CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, administrate_container_op(), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <detail::shell_completion_token CompletionToken = default_completion_token>
    auto administrate_container(diagnostics& diag, CompletionToken&& token = CompletionToken()) {
        return detail::initiate_coroutine(executor_, administrate_container_op(), &diag,
                                          std::forward<CompletionToken>(token));
    }

private:
    struct client_credentials {
        std::string username;
        secret password;
        std::uint16_t listen_port = 22;
    };

    std::shared_ptr<detail::ssh_connection> open_connection() const;
    boost::asio::awaitable<void> open_shell_op(endpoint_shell_options options);
    boost::asio::awaitable<void> close_shell_op();
    boost::asio::awaitable<command_result> execute_op(std::string command, command_options options);
    boost::asio::awaitable<std::pair<std::string, std::string>>
    execute_command_op(std::string command, command_options options);
    boost::asio::awaitable<void> administrate_container_op();

    boost::asio::any_io_executor executor_;
    std::string container_ip_;
    std::string endpoint_username_;
    secret endpoint_password_;
    std::uint16_t endpoint_listen_port_;
    std::optional<client_credentials> client_credentials_;
    endpoint_shell_options options_;
    std::shared_ptr<detail::ssh_connection> connection_;
    struct open_attempt; // an open_shell() in progress, which close_shell() aborts
    std::shared_ptr<open_attempt> opening_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/endpoint_shell_instance.ipp>
#endif

#endif
