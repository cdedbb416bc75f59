//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_TRANSPORT_HPP
#define ANWEDDOL_DETAIL_SSH_TRANSPORT_HPP

#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/login_params.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

namespace anweddol::detail {

/// async: the first step of a login: connects `connection`'s socket to the
/// server, over TCP, or through the jump host's tunnel when `params` has
/// one. Errors: the socket's (connection_refused...), the tunnel's (the jump
/// host's login, a refused channel), asio::error::timed_out at `limit`,
/// operation_aborted when cancelled.
inline boost::asio::awaitable<void> connect_transport(std::shared_ptr<ssh_connection> connection,
                                                      ssh_login_params params,
                                                      const ssh_deadline& limit,
                                                      std::chrono::steady_clock::time_point at) {
    const std::string where = endpoint_name(params);
    if (params.open_tunnel) {
        auto tunnel = params.open_tunnel(params.host, params.endpoint.port(), at);
        auto end = co_await std::move(tunnel);
        // Moved over by descriptor, not by socket: a moved socket keeps its
        // executor (the jump's), and this session's waits must complete on
        // the connection's own.
        const auto protocol = end.local_endpoint().protocol();
        const int descriptor = end.release();
        boost::system::error_code ec;
        connection->socket().assign(protocol, descriptor, ec);
        if (ec) {
            ::close(descriptor);
            throw_error(ec, "cannot take over the tunnel to " + where);
        }
        co_return;
    }
    // The generic endpoint keeps the TCP address and protocol: the socket is
    // opened as a TCP one.
    const boost::asio::generic::stream_protocol::endpoint endpoint(params.endpoint);
    auto [connect_error] = co_await connection->socket().async_connect(
        endpoint, boost::asio::as_tuple(boost::asio::use_awaitable));
    if (limit.has_expired())
        throw_error(boost::asio::error::timed_out, "");
    if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
        boost::asio::cancellation_type::none)
        throw_error(boost::asio::error::operation_aborted, "the SSH login was cancelled");
    if (connect_error)
        throw_error(connect_error, "cannot connect to " + where);
    boost::system::error_code ignored;
    connection->socket().set_option(boost::asio::ip::tcp::no_delay(true), ignored);
}

} // namespace anweddol::detail

#endif
