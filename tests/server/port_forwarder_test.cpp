// The port forward over loopback, to a local server standing for the
// guest's sshd: both directions and their half-closes, the allocator's
// atomic choice of a port, the cap, the filter, and a close() that leaves
// nothing open.
#include "async_test.hpp"
#include "port_forwarder.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace server = anweddol::server;
using namespace server::test;
using generic_socket = asio::generic::stream_protocol::socket;

namespace {

const auto loopback = asio::ip::make_address("127.0.0.1");

// A range of `size` ports somewhere in 20000-29999, so that tests running
// at once rarely meet (the allocator skips a port that is taken anyway).
std::pair<std::uint16_t, std::uint16_t> some_range(std::uint16_t size) {
    std::random_device random;
    const auto low = static_cast<std::uint16_t>(20000 + random() % (10000 - size));
    return {low, static_cast<std::uint16_t>(low + size - 1)};
}

// The guest's side: a server that reads everything until the client's end
// of stream, and only then sends it back and closes. A reply can only come
// through the forward if it passed the client's half-close on, and reach
// the client only if the forward goes on relaying after it.
struct guest_bed {
    guest_bed() {
        asio::co_spawn(io, serve(), asio::detached);
        const auto [low, high] = some_range(64);
        ports.emplace(loopback, low, high);
    }

