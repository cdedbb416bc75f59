// The io_context most unit tests run on, with its anweddol runtime (and so
// libvirt's event loop) made up front.
#ifndef ANWEDDOL_TESTS_UNIT_TEST_CONTEXT_HPP
#define ANWEDDOL_TESTS_UNIT_TEST_CONTEXT_HPP

#include <anweddol/detail/libvirt/event_hooks.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <optional>

namespace anweddol::test {

inline boost::asio::io_context& test_context() {
    static boost::asio::io_context context;
    static const bool ready = [] {
        anweddol::runtime::of(context.get_executor());
        detail::libvirt_event_hooks::install();
        return true;
    }();
    (void)ready;
    return context;
}

/// Runs the loop until `done` holds or `limit` passes; false on timeout.
template <class Predicate>
bool run_until(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto& context = test_context();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        context.restart();
        context.run_for(std::chrono::milliseconds(5));
    }
    return true;
}

/// Runs `coroutine` on the test context and returns its result, rethrowing
/// its exception; fails the test instead of hanging when it has not
/// finished within `limit`.
template <class T>
T run_coroutine(boost::asio::awaitable<T> coroutine,
                std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    boost::asio::co_spawn(test_context(), std::move(coroutine), [&](std::exception_ptr e, T value) {
        error = e;
        if (!e)
            result.emplace(std::move(value));
        done = true;
    });
    if (!run_until([&] { return done; }, limit))
        FAIL("the coroutine did not finish within " << limit.count() << " ms");
    if (error)
        std::rethrow_exception(error);
    return std::move(*result);
}

/// Runs `operation` on the test context; fails the test after `limit`.
inline void run(boost::asio::awaitable<void> operation,
                std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    run_coroutine(
        [](boost::asio::awaitable<void> op) -> boost::asio::awaitable<bool> {
            co_await std::move(op);
            co_return true;
        }(std::move(operation)),
        limit);
}

/// The error `work()` fails with; fails the test if it succeeds.
template <class Work>
boost::system::system_error failure_of(Work work,
                                       std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    try {
        run_coroutine(
            [](Work w) -> boost::asio::awaitable<bool> {
                co_await w();
                co_return true;
            }(std::move(work)),
            limit);
    } catch (const boost::system::system_error& e) {
        return e;
    }
    FAIL("no error");
    throw;
}

} // namespace anweddol::test

#endif
