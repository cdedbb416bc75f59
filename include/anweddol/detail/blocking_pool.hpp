//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_BLOCKING_POOL_HPP
#define ANWEDDOL_DETAIL_BLOCKING_POOL_HPP

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

namespace anweddol::detail {

/// The worker threads that every blocking C call (a libvirt RPC, hashing a
/// file) runs on, so that no io_context thread ever blocks. Bounded: excess
/// work queues. One per process, started on first use.
inline boost::asio::thread_pool& blocking_pool() {
    // Joined, not stopped, at exit: work queued by destructors (destroying a
    // container's domain) still runs before the process ends.
    struct joined_at_exit {
        // libvirt's per-connection limit (5 calls in flight) bounds each
        // connection; the pool bounds the other blocking work.
        boost::asio::thread_pool pool{std::max(8u, 2 * std::thread::hardware_concurrency())};
        ~joined_at_exit() { pool.join(); }
    };
    static joined_at_exit instance;
    return instance.pool;
}

/// A work result that may be void.
template <class T>
using blocking_result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// One piece of blocking work and the handler waiting for it. Whoever moves
/// `state` out of `queued` first owns the handler: the worker that starts the
/// work, or a cancellation that arrives while it still waits in the queue.
template <class Work, class Handler>
struct blocking_operation {
    enum : int { queued, running, cancelled };
    using result = blocking_result_t<std::invoke_result_t<Work&>>;
    using handler_executor = boost::asio::associated_executor_t<Handler>;

    blocking_operation(Work w, Handler h)
        : work(std::move(w))
        , handler(std::move(h))
        , work_guard(boost::asio::make_work_guard(boost::asio::get_associated_executor(handler))) {}

    bool claim(int next) {
        int expected = queued;
        return state.compare_exchange_strong(expected, next);
    }

    // Posts the completion to the handler's executor.
    void complete(std::exception_ptr error, std::optional<result> value, bool clear_slot) {
        auto executor = work_guard.get_executor();
        boost::asio::post(executor, [handler = std::move(handler), guard = std::move(work_guard),
                                     error, value = std::move(value), clear_slot]() mutable {
            // The slot belongs to the handler's executor: clear it there.
            if (clear_slot)
                boost::asio::get_associated_cancellation_slot(handler).clear();
            std::move(handler)(error, value ? std::move(*value) : result{});
        });
    }

    void run() {
        if (!claim(running))
            return; // cancelled while queued
        std::exception_ptr error;
        std::optional<result> value;
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<Work&>>) {
                work();
                value.emplace();
            } else {
                value.emplace(work());
            }
        } catch (...) {
            error = std::current_exception();
        }
        complete(error, std::move(value), true);
    }

    Work work;
    Handler handler;
    boost::asio::executor_work_guard<handler_executor> work_guard;
    std::atomic<int> state{queued};
};

/// Runs `work()` on `pool` (an executor of worker threads) and completes, on
/// the executor associated with the completion handler (a coroutine's own
/// executor), with the exception it threw or its result. Keeps that
/// executor's io_context busy meanwhile. While the work waits in the pool's
/// queue, cancelling through the handler's cancellation slot completes it at
/// once with operation_aborted and the work never runs; once started, the
/// work runs to its end.
template <class Executor, class Work, class CompletionToken = boost::asio::use_awaitable_t<>>
auto async_run_blocking_on(Executor pool, Work work, CompletionToken&& token = {}) {
    using result = blocking_result_t<std::invoke_result_t<Work&>>;
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, result)>(
        [](auto handler, Executor pool, Work work) {
            using operation = blocking_operation<Work, decltype(handler)>;
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            auto op = std::make_shared<operation>(std::move(work), std::move(handler));
            if (slot.is_connected())
                slot.assign([weak = std::weak_ptr<operation>(op)](boost::asio::cancellation_type) {
                    auto cancelled = weak.lock();
                    if (cancelled && cancelled->claim(operation::cancelled))
                        // Inside the slot's own handler: it must not be cleared.
                        cancelled->complete(
                            std::make_exception_ptr(boost::system::system_error(
                                boost::asio::error::operation_aborted, "cancelled before it ran")),
                            std::nullopt, false);
                });
            boost::asio::post(pool, [op = std::move(op)] { op->run(); });
        },
        token, std::move(pool), std::move(work));
}

/// async_run_blocking_on the process-wide blocking_pool().
template <class Work, class CompletionToken = boost::asio::use_awaitable_t<>>
auto async_run_blocking(Work work, CompletionToken&& token = {}) {
    return async_run_blocking_on(blocking_pool().get_executor(), std::move(work),
                                 std::forward<CompletionToken>(token));
}

} // namespace anweddol::detail

#endif