    asio::awaitable<void> serve() {
        for (;;) {
            auto accepting = guest.async_accept(asio::as_tuple(asio::use_awaitable));
            auto [ec, socket] = co_await std::move(accepting);
            if (ec)
                co_return;
            asio::co_spawn(io, answer_at_end(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> answer_at_end(tcp::socket socket) {
        ++open;
        changed.cancel();
        std::string received;
        auto reading = asio::async_read(socket, asio::dynamic_buffer(received),
                                        asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec == asio::error::eof) {
            auto writing = asio::async_write(socket, asio::buffer(received),
                                             asio::as_tuple(asio::use_awaitable));
            co_await std::move(writing);
        }
        socket.close();
        --open;
        changed.cancel();
    }

    // Until `done()` holds, woken by each change of `open` and `hanging`.
    template <class Predicate>
    asio::awaitable<void> until(Predicate done) {
        while (!done()) {
            changed.expires_at(std::chrono::steady_clock::time_point::max());
            auto waiting = changed.async_wait(asio::as_tuple(asio::use_awaitable));
            co_await std::move(waiting);
        }
    }

    // Connects to the guest, or hangs (until cancelled) while `hang`.
    server::connect_function connect() {
        return [this]() -> asio::awaitable<generic_socket> {
            if (hang) {
                ++hanging;
                changed.cancel();
                asio::steady_timer forever(io, std::chrono::hours(1));
                auto waiting = forever.async_wait(asio::use_awaitable);
                co_await std::move(waiting);
            }
            ++connects;
            generic_socket socket(io);
            auto connecting = socket.async_connect(
                asio::generic::stream_protocol::endpoint(guest.local_endpoint()),
                asio::use_awaitable);
            co_await std::move(connecting);
            co_return socket;
        };
    }

    asio::io_context io;
    tcp::acceptor guest{io, tcp::endpoint(loopback, 0)};
    std::optional<server::port_allocator> ports;
    std::size_t open = 0; // guest connections alive
    std::size_t connects = 0;
    bool hang = false;
    std::size_t hanging = 0; // connections that hung
    asio::steady_timer changed{io};
};

// `source`: the loopback address to connect from (any of 127.0.0.0/8 is
// this host's), to stand for another peer; unspecified: the kernel's choice.
asio::awaitable<tcp::socket> connect_to(std::uint16_t port,
                                        asio::ip::address source = asio::ip::address()) {
    tcp::socket socket(co_await asio::this_coro::executor);
    if (!source.is_unspecified()) {
        socket.open(tcp::v4());
        socket.bind(tcp::endpoint(source, 0));
    }
    auto connecting = socket.async_connect(tcp::endpoint(loopback, port), asio::use_awaitable);
    co_await std::move(connecting);
    co_return socket;
}

// Sends `text`, half-closes, and reads the reply to its end.
asio::awaitable<std::string> round_trip(tcp::socket& socket, std::string text) {
    auto writing = asio::async_write(socket, asio::buffer(text), asio::use_awaitable);
    co_await std::move(writing);
    socket.shutdown(tcp::socket::shutdown_send);
    std::string reply;
    auto reading =
        asio::async_read(socket, asio::dynamic_buffer(reply), asio::as_tuple(asio::use_awaitable));
    auto [ec, bytes] = co_await std::move(reading);
    CHECK(ec == asio::error::eof);
    co_return reply;
}

} // namespace

TEST_CASE("port forward: relays a client to the guest and back, a half-close going through both "
          "ways, and counts the bytes") {
    guest_bed bed;
    server::port_forward forward(bed.ports->acquire(bed.io.get_executor()), bed.connect());
    forward.start();
    const std::string text(100 * 1024, 'x'); // more than a relay buffer
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto connecting = connect_to(forward.port());
        auto client = co_await std::move(connecting);
        auto exchanging = round_trip(client, text);
        const auto reply = co_await std::move(exchanging);
        CHECK(reply == text);
    }());
    CHECK(run_until(bed.io, [&] { return forward.stats().connections == 0; }));
    const auto stats = forward.stats();
    CHECK(stats.total == 1);
    CHECK(stats.refused == 0);
    CHECK(stats.bytes_to_guest == text.size());
    CHECK(stats.bytes_from_guest == text.size());
}

TEST_CASE("port allocator: threads acquiring at once never get the same port, and an exhausted "
          "range is address_in_use naming it") {
    asio::io_context io;
    const auto [low, high] = some_range(40);
    server::port_allocator ports(loopback, low, high);
    std::mutex mutex;
    std::vector<server::bound_port> bound;
    std::vector<std::string> refusals;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 16; ++i) {
                try {
                    auto port = ports.acquire(io.get_executor());
                    const std::lock_guard lock(mutex);
                    bound.push_back(std::move(port));
                } catch (const boost::system::system_error& e) {
                    const std::lock_guard lock(mutex);
                    CHECK(e.code() == asio::error::address_in_use);
                    refusals.push_back(e.what());
                }
            }
        });
    for (auto& thread : threads)
        thread.join();
    std::set<std::uint16_t> distinct;
    for (const auto& port : bound) {
        distinct.insert(port.port());
        CHECK(port.port() >= low);
        CHECK(port.port() <= high);
    }
    CHECK(distinct.size() == bound.size());
    CHECK(bound.size() + refusals.size() == 64);
    CHECK(bound.size() >= 30); // a few may be held by other programs
    REQUIRE_FALSE(refusals.empty());
    CHECK_THAT(refusals.front(),
               Catch::Contains("[" + std::to_string(low) + ", " + std::to_string(high) + "]"));
    CHECK(ports.in_use() == bound.size());
    bound.clear();
    CHECK(ports.in_use() == 0);
}

TEST_CASE("port allocator: a port another program holds is skipped") {
    asio::io_context io;
    // Two neighbouring free ports; a stranger listens on the first.
    for (int attempt = 0; attempt < 50; ++attempt) {
        tcp::acceptor stranger(io, tcp::endpoint(loopback, 0));
        const auto held = stranger.local_endpoint().port();
        if (held == 65535)
            continue;
        boost::system::error_code ec;
        tcp::acceptor probe(io);
        probe.open(tcp::v4());
        probe.bind(tcp::endpoint(loopback, static_cast<std::uint16_t>(held + 1)), ec);
        if (ec)
            continue;
        probe.close();
        server::port_allocator ports(loopback, held, static_cast<std::uint16_t>(held + 1));
        for (int i = 0; i < 4; ++i) { // whichever port it tries first
            auto port = ports.acquire(io.get_executor());
            CHECK(port.port() == held + 1);
        }
        auto kept = ports.acquire(io.get_executor());
        CHECK_THROWS_AS(ports.acquire(io.get_executor()), boost::system::system_error);
        CHECK_THROWS_AS(ports.acquire(io.get_executor(), held), boost::system::system_error);
        return;
    }
    FAIL("found no two neighbouring free ports");
}

