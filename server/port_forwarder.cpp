#include "port_forwarder.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <list>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace anweddol::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using generic_socket = asio::generic::stream_protocol::socket;

// The ports handed out, shared by the allocator and every bound_port (which
// may outlive it).
struct bound_port::registry {
    std::mutex mutex;
    std::set<std::uint16_t> ports;
    std::minstd_rand random{std::random_device{}()};
};

bound_port::bound_port(tcp::acceptor acceptor, std::uint16_t port, std::shared_ptr<registry> owner)
    : acceptor_(std::move(acceptor))
    , port_(port)
    , owner_(std::move(owner)) {}

bound_port::bound_port(bound_port&& other) noexcept
    : acceptor_(std::move(other.acceptor_))
    , port_(other.port_)
    , owner_(std::move(other.owner_)) {
    other.acceptor_.reset();
    other.port_ = 0;
}

bound_port& bound_port::operator=(bound_port&& other) noexcept {
    if (this != &other) {
        release();
        acceptor_ = std::move(other.acceptor_);
        port_ = other.port_;
        owner_ = std::move(other.owner_);
        other.acceptor_.reset();
        other.port_ = 0;
    }
    return *this;
}

bound_port::~bound_port() {
    release();
}

void bound_port::release() noexcept {
    if (acceptor_) {
        boost::system::error_code ignored;
        acceptor_->close(ignored);
    }
    if (owner_) {
        const std::lock_guard lock(owner_->mutex);
        owner_->ports.erase(port_);
        owner_.reset();
    }
}

port_allocator::port_allocator(asio::ip::address bind_address, std::uint16_t low,
                               std::uint16_t high)
    : bind_address_(std::move(bind_address))
    , low_(low)
    , high_(high)
    , registry_(std::make_shared<bound_port::registry>()) {
    if (low == 0 || low > high)
        throw std::invalid_argument("port_forwarding.port_range must be [low, high] with 1 <= low "
                                    "<= high <= 65535, not [" +
                                    std::to_string(low) + ", " + std::to_string(high) + "]");
}

namespace {

// Opens, binds and listens: the acceptor, or the bind's error.
tcp::acceptor listen_on(const asio::any_io_executor& executor, const tcp::endpoint& endpoint,
                        boost::system::error_code& ec) {
    tcp::acceptor acceptor(executor);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec)
        acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(endpoint, ec);
    if (!ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        boost::system::error_code ignored;
        acceptor.close(ignored);
    }
    return acceptor;
}

bool taken_by_another(const boost::system::error_code& ec) {
    return ec == asio::error::address_in_use || ec == asio::error::access_denied;
}

} // namespace

bound_port port_allocator::acquire(const asio::any_io_executor& executor) {
    const std::lock_guard lock(registry_->mutex);
    const unsigned count = unsigned(high_) - low_ + 1;
    const unsigned first = std::uniform_int_distribution<unsigned>(0, count - 1)(registry_->random);
    for (unsigned i = 0; i < count; ++i) {
        const auto port = static_cast<std::uint16_t>(low_ + (first + i) % count);
        if (registry_->ports.contains(port))
            continue;
        boost::system::error_code ec;
        auto acceptor = listen_on(executor, tcp::endpoint(bind_address_, port), ec);
        if (taken_by_another(ec))
            continue;
        if (ec)
            throw boost::system::system_error(ec, "cannot listen for a port forward on " +
                                                      bind_address_.to_string() + " port " +
                                                      std::to_string(port));
        registry_->ports.insert(port);
        return bound_port(std::move(acceptor), port, registry_);
    }
    throw boost::system::system_error(
        asio::error::address_in_use,
        "no free port in port_forwarding.port_range [" + std::to_string(low_) + ", " +
            std::to_string(high_) + "] on " + bind_address_.to_string() +
            ": widen the range, or free ports that other programs hold");
}

bound_port port_allocator::acquire(const asio::any_io_executor& executor, std::uint16_t port) {
    if (port == 0)
        throw boost::system::system_error(asio::error::invalid_argument,
                                          "a port forward cannot reopen port 0");
    const std::lock_guard lock(registry_->mutex);
    const std::string where = bind_address_.to_string() + " port " + std::to_string(port);
    if (registry_->ports.contains(port))
        throw boost::system::system_error(asio::error::address_in_use,
                                          "another port forward holds " + where);
    boost::system::error_code ec;
    auto acceptor = listen_on(executor, tcp::endpoint(bind_address_, port), ec);
    if (ec)
        throw boost::system::system_error(ec, "cannot reopen the port forward on " + where);
    registry_->ports.insert(port);
    return bound_port(std::move(acceptor), port, registry_);
}

std::size_t port_allocator::in_use() const {
    const std::lock_guard lock(registry_->mutex);
    return registry_->ports.size();
}

// One forwarded client: its socket, the guest's once connected, and the
// deadline of the connection to the guest (which close() cancels too).
struct relay_connection {
    relay_connection(tcp::socket socket, asio::ip::address from)
        : client(std::move(socket))
        , peer(std::move(from))
        , deadline(client.get_executor()) {}
    tcp::socket client;
    asio::ip::address peer;
    std::optional<generic_socket> guest;
    asio::steady_timer deadline;

