//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_LOGIN_HPP
#define ANWEDDOL_DETAIL_SSH_LOGIN_HPP

#include <anweddol/detail/ssh_connection.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <libssh/libssh.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>

namespace anweddol::detail {

inline std::string endpoint_name(const ssh_login_params& params) {
    return params.host + ":" + std::to_string(params.endpoint.port());
}

inline boost::asio::awaitable<void>
ssh_connection::login(const ssh_login_params& params, std::chrono::steady_clock::time_point at) {
    operation_guard guard(shared_from_this());
    deadline limit(*this, at);
    const std::string where = endpoint_name(params);
    const char* stage = "connecting over TCP to ";
    try {
        auto [connect_error] = co_await socket_.async_connect(
            params.endpoint, boost::asio::as_tuple(boost::asio::use_awaitable));
        if (limit.has_expired())
            throw boost::system::system_error(boost::asio::error::timed_out);
        if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
            boost::asio::cancellation_type::none)
            throw boost::system::system_error(boost::asio::error::operation_aborted, "cancelled");
        if (connect_error)
            throw boost::system::system_error(connect_error, "cannot connect to " + where);
        boost::system::error_code ignored;
        socket_.set_option(boost::asio::ip::tcp::no_delay(true), ignored);

        libssh_fd_ = ::fcntl(socket_.native_handle(), F_DUPFD_CLOEXEC, 0);
        struct stat identity {};
        if (libssh_fd_ == -1 || ::fstat(libssh_fd_, &identity) != 0)
            throw boost::system::system_error(errno, boost::system::system_category(),
                                              "cannot duplicate the socket for libssh");
        libssh_fd_inode_ = identity.st_ino;
        libssh_fd_device_ = identity.st_dev;

        session_.reset(ssh_new());
        if (!session_)
            throw std::bad_alloc();
        ssh_session session = session_.get();
        const unsigned port = params.endpoint.port();
        const int no = 0;
        const char* known_hosts = params.host_keys == host_key_check::known_hosts
                                      ? params.known_hosts_file.c_str()
                                      : "/dev/null";
        if (ssh_options_set(session, SSH_OPTIONS_FD, &libssh_fd_) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_HOST, params.host.c_str()) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_PORT, &port) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_USER, params.username.c_str()) != SSH_OK ||
            // No ~/.ssh/config or /etc/ssh/ssh_config: only what we are told.
            ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, known_hosts) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK)
            throw_libssh_error(session, "cannot set the SSH options for " + where);
        ssh_set_blocking(session, 0);
        ssh_set_counters(session, &counter_, nullptr);

        stage = "the SSH handshake with ";
        auto handshake = repeat(
            [this] {
                const int rc = ssh_connect(session_.get());
                restore_nonblocking();
                return rc;
            },
            SSH_AGAIN, limit.expired());
        if (co_await std::move(handshake) != SSH_OK)
            throw_libssh_error(session_.get(), "the SSH handshake with " + where + " failed");
        check_host_key(params);

        stage = "password authentication with ";
        auto authentication = repeat(
            [this, &params] {
                return ssh_userauth_password(session_.get(), nullptr,
                                             params.password.value().c_str());
            },
            SSH_AUTH_AGAIN, limit.expired());
        switch (co_await std::move(authentication)) {
        case SSH_AUTH_SUCCESS:
            authenticated_ = true;
            break;
        case SSH_AUTH_DENIED:
        case SSH_AUTH_PARTIAL:
            throw boost::system::system_error(errc::authentication_failed,
                                              where + " refused the password of user '" +
                                                  params.username + "'");
        default:
            throw_libssh_error(session_.get(), "password authentication with " + where + " failed");
        }
    } catch (const boost::system::system_error& e) {
        teardown();
        if (e.code() == boost::asio::error::timed_out && limit.has_expired())
            throw boost::system::system_error(e.code(), std::string(stage) + where +
                                                            " did not finish in time");
        throw;
    } catch (...) {
        teardown();
        throw;
    }
}

