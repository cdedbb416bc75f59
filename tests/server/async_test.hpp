// Running coroutine tests of the server's transports: each test owns its
// io_context, and a test that has not finished within its limit fails
// instead of hanging.
#ifndef ANWEDDOL_TESTS_SERVER_ASYNC_TEST_HPP
#define ANWEDDOL_TESTS_SERVER_ASYNC_TEST_HPP

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <filesystem>

namespace anweddol::server::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

/// Runs the loop until `done()` holds; false when `limit` passed first.
template <class Predicate>
bool run_until(asio::io_context& io, Predicate done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
            return false;
        io.restart();
        io.run_one_for(deadline - now);
    }
    return true;
}

/// Runs `test` on `io` to its end, rethrowing what it threw (a failed
/// REQUIRE); fails the test when it has not ended within `limit`.
inline void run(asio::io_context& io, asio::awaitable<void> test,
                std::chrono::milliseconds limit = 10s) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, std::move(test), [&](std::exception_ptr e) {
        error = e;
        done = true;
    });
    if (!run_until(
            io, [&] { return done; }, limit))
        FAIL("the test coroutine did not finish within " << limit.count() << " ms");
    if (error)
        std::rethrow_exception(error);
}

/// The process's open descriptors now.
inline std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++count;
    return count;
}

/// Paces an attack (a slow sender); never a synchronisation.
inline asio::awaitable<void> pause(std::chrono::milliseconds duration) {
    asio::steady_timer timer(co_await asio::this_coro::executor, duration);
    auto waiting = timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_await std::move(waiting);
}

/// Reads until the peer closes: the error that ended it (eof, or a reset
/// when the peer closed with our bytes unread); what came before is dropped.
template <class Socket>
asio::awaitable<boost::system::error_code> until_closed(Socket& socket) {
    char sink[4096];
    for (;;) {
        auto reading =
            socket.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            co_return ec;
    }
}

inline bool is_closed_by_peer(const boost::system::error_code& ec) {
    return ec == asio::error::eof || ec == asio::error::connection_reset;
}

} // namespace anweddol::server::test

#endif
