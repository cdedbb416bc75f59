// The classic TCP transport: accepts connections on the configured address
// and port, drives one `classic::server_session` per connection with exact,
// bounded reads, and hands each request to the server's `request_handler`.
//
// Bounds that protect the server from its peers:
// - the IP filter (`allow`) is asked at accept; a refused peer is closed at
//   once, before a byte is read;
// - at most `max_connections` connections at a time: when they are all
//   taken, the listener stops accepting until one ends, so further peers
//   wait in the kernel's backlog (rather than being accepted and closed: an
//   honest client queued behind a burst is then served, not refused); and
//   at most `max_connections_per_address` from one address, beyond which a
//   peer is closed at once;
// - a deadline: the peer has `timeout` from its accept to deliver its whole
//   request, and `timeout` again to take the response. The handler's own
//   time is not counted (a CREATE may boot a guest for longer than that),
//   and no byte is read from the peer meanwhile. A peer past its deadline is
//   dropped, whatever it was sending (a slowloris, a lying length);
// - the session's `limits` bound what a peer can make the server allocate.
#ifndef ANWEDDOL_SERVER_CLASSIC_LISTENER_HPP
#define ANWEDDOL_SERVER_CLASSIC_LISTENER_HPP

#include "classic_crypto.hpp"
#include "classic_protocol.hpp"
#include "protocol.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

namespace anweddol::server::classic {

struct listener_options {
    // The reference's `server.bind_address` and `server.listen_port`.
    boost::asio::ip::tcp::endpoint endpoint{boost::asio::ip::address_v4::any(), 6150};
    // The reference's `server.timeout` (seconds); see the deadline above.
    std::chrono::steady_clock::duration timeout = std::chrono::seconds(10);
    std::size_t max_connections = 64;
    // From one address at a time: a peer beyond it is closed at once, so
    // that one host cannot hold every slot (a slowloris from one address
    // otherwise shuts everyone out for as long as it keeps trickling).
    std::size_t max_connections_per_address = 8;
    limits bounds;
    // The IP filter; empty allows every peer.
    std::function<bool(const boost::asio::ip::address&)> allow;
    // What happened to a connection (refused, dropped and why, served), for
    // the server's log. Called on the listener's strand; must not throw.
    std::function<void(const boost::asio::ip::address& peer, std::string_view event)> log;
    // Called with a successful answer the peer never took (it hung up or
    // stalled before the end of the exchange, or the listener stopped): a
    // CREATE's container nobody will ever see, for the caller to destroy.
    // Runs on the listener's strand.
    std::function<void(const response&)> undelivered;
};

class listener {
public:
    // `key` is the server's key pair, loaded or generated beforehand (RSA
    // generation takes seconds: do it before serving). Nothing starts here.
    listener(boost::asio::any_io_executor executor, rsa_key key, request_handler handler,
             listener_options options);
    ~listener();
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;

    // Opens, binds and listens (SO_REUSEADDR, as the reference does). Throws
    // boost::system::system_error naming the address and port when it cannot
    // (in use, not local, not permitted).
    void listen();

    // The bound address and port (the port the kernel chose for port 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    // Accepts and serves until `stop()` or until the awaiting coroutine is
    // cancelled (terminal cancellation; it then stops as `stop()` does), and
    // completes once every connection has ended: the listener may be
    // destroyed after it returns. Call `listen()` first. Runs on the
    // listener's strand whatever executor awaits it.
    boost::asio::awaitable<void> async_run();

    // Closes the acceptor and every live connection (their sockets at once)
    // and cancels their coroutines, including a request handler in progress
    // (terminal cancellation): no fd is left once `async_run` completes. Safe
    // from any thread, and more than once.
    void stop();

    // Connections being served now (read on the listener's strand).
    std::size_t live_connections() const noexcept { return live_.size(); }

private:
    struct connection;

    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> wait_for_free_slot();
    boost::asio::awaitable<void> serve(std::shared_ptr<connection> c);
    boost::asio::awaitable<bool> exchange(connection& c, server_session& session);
    boost::asio::awaitable<void> answer(connection& c, server_session& session);
    void start_connection(boost::asio::ip::tcp::socket socket,
                          const boost::asio::ip::address& peer);
    void arm_deadline(connection& c);
    void close_everything();
    std::size_t connections_from(const boost::asio::ip::address& peer) const;
    void note(const boost::asio::ip::address& peer, std::string_view event) const;

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    rsa_key key_;
    request_handler handler_;
    listener_options options_;
    boost::asio::ip::tcp::acceptor acceptor_;
    // Woken (cancelled) whenever a connection ends: the accept loop waits on
    // it for a free slot, and for the last connection when stopping.
    boost::asio::steady_timer connection_ended_;
    std::map<std::uint64_t, std::shared_ptr<connection>> live_;
    std::uint64_t next_id_ = 0;
    bool stopped_ = false;
};

} // namespace anweddol::server::classic

#endif