inline void ssh_connection::check_host_key(const ssh_login_params& params) {
    ssh_session session = session_.get();
    const std::string where = endpoint_name(params);
    ssh_key raw = nullptr;
    if (ssh_get_server_publickey(session, &raw) != SSH_OK)
        throw_libssh_error(session, "cannot read the host key of " + where);
    ssh_key_handle key(raw);
    unsigned char* hash = nullptr;
    std::size_t hash_length = 0;
    if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_length) != 0)
        throw_libssh_error(session, "cannot hash the host key of " + where);
    char* fingerprint = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_length);
    ssh_clean_pubkey_hash(&hash);
    fingerprint_ = fingerprint ? fingerprint : "";
    ssh_string_free_char(fingerprint);

    switch (params.host_keys) {
    case host_key_check::accept_new:
        return;
    case host_key_check::fingerprint: {
        std::string expected = params.fingerprint;
        if (expected.rfind("SHA256:", 0) != 0)
            expected.insert(0, "SHA256:");
        while (!expected.empty() && expected.back() == '=')
            expected.pop_back(); // OpenSSH and libssh print it unpadded
        if (expected != fingerprint_)
            throw boost::system::system_error(errc::host_key_mismatch,
                                              where + " presented the host key " + fingerprint_ +
                                                  ", not the pinned " + expected);
        return;
    }
    case host_key_check::known_hosts:
        switch (ssh_session_is_known_server(session)) {
        case SSH_KNOWN_HOSTS_OK:
            return;
        case SSH_KNOWN_HOSTS_CHANGED:
        case SSH_KNOWN_HOSTS_OTHER:
            throw boost::system::system_error(errc::host_key_mismatch,
                                              where + " presented the host key " + fingerprint_ +
                                                  ", which differs from its entry in " +
                                                  params.known_hosts_file);
        case SSH_KNOWN_HOSTS_NOT_FOUND:
        case SSH_KNOWN_HOSTS_UNKNOWN: // first contact: remember it, as accept-new does
            if (ssh_session_update_known_hosts(session) != SSH_OK)
                throw_libssh_error(session, "cannot add the host key of " + where + " to " +
                                                params.known_hosts_file);
            return;
        case SSH_KNOWN_HOSTS_ERROR:
            break;
        }
        throw_libssh_error(session, "cannot check the host key of " + where + " against " +
                                        params.known_hosts_file);
    }
}

/// Errors that another attempt cannot cure.
inline bool is_final_login_error(const boost::system::error_code& ec) {
    return ec == errc::authentication_failed || ec == errc::host_key_mismatch ||
           ec == boost::asio::error::operation_aborted;
}

/// async: a logged-in connection to a server that may still be starting:
/// retries the whole login (a refused or dropped connection, a handshake that
/// stalls) with a pause growing from 100 ms to 1 s, until `ready_timeout`.
/// A refused password or host key fails at once. Errors: those, or
/// asio::error::timed_out with the last attempt's error in the message.
inline boost::asio::awaitable<std::shared_ptr<ssh_connection>>
connect_when_ready(boost::asio::any_io_executor executor, ssh_login_params params,
                   std::chrono::steady_clock::duration ready_timeout,
                   std::chrono::steady_clock::duration attempt_timeout) {
    using clock = std::chrono::steady_clock;
    const auto ready_deadline = clock::now() + ready_timeout;
    std::chrono::milliseconds pause(100);
    std::string last_error;
    boost::asio::steady_timer pause_timer(executor);
    while (true) {
        auto connection = std::make_shared<ssh_connection>(executor);
        try {
            auto attempt =
                connection->login(params, std::min(ready_deadline, clock::now() + attempt_timeout));
            co_await std::move(attempt);
            co_return connection;
        } catch (const boost::system::system_error& e) {
            if (is_final_login_error(e.code()))
                throw;
            last_error = e.what();
        }
        if (clock::now() + pause >= ready_deadline)
            throw boost::system::system_error(
                boost::asio::error::timed_out,
                "the SSH server at " + endpoint_name(params) + " was not ready within " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::milliseconds>(ready_timeout)
                            .count()) +
                    " ms; last error: " + last_error);
        pause_timer.expires_after(pause);
        co_await pause_timer.async_wait(boost::asio::use_awaitable);
        pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(1));
    }
}

} // namespace anweddol::detail

#endif
