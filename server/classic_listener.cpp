#include "classic_listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <array>
#include <exception>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace anweddol::server::classic {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto as_values = asio::as_tuple(asio::use_awaitable);

std::string describe(const tcp::endpoint& endpoint) {
    return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

} // namespace

struct listener::connection : std::enable_shared_from_this<connection> {
    connection(tcp::socket s, asio::ip::address p, asio::any_io_executor ex)
        : socket(std::move(s))
        , peer(std::move(p))
        , deadline(ex) {}

    tcp::socket socket;
    asio::ip::address peer;
    asio::steady_timer deadline;
    asio::cancellation_signal cancel;
    bool timed_out = false;
    // The handler's answer, until the peer has taken it.
    std::optional<response> answered;
};

listener::listener(asio::any_io_executor executor, rsa_key key, request_handler handler,
                   listener_options options)
    : strand_(asio::make_strand(executor))
    , key_(std::move(key))
    , handler_(std::move(handler))
    , options_(std::move(options))
    , acceptor_(strand_)
    , connection_ended_(strand_) {
    if (!key_.has_private())
        throw std::invalid_argument("the classic listener needs the server's private key");
    if (options_.max_connections == 0)
        throw std::invalid_argument("the classic listener needs max_connections >= 1");
}

listener::~listener() = default;

void listener::listen() {
    const auto& endpoint = options_.endpoint;
    try {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(tcp::socket::max_listen_connections);
    } catch (const boost::system::system_error& e) {
        error_code ignored;
        acceptor_.close(ignored);
        throw boost::system::system_error(
            e.code(), "cannot listen for the classic protocol on " + describe(endpoint) +
                          " (check server.bind_address and server.listen_port)");
    }
}

tcp::endpoint listener::local_endpoint() const {
    return acceptor_.local_endpoint();
}

asio::awaitable<void> listener::async_run() {
    // The loop runs on the strand; this frame only waits for it, and passes
    // its cancellation on (co_spawn forwards the slot).
    auto run = asio::co_spawn(strand_, accept_loop(), asio::use_awaitable);
    co_await std::move(run);
}

void listener::stop() {
    asio::dispatch(strand_, [this] { close_everything(); });
}

void listener::close_everything() {
    stopped_ = true;
    error_code ignored;
    acceptor_.close(ignored);
    // A copy: a cancelled coroutine may end, and leave live_, meanwhile.
    std::vector<std::shared_ptr<connection>> connections;
    for (const auto& entry : live_)
        connections.push_back(entry.second);
    for (const auto& c : connections) {
        c->deadline.cancel();
        c->socket.close(ignored);
        c->cancel.emit(asio::cancellation_type::terminal);
    }
    connection_ended_.cancel();
}

void listener::note(const asio::ip::address& peer, std::string_view event) const {
    if (options_.log)
        options_.log(peer, event);
}

asio::awaitable<void> listener::wait_for_free_slot() {
    while (!stopped_ && live_.size() >= options_.max_connections) {
        connection_ended_.expires_at(asio::steady_timer::time_point::max());
        auto wait = connection_ended_.async_wait(as_values);
        co_await std::move(wait);
    }
}

asio::awaitable<void> listener::accept_loop() {
    // A cancelled run still drains its connections below.
    co_await asio::this_coro::throw_if_cancelled(false);
    while (!stopped_) {
        co_await wait_for_free_slot();
        if (stopped_)
            break;
        auto accept = acceptor_.async_accept(as_values);
        auto [ec, socket] = co_await std::move(accept);
        auto cancelled = co_await asio::this_coro::cancellation_state;
        if (cancelled.cancelled() != asio::cancellation_type::none)
            close_everything();
        if (stopped_ || ec == asio::error::operation_aborted)
            break;
        if (ec) {
            // Out of fds or buffers: the condition lasts, so pause instead of
            // spinning on accept.
            note({}, "accept failed: " + ec.message());
            asio::steady_timer pause(strand_, std::chrono::milliseconds(100));
            auto wait = pause.async_wait(as_values);
            co_await std::move(wait);
            continue;
        }
        error_code peer_ec;
        const auto peer = socket.remote_endpoint(peer_ec);
        if (peer_ec)
            continue; // gone already; the socket closes with its object
        if (options_.allow && !options_.allow(peer.address())) {
            note(peer.address(), "refused by the IP filter");
            continue;
        }
        if (connections_from(peer.address()) >= options_.max_connections_per_address) {
            note(peer.address(),
                 "refused: " + std::to_string(options_.max_connections_per_address) +
                     " connections from this address already");
            continue;
        }
        start_connection(std::move(socket), peer.address());
    }
    close_everything();
    while (!live_.empty()) {
        connection_ended_.expires_at(asio::steady_timer::time_point::max());
        auto wait = connection_ended_.async_wait(as_values);
        co_await std::move(wait);
    }
}