    void close() {
        boost::system::error_code ignored;
        client.close(ignored);
        if (guest)
            guest->close(ignored);
        deadline.cancel();
    }
};

struct port_forward::state {
    state(bound_port port, connect_function connect, port_forward_options options)
        : port(std::move(port))
        , connect(std::move(connect))
        , options(std::move(options)) {}

    bound_port port;
    connect_function connect;
    port_forward_options options;
    std::list<relay_connection> connections;
    bool closed = false;
    std::atomic<std::size_t> now{0};
    std::atomic<std::uint64_t> total{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> to_guest{0};
    std::atomic<std::uint64_t> from_guest{0};
};

namespace {

using state = port_forward::state;
using namespace asio::experimental::awaitable_operators;

// The connect function's socket, or nullopt when it failed or was
// cancelled: an error as a value, so that the race below ends with it.
asio::awaitable<std::optional<generic_socket>> connect_as_value(const connect_function& connect) {
    std::optional<generic_socket> connected;
    try {
        auto connecting = connect();
        connected.emplace(co_await std::move(connecting));
    } catch (const std::exception&) {
    }
    co_return connected;
}

// One direction: what `from` sends goes to `to`; its end of stream becomes
// `to`'s shutdown(send), and the other direction goes on. A failure ends
// both.
template <class From, class To>
asio::awaitable<void> pump(From& from, To& to, relay_connection& c, std::size_t buffer_bytes,
                           std::atomic<std::uint64_t>& counter) {
    std::vector<char> buffer(buffer_bytes);
    for (;;) {
        auto reading =
            from.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
        auto [read_error, bytes] = co_await std::move(reading);
        if (read_error == asio::error::eof) {
            boost::system::error_code ignored;
            to.shutdown(asio::socket_base::shutdown_send, ignored);
            co_return;
        }
        if (read_error)
            break;
        auto writing = asio::async_write(to, asio::buffer(buffer.data(), bytes),
                                         asio::as_tuple(asio::use_awaitable));
        auto [write_error, written] = co_await std::move(writing);
        if (write_error)
            break;
        counter += written;
    }
    c.close();
}

asio::awaitable<void> relay(std::shared_ptr<state> s, std::list<relay_connection>::iterator it) {
    auto& c = *it;
    c.deadline.expires_after(s->options.connect_timeout);
    auto racing =
        connect_as_value(s->connect) || c.deadline.async_wait(asio::as_tuple(asio::use_awaitable));
    auto raced = co_await std::move(racing);
    if (raced.index() == 0 && std::get<0>(raced) && !s->closed && c.client.is_open()) {
        c.guest.emplace(std::move(*std::get<0>(raced)));
        const std::size_t size = s->options.buffer_bytes;
        auto both = pump(c.client, *c.guest, c, size, s->to_guest) &&
                    pump(*c.guest, c.client, c, size, s->from_guest);
        co_await std::move(both);
    }
    c.close();
    s->connections.erase(it);
    --s->now;
}

// A scan: a forward holds at most max_connections.
std::size_t connections_from(const state& s, const asio::ip::address& peer) {
    std::size_t n = 0;
    for (const auto& connection : s.connections)
        n += connection.peer == peer;
    return n;
}

// Accepts until closed. A client over the caps, or refused by the filter,
// is closed at once: a flood costs an accept and a close each.
asio::awaitable<void> accept_loop(std::shared_ptr<state> s) {
    auto& acceptor = s->port.acceptor();
    asio::steady_timer backoff(acceptor.get_executor());
    while (!s->closed) {
        auto accepting = acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        auto [ec, socket] = co_await std::move(accepting);
        if (s->closed || ec == asio::error::operation_aborted)
            co_return;
        if (ec) {
            // Out of descriptors: the connection stays in the backlog, and an
            // immediate retry would spin.
            backoff.expires_after(std::chrono::milliseconds(200));
            auto waiting = backoff.async_wait(asio::as_tuple(asio::use_awaitable));
            co_await std::move(waiting);
            continue;
        }
        boost::system::error_code peer_error;
        const auto peer = socket.remote_endpoint(peer_error).address();
        if (peer_error || s->now >= s->options.max_connections ||
            connections_from(*s, peer) >= s->options.max_connections_per_address ||
            (s->options.allow && !s->options.allow(peer))) {
            boost::system::error_code ignored;
            socket.close(ignored);
            ++s->refused;
            continue;
        }
        ++s->now;
        ++s->total;
        s->connections.emplace_back(std::move(socket), peer);
        asio::co_spawn(acceptor.get_executor(), relay(s, std::prev(s->connections.end())),
                       asio::detached);
    }
}

} // namespace

port_forward::port_forward(bound_port port, connect_function connect, port_forward_options options)
    : port_(port.port())
    , state_(std::make_shared<state>(std::move(port), std::move(connect), std::move(options))) {}

port_forward::~port_forward() {
    close();
}

void port_forward::start() {
    asio::co_spawn(state_->port.acceptor().get_executor(), accept_loop(state_), asio::detached);
}

void port_forward::close() {
    state_->closed = true;
    state_->port.release();
    for (auto& connection : state_->connections)
        connection.close();
}

port_forward_stats port_forward::stats() const {
    return {state_->now.load(), state_->total.load(), state_->refused.load(),
            state_->to_guest.load(), state_->from_guest.load()};
}

} // namespace anweddol::server
