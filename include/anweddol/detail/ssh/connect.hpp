//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONNECT_HPP
#define ANWEDDOL_DETAIL_SSH_CONNECT_HPP

#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/login.hpp>
#include <anweddol/detail/ssh/login_params.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

namespace anweddol::detail {

/// Errors that another attempt cannot cure.
inline bool is_final_login_error(const boost::system::error_code& ec) {
    return ec == errc::authentication_failed || ec == errc::host_key_mismatch ||
           ec == boost::asio::error::operation_aborted;
}

/// async: a logged-in connection to a server that may still be starting:
/// retries the whole login (a refused or dropped connection, a handshake that
/// stalls) with a pause growing from 100 ms to 1 s, until `ready_timeout`.
/// A refused password or host key fails at once. Errors: those,
/// operation_aborted when cancelled, or asio::error::timed_out with the last
/// attempt's error in the diagnostics.
inline boost::asio::awaitable<std::shared_ptr<ssh_connection>>
connect_when_ready(boost::asio::any_io_executor executor, ssh_login_params params,
                   std::chrono::steady_clock::duration ready_timeout,
                   std::chrono::steady_clock::duration attempt_timeout) {
    using clock = std::chrono::steady_clock;
    const auto ready_deadline = clock::now() + ready_timeout;
    std::chrono::milliseconds pause(100);
    diagnostics last_error;
    boost::asio::steady_timer pause_timer(executor);
    while (true) {
        auto connection = std::make_shared<ssh_connection>(executor);
        try {
            co_await login(connection, params,
                           std::min(ready_deadline, clock::now() + attempt_timeout));
            co_return connection;
        } catch (const error_with_diagnostics& e) {
            if (is_final_login_error(e.code()))
                throw;
            last_error =
                diagnostics(e.get_diagnostics().client_message() + " (" + e.code().message() + ")",
                            e.get_diagnostics().server_message());
        } catch (const boost::system::system_error& e) {
            if (is_final_login_error(e.code()))
                throw;
            last_error = diagnostics(e.what());
        }
        if (clock::now() + pause >= ready_deadline)
            throw error_with_diagnostics(
                boost::asio::error::timed_out,
                diagnostics(
                    "the SSH server at " + endpoint_name(params) + " was not ready within " +
                        std::to_string(
                            std::chrono::duration_cast<std::chrono::milliseconds>(ready_timeout)
                                .count()) +
                        " ms; last error: " + last_error.client_message(),
                    last_error.server_message()));
        pause_timer.expires_after(pause);
        auto [ec] =
            co_await pause_timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec)
            throw_error(boost::asio::error::operation_aborted, "the SSH login was cancelled");
        pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(1));
    }
}

} // namespace anweddol::detail

#endif