// A scan: live_ holds at most max_connections entries.
std::size_t listener::connections_from(const asio::ip::address& peer) const {
    std::size_t n = 0;
    for (const auto& entry : live_)
        n += entry.second->peer == peer;
    return n;
}

void listener::start_connection(tcp::socket socket, const asio::ip::address& peer) {
    auto c = std::make_shared<connection>(std::move(socket), peer, strand_);
    const std::uint64_t id = next_id_++;
    live_.emplace(id, c);
    arm_deadline(*c);
    auto slot = c->cancel.slot();
    asio::co_spawn(strand_, serve(c),
                   asio::bind_cancellation_slot(slot, [this, id](std::exception_ptr) {
                       live_.erase(id);
                       connection_ended_.cancel();
                   }));
}

void listener::arm_deadline(connection& c) {
    c.deadline.expires_after(options_.timeout);
    // Weak: an expiry already queued when the connection ends must not
    // touch it.
    c.deadline.async_wait([weak = c.weak_from_this()](error_code ec) {
        const auto c = weak.lock();
        if (ec || !c)
            return; // disarmed, or the connection ended
        c->timed_out = true;
        error_code ignored;
        c->socket.close(ignored);
    });
}

asio::awaitable<void> listener::serve(std::shared_ptr<connection> c) {
    bool served = false;
    try {
        server_session session(key_, options_.bounds);
        served = co_await exchange(*c, session);
        if (served)
            note(c->peer, "served");
    } catch (const std::exception& e) {
        note(c->peer, std::string("dropped: ") + e.what());
    }
    // A successful answer the peer never took (it hung up, stalled past
    // its deadline, or the listener stopped): a CREATE's container that no
    // one has the credentials of.
    if (!served && c->answered && c->answered->success && options_.undelivered)
        options_.undelivered(*c->answered);
    c->deadline.cancel();
    error_code ignored;
    c->socket.close(ignored);
}

// Runs the session to its end; true when the exchange completed.
asio::awaitable<bool> listener::exchange(connection& c, server_session& session) {
    std::array<std::uint8_t, 4096> buffer;
    for (;;) {
        const std::string out = session.take_output();
        if (!out.empty()) {
            auto write = asio::async_write(c.socket, asio::buffer(out), as_values);
            auto [ec, n] = co_await std::move(write);
            if (ec) {
                note(c.peer, c.timed_out ? "dropped: past its deadline"
                                         : "dropped: cannot write: " + ec.message());
                co_return false;
            }
        }
        switch (session.current()) {
        case server_session::phase::need_input: {
            const std::size_t size = std::min(session.bytes_needed(), buffer.size());
            auto read = asio::async_read(c.socket, asio::buffer(buffer.data(), size), as_values);
            auto [ec, n] = co_await std::move(read);
            if (ec) {
                note(c.peer,
                     c.timed_out ? "dropped: past its deadline" : "dropped: " + ec.message());
                co_return false;
            }
            session.feed(std::span<const std::uint8_t>(buffer.data(), n));
            break;
        }
        case server_session::phase::request_ready:
        case server_session::phase::request_rejected:
            co_await answer(c, session);
            break;
        case server_session::phase::finished:
            co_return true;
        case server_session::phase::failed:
            // Its last output (a "0", where the reference sends one) is out.
            note(c.peer, "dropped: " + session.failure());
            co_return false;
        }
    }
}

// Asks the handler (or the envelope's validation) for the response and gives
// it to the session; the handler's time is outside the peer's deadline.
asio::awaitable<void> listener::answer(connection& c, server_session& session) {
    response reply;
    if (session.current() == server_session::phase::request_rejected) {
        note(c.peer, "unreadable request: " + session.failure());
        reply = make_response(false, message::bad_request, {}, session.failure());
    } else {
        auto parsed = parse_request(session.request_json());
        if (auto* bad = std::get_if<response>(&parsed)) {
            reply = std::move(*bad);
        } else {
            auto& req = std::get<request>(parsed);
            req.peer = c.peer;
            req.via = transport::classic;
            c.deadline.cancel();
            try {
                auto handled = handler_(std::move(req));
                reply = co_await std::move(handled);
            } catch (const std::exception& e) {
                // The handler promises not to throw; if it does anyway, the
                // peer gets what the reference sends for an exception.
                // Cancellation (stop) ends the connection instead.
                if (stopped_)
                    throw;
                note(c.peer, std::string("the request handler failed: ") + e.what());
                reply = make_response(false, message::internal_error);
            }
            c.answered = reply;
            if (c.timed_out)
                throw std::runtime_error("past its deadline");
            arm_deadline(c);
        }
    }
    std::string text = serialize(reply);
    session.respond(text);
    wipe(text); // a CREATE's answer carries the client's token
}

} // namespace anweddol::server::classic
