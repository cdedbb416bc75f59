//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_RACE_HPP
#define ANWEDDOL_DETAIL_ASYNC_RACE_HPP

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/multiple_exceptions.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <exception>

namespace anweddol::detail {

// Helpers for `||` races of awaitable operators, whose branches report
// their ends as values: a branch that throws is just ignored.

/// Rethrows what ended a race whose every branch failed (all were
/// cancelled, usually): nested races wrap their failures in
/// multiple_exceptions too, so unwrap down to the first real one.
[[noreturn]] inline void rethrow_first(const boost::asio::multiple_exceptions& e) {
    std::exception_ptr first = e.first_exception();
    for (;;) {
        try {
            std::rethrow_exception(first);
        } catch (const boost::asio::multiple_exceptions& nested) {
            first = nested.first_exception();
        }
    }
}

inline bool is_cancellation(const boost::system::system_error& e) {
    return e.code() == boost::asio::error::operation_aborted;
}

/// A branch that never wins: it ends only when the race cancels it.
template <class T>
boost::asio::awaitable<T> wait_forever() {
    boost::asio::steady_timer never(co_await boost::asio::this_coro::executor,
                                    std::chrono::steady_clock::time_point::max());
    co_await never.async_wait(boost::asio::use_awaitable);
    throw boost::system::system_error(boost::asio::error::operation_aborted);
}

} // namespace anweddol::detail

#endif
