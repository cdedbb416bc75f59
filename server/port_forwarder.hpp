// The per-container port forward that replaces the reference's socat: a
// host port of `port_forwarding.port_range`, chosen and bound in one step
// (the reference checks one port and gives socat another), relaying each
// client to the guest's SSH port on the io_context.
#ifndef ANWEDDOL_SERVER_PORT_FORWARDER_HPP
#define ANWEDDOL_SERVER_PORT_FORWARDER_HPP

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

namespace anweddol::server {

/// A listening port that a `port_allocator` handed out: the port is the
/// holder's until `release()` or destruction, when the allocator may hand it
/// out again. Move-only.
class bound_port {
public:
    bound_port() = default;
    bound_port(bound_port&& other) noexcept;
    bound_port& operator=(bound_port&& other) noexcept;
    ~bound_port();

    std::uint16_t port() const { return port_; }
    explicit operator bool() const { return owner_ != nullptr; }
    /// The listening socket (precondition: `*this` holds a port).
    boost::asio::ip::tcp::acceptor& acceptor() { return *acceptor_; }

    /// Closes the listening socket and gives the port back. Idempotent.
    void release() noexcept;

    struct registry; // the allocator's ports in use (port_forwarder.cpp)

private:
    friend class port_allocator;
    bound_port(boost::asio::ip::tcp::acceptor acceptor, std::uint16_t port,
               std::shared_ptr<registry> owner);

    std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
    std::uint16_t port_ = 0;
    std::shared_ptr<registry> owner_;
};

/// The ports of the range [low, high] on the bind address. Thread-safe: a
/// port is checked against the ports handed out and bound under one lock, so
/// two callers never get the same one; a port some other program holds fails
/// to bind and is skipped. The listening sockets use SO_REUSEADDR (a port
/// whose old connections linger in TIME_WAIT after a restart can be bound
/// again) but never SO_REUSEPORT (no second listener on a port).
class port_allocator {
public:
    /// Throws std::invalid_argument when low is 0 or above high.
    port_allocator(boost::asio::ip::address bind_address, std::uint16_t low, std::uint16_t high);

    /// A free port of the range, bound and listening, its acceptor on
    /// `executor`. Tries the ports from a random one on, each once. Throws
    /// boost::system::system_error: address_in_use naming the range when
    /// every port is taken; the bind's own error (say, the bind address is
    /// not one of this host's) at once.
    bound_port acquire(const boost::asio::any_io_executor& executor);

    /// `port` itself (a container's recorded port, reopened after a
    /// restart), even outside the range. Throws boost::system::system_error:
    /// address_in_use when it is handed out already or another program
    /// holds it, invalid_argument for port 0.
    bound_port acquire(const boost::asio::any_io_executor& executor, std::uint16_t port);

    /// Ports handed out and not given back.
    std::size_t in_use() const;

    std::uint16_t low() const { return low_; }
    std::uint16_t high() const { return high_; }

private:
    boost::asio::ip::address bind_address_;
    std::uint16_t low_;
    std::uint16_t high_;
    std::shared_ptr<bound_port::registry> registry_;
};

/// Connects a forwarded client to the guest's SSH port: directly to
/// guest-ip:22, or through the host's SSH jump. Throws (or is cancelled) on
/// failure; the client is then closed.
using connect_function =
    std::function<boost::asio::awaitable<boost::asio::generic::stream_protocol::socket>()>;

struct port_forward_options {
    /// Clients relayed at once; one more is accepted and closed at once.
    std::size_t max_connections = 16;
    /// Of them, from one address: beyond it a client is accepted and closed
    /// at once, so that a stranger who found the port cannot take every
    /// place and lock the tenant out of its own container.
    std::size_t max_connections_per_address = 8;
    /// Per direction and connection.
    std::size_t buffer_bytes = 16 * 1024;
    /// For `connect_function` to reach the guest.
    std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(15);
    /// The IP filter: a client it refuses is closed at once. Empty: anyone.
    std::function<bool(const boost::asio::ip::address&)> allow;
};

struct port_forward_stats {
    std::size_t connections = 0;      // connecting or relaying now
    std::uint64_t total = 0;          // accepted and let through since start
    std::uint64_t refused = 0;        // closed at once: over the cap, or refused by `allow`
    std::uint64_t bytes_to_guest = 0; // relayed from clients to the guest
    std::uint64_t bytes_from_guest = 0;
};

/// One container's forward: accepts on its bound port, connects each client
/// to the guest, and relays both ways (a half-close goes through as a
/// shutdown of the other side's sending end). Runs on the executor of the
/// port's acceptor: with an io_context run by several threads, give the
/// allocator a strand. Not thread-safe, except `stats()`.
class port_forward {
public:
    /// Starts nothing. Precondition: `port` holds a port.
    port_forward(bound_port port, connect_function connect, port_forward_options options = {});
    port_forward(const port_forward&) = delete;
    port_forward& operator=(const port_forward&) = delete;
    /// Closes it.
    ~port_forward();

    /// Accepts in the background until close().
    void start();

    /// Closes the listener, every client and guest connection, and cancels
    /// the connections being made; gives the port back. No descriptor of its
    /// own stays open (a `connect_function` still running closes its socket
    /// when its cancellation completes, on the executor). Idempotent.
    void close();

    std::uint16_t port() const { return port_; }
    port_forward_stats stats() const;

    struct state; // shared with its coroutines (port_forwarder.cpp)

private:
    std::uint16_t port_;
    std::shared_ptr<state> state_;
};

} // namespace anweddol::server

#endif