TEST_CASE("port allocator: a recorded port is bound again after its forward closed with "
          "connections in TIME_WAIT, and never while a forward holds it") {
    guest_bed bed;
    auto first = bed.ports->acquire(bed.io.get_executor());
    const auto recorded = first.port();
    CHECK_THROWS_AS(bed.ports->acquire(bed.io.get_executor(), recorded),
                    boost::system::system_error);
    {
        server::port_forward forward(std::move(first), bed.connect());
        forward.start();
        run(bed.io, [&]() -> asio::awaitable<void> {
            auto connecting = connect_to(recorded);
            auto client = co_await std::move(connecting);
            auto relaying = bed.until([&] { return bed.open == 1; });
            co_await std::move(relaying);
            // The forward closes first: its end of the connection waits in
            // TIME_WAIT, as after a server's restart.
            forward.close();
            auto closing = until_closed(client);
            const auto closed = co_await std::move(closing);
            CHECK(is_closed_by_peer(closed));
        }());
    }
    auto again = bed.ports->acquire(bed.io.get_executor(), recorded);
    CHECK(again.port() == recorded);
    CHECK_THROWS_WITH(bed.ports->acquire(bed.io.get_executor(), recorded),
                      Catch::Contains("another port forward holds"));
}

TEST_CASE("port forward: close() ends every relay and every connection being made at once, and "
          "leaves no descriptor") {
    guest_bed bed;
    const auto before = open_descriptors();
    server::port_forward_options options;
    options.connect_timeout = std::chrono::hours(1);
    std::optional<server::port_forward> forward;
    forward.emplace(bed.ports->acquire(bed.io.get_executor()), bed.connect(), options);
    forward->start();
    run(bed.io, [&]() -> asio::awaitable<void> {
        std::vector<tcp::socket> clients;
        for (int i = 0; i < 2; ++i) {
            auto connecting = connect_to(forward->port());
            clients.push_back(co_await std::move(connecting));
        }
        // Relaying: the guest holds both connections.
        auto relaying = bed.until([&] { return bed.open == 2; });
        co_await std::move(relaying);
        bed.hang = true;
        auto connecting = connect_to(forward->port());
        clients.push_back(co_await std::move(connecting));
        auto hanging = bed.until([&] { return bed.hanging == 1; });
        co_await std::move(hanging);
        CHECK(forward->stats().connections == 3);
        forward->close();
        for (auto& client : clients) {
            auto closing = until_closed(client);
            const auto closed = co_await std::move(closing);
            CHECK(is_closed_by_peer(closed));
            client.close();
        }
    }());
    CHECK(run_until(bed.io, [&] { return forward->stats().connections == 0 && bed.open == 0; }));
    CHECK(bed.ports->in_use() == 0);
    CHECK(open_descriptors() == before);
    forward.reset();
    CHECK(open_descriptors() == before);
}

