//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_BLOCKING_POOL_HPP
#define ANWEDDOL_DETAIL_BLOCKING_POOL_HPP

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <exception>
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
    // libvirt's per-connection limit (5 calls in flight) bounds each
    // connection; the pool bounds them all together.
    static boost::asio::thread_pool pool(std::max(8u, 2 * std::thread::hardware_concurrency()));
    return pool;
}

/// A work result that may be void.
template <class T>
using blocking_result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Runs `work()` on the blocking pool and completes, on the executor
/// associated with the completion handler (a coroutine's own executor), with
/// the exception it threw or its result. Keeps that executor's io_context
/// busy meanwhile. Once started, the work runs to its end.
template <class Work, class CompletionToken = boost::asio::use_awaitable_t<>>
auto async_run_blocking(Work work, CompletionToken&& token = {}) {
    using result = blocking_result_t<std::invoke_result_t<Work&>>;
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, result)>(
        [](auto handler, Work work) {
            auto work_guard =
                boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
            boost::asio::post(blocking_pool(), [handler = std::move(handler),
                                                work_guard = std::move(work_guard),
                                                work = std::move(work)]() mutable {
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
                auto executor = work_guard.get_executor();
                boost::asio::post(executor, [handler = std::move(handler), error,
                                             value = std::move(value)]() mutable {
                    std::move(handler)(error, value ? std::move(*value) : result{});
                });
            });
        },
        token, std::move(work));
}

} // namespace anweddol::detail

#endif
