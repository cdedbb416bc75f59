//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_LOGIN_HPP
#define ANWEDDOL_DETAIL_SSH_LOGIN_HPP

#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/host_key.hpp>
#include <anweddol/detail/ssh/login_params.hpp>
#include <anweddol/detail/ssh/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libssh/libssh.h>

#include <chrono>
#include <memory>
#include <string>

namespace anweddol::detail {

/// async: authenticates on a session past its handshake: with the private
/// key file when `params` names one, else with the password. Errors:
/// errc::authentication_failed when the server refuses, libssh's.
inline boost::asio::awaitable<void> authenticate(std::shared_ptr<ssh_connection> connection,
                                                 ssh_session session,
                                                 const ssh_login_params& params,
                                                 const ssh_deadline& limit) {
    const std::string where = endpoint_name(params);
    std::string credential;
    int result = SSH_AUTH_ERROR;
    if (!params.private_key_file.empty()) {
        credential = "the key " + params.private_key_file;
        ssh_key raw = nullptr;
        if (ssh_pki_import_privkey_file(params.private_key_file.c_str(), nullptr, nullptr, nullptr,
                                        &raw) != SSH_OK)
            throw_error(errc::invalid_argument,
                        "cannot read an unencrypted OpenSSH private key from " +
                            params.private_key_file);
        const ssh_key_handle key(raw);
        auto authentication =
            connection->repeat([&] { return ssh_userauth_publickey(session, nullptr, key.get()); },
                               SSH_AUTH_AGAIN, limit.expired());
        result = co_await std::move(authentication);
    } else {
        credential = "the password";
        auto authentication = connection->repeat(
            [&] { return ssh_userauth_password(session, nullptr, params.password.reveal_c_str()); },
            SSH_AUTH_AGAIN, limit.expired());
        result = co_await std::move(authentication);
    }
    switch (result) {
    case SSH_AUTH_SUCCESS:
        co_return;
    case SSH_AUTH_DENIED:
    case SSH_AUTH_PARTIAL:
        throw error_with_diagnostics(
            errc::authentication_failed,
            diagnostics(where + " refused " + credential + " of user '" + params.username + "'",
                        libssh_message(session)));
    default:
        throw_libssh_error(session, "authentication with " + where + " failed");
    }
}

/// async: one login attempt on a fresh `connection`: transport (TCP
/// connect, or a jump host's tunnel), handshake, host key check,
/// authentication (password or key). Everything is taken by value: a
/// coroutine outlives the full expression that called it. Errors: the
/// socket's, the tunnel's, libssh_category(), errc::authentication_failed,
/// errc::host_key_mismatch, asio::error::timed_out at `at`,
/// operation_aborted when cancelled. On error the connection is torn down.
inline boost::asio::awaitable<void> login(std::shared_ptr<ssh_connection> connection,
                                          ssh_login_params params,
                                          std::chrono::steady_clock::time_point at) {
    ssh_connection::operation_guard guard(connection);
    const ssh_deadline limit = connection->make_deadline(at);
    const std::string where = endpoint_name(params);
    const char* stage = params.open_tunnel ? "opening the tunnel to " : "connecting over TCP to ";
    try {
        auto transport = connect_transport(connection, params, limit, at);
        co_await std::move(transport);

        ssh_session session = connection->start_session();
        const unsigned port = params.endpoint.port();
        const int no = 0;
        const char* known_hosts = params.host_keys == host_key_check::known_hosts
                                      ? params.known_hosts_file.c_str()
                                      : "/dev/null";
        if (ssh_options_set(session, SSH_OPTIONS_HOST, params.host.c_str()) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_PORT, &port) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_USER, params.username.c_str()) != SSH_OK ||
            // No ~/.ssh/config or /etc/ssh/ssh_config: only what we are told.
            ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, known_hosts) != SSH_OK ||
            ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK)
            throw_libssh_error(session, "cannot set the SSH options for " + where);

        stage = "the SSH handshake with ";
        auto handshake = connection->repeat(
            [&] {
                const int rc = ssh_connect(session);
                connection->restore_nonblocking();
                return rc;
            },
            SSH_AGAIN, limit.expired());
        if (co_await std::move(handshake) != SSH_OK)
            throw_libssh_error(session, "the SSH handshake with " + where + " failed");
        std::string fingerprint = check_host_key(session, params);

        stage = params.private_key_file.empty() ? "password authentication with "
                                                : "public key authentication with ";
        auto authentication = authenticate(connection, session, params, limit);
        co_await std::move(authentication);
        connection->set_authenticated(std::move(fingerprint));
    } catch (const boost::system::system_error& e) {
        connection->teardown();
        if (e.code() == boost::asio::error::timed_out && limit.has_expired())
            throw_error(e.code(), std::string(stage) + where + " did not finish in time");
        throw;
    } catch (...) {
        connection->teardown();
        throw;
    }
}

} // namespace anweddol::detail

#endif