TEST_CASE("port forward: beyond max_connections a client is accepted and closed at once, and a "
          "freed place is taken again") {
    guest_bed bed;
    server::port_forward_options options;
    options.max_connections = 2;
    server::port_forward forward(bed.ports->acquire(bed.io.get_executor()), bed.connect(), options);
    forward.start();
    run(bed.io, [&]() -> asio::awaitable<void> {
        std::vector<tcp::socket> clients;
        for (int i = 0; i < 2; ++i) {
            auto connecting = connect_to(forward.port());
            clients.push_back(co_await std::move(connecting));
        }
        auto connecting = connect_to(forward.port());
        auto third = co_await std::move(connecting);
        auto closing = until_closed(third);
        const auto closed = co_await std::move(closing);
        CHECK(is_closed_by_peer(closed));
        CHECK(forward.stats().refused == 1);
        CHECK(forward.stats().connections == 2);

        auto exchanging = round_trip(clients[0], "first");
        const auto reply = co_await std::move(exchanging);
        CHECK(reply == "first");
        // The forward's count has no event to wait on.
        while (forward.stats().connections > 1) {
            auto pausing = pause(5ms);
            co_await std::move(pausing);
        }
        auto reconnecting = connect_to(forward.port());
        auto fourth = co_await std::move(reconnecting);
        auto again = round_trip(fourth, "fourth");
        const auto fourth_reply = co_await std::move(again);
        CHECK(fourth_reply == "fourth");
        CHECK(forward.stats().refused == 1);
        CHECK(forward.stats().total == 3);
    }());
}

TEST_CASE(
    "port forward: one address holds at most max_connections_per_address, another is relayed") {
    guest_bed bed;
    server::port_forward_options options;
    options.max_connections = 4;
    options.max_connections_per_address = 1;
    server::port_forward forward(bed.ports->acquire(bed.io.get_executor()), bed.connect(), options);
    forward.start();
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto connecting = connect_to(forward.port());
        auto first = co_await std::move(connecting);
        auto again = connect_to(forward.port());
        auto second = co_await std::move(again);
        auto closing = until_closed(second);
        const auto closed = co_await std::move(closing);
        CHECK(is_closed_by_peer(closed));
        CHECK(forward.stats().refused == 1);
        auto other_connecting = connect_to(forward.port(), asio::ip::make_address("127.0.0.2"));
        auto other = co_await std::move(other_connecting);
        auto exchanging = round_trip(other, "other");
        const auto reply = co_await std::move(exchanging);
        CHECK(reply == "other");
        auto first_exchanging = round_trip(first, "first");
        const auto first_reply = co_await std::move(first_exchanging);
        CHECK(first_reply == "first");
    }());
}

TEST_CASE("port forward: a client the IP filter refuses is closed without reaching the guest") {
    guest_bed bed;
    server::port_forward_options options;
    options.allow = [](const asio::ip::address& a) {
        return a != loopback;
    };
    server::port_forward forward(bed.ports->acquire(bed.io.get_executor()), bed.connect(), options);
    forward.start();
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto connecting = connect_to(forward.port());
        auto client = co_await std::move(connecting);
        auto closing = until_closed(client);
        const auto closed = co_await std::move(closing);
        CHECK(is_closed_by_peer(closed));
    }());
    CHECK(bed.connects == 0);
    CHECK(forward.stats().refused == 1);
    CHECK(forward.stats().total == 0);
}

TEST_CASE("port forward: a guest that refuses the connection, or does not answer within "
          "connect_timeout, closes the client") {
    guest_bed bed;
    server::port_forward_options options;
    options.connect_timeout = 200ms;
    server::port_forward forward(bed.ports->acquire(bed.io.get_executor()), bed.connect(), options);
    forward.start();
    run(bed.io, [&]() -> asio::awaitable<void> {
        bed.guest.close(); // connection refused
        auto connecting = connect_to(forward.port());
        auto refused = co_await std::move(connecting);
        auto closing = until_closed(refused);
        const auto closed = co_await std::move(closing);
        CHECK(is_closed_by_peer(closed));

        bed.hang = true;
        const auto began = std::chrono::steady_clock::now();
        auto connecting_again = connect_to(forward.port());
        auto waiting = co_await std::move(connecting_again);
        auto timing_out = until_closed(waiting);
        const auto timed_out = co_await std::move(timing_out);
        CHECK(is_closed_by_peer(timed_out));
        CHECK(std::chrono::steady_clock::now() - began >= 150ms);
    }());
    CHECK(run_until(bed.io, [&] { return forward.stats().connections == 0; }));
}
