//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_BLOCKING_CALL_HPP
#define ANWEDDOL_DETAIL_ASYNC_BLOCKING_CALL_HPP

#include <anweddol/detail/async/completion_batcher.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/diagnostics.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace anweddol::detail {

/// A work result that may be void.
template <class T>
using blocking_result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// One piece of blocking work and the handler waiting for it. Whoever moves
/// `state` out of `queued` first owns the handler: the worker that starts the
/// work, or a cancellation that arrives while it still waits in the queue.
template <class Work, class Handler>
struct blocking_operation : std::enable_shared_from_this<blocking_operation<Work, Handler>> {
    enum : int { queued, running, cancelled };
    using result = blocking_result_t<std::invoke_result_t<Work&>>;
    using handler_executor = boost::asio::associated_executor_t<Handler>;

    blocking_operation(Work w, Handler h, completion_batcher* b,
                       std::shared_ptr<std::atomic<std::size_t>> q)
        : work(std::in_place, std::move(w))
        , handler(std::move(h))
        , work_guard(boost::asio::make_work_guard(boost::asio::get_associated_executor(handler)))
        , batcher(b)
        , backlog(std::move(q)) {
        if (backlog)
            ++*backlog;
    }

    bool claim(int next) {
        int expected = queued;
        const bool claimed = state.compare_exchange_strong(expected, next);
        if (claimed && backlog)
            --*backlog;
        return claimed;
    }

    // Hands the held completions to the io thread unless more calls wait
    // for this pool: one of them will, when it ends.
    void flush_unless_busy() {
        if (batcher && (!backlog || backlog->load() == 0))
            batcher->flush();
    }

    // The handler with what it is to be called with.
    struct call {
        Handler handler;
        boost::asio::executor_work_guard<handler_executor> guard;
        boost::system::error_code ec;
        diagnostics diag;
        result value;
        bool clear_slot;

        void operator()() {
            // The slot belongs to the handler's executor: clear it there.
            if (clear_slot)
                boost::asio::get_associated_cancellation_slot(handler).clear();
            auto keep_busy = std::move(guard); // until the handler returned
            std::move(handler)(ec, std::move(diag), std::move(value));
        }
    };

    struct batched final : completion_batcher::item {
        explicit batched(call c)
            : pending(std::move(c)) {}
        void run() override {
            auto executor = pending.guard.get_executor();
            boost::asio::dispatch(executor, std::move(pending));
        }
        call pending;
    };

    // Hands the completion to the handler's executor: through the batcher
    // when it serves that executor's io_context, else posted on its own.
    void complete(boost::system::error_code ec, diagnostics diag, result value, bool clear_slot) {
        call done{std::move(handler), std::move(work_guard), ec,
                  std::move(diag),    std::move(value),      clear_slot};
        auto executor = done.guard.get_executor();
        if (batcher && batcher->serves(executor))
            batcher->push(std::make_unique<batched>(std::move(done)));
        else
            boost::asio::post(executor, std::move(done));
    }

    void run() {
        if (!claim(running))
            return; // cancelled while queued
        result value{};
        boost::system::error_code ec;
        diagnostics diag;
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<Work&>>)
                (*work)();
            else
                value = (*work)();
        } catch (...) {
            std::tie(ec, diag) = to_error(std::current_exception());
        }
        // What the work holds (a connection, say) goes here, before the
        // handler can run: otherwise this thread may drop the last reference
        // after the io_context ran out of work, even after it was destroyed.
        work.reset();
        complete(ec, std::move(diag), std::move(value), true);
        flush_unless_busy();
    }

    std::optional<Work> work; // reset once run or cancelled
    Handler handler;
    boost::asio::executor_work_guard<handler_executor> work_guard;
    completion_batcher* batcher;
    // Calls queued for the pool, or null. Shared: once complete() handed the
    // handler over, its owner (a connection) may be gone before this
    // operation reads the count (even within `work.reset()`, when the work
    // held the connection's last reference).
    std::shared_ptr<std::atomic<std::size_t>> backlog;
    std::atomic<int> state{queued};
};

/// Runs `work()` on `pool` (an executor of worker threads) and completes on
/// the executor associated with the completion handler with
/// `(error_code, diagnostics, result)`: what `work` threw becomes the code
/// and the diagnostics, on the worker (libvirt's error is thread-local).
/// Keeps the handler's io_context busy meanwhile; completions go through
/// `batcher` (may be null), held while `backlog` (the count of work queued
/// for `pool`, or null) says more is coming. While the work waits in the pool's queue,
/// cancelling through the handler's slot completes it at once with
/// operation_aborted and the work never runs; once started, it runs to its end.
template <class Executor, class Work, class CompletionToken>
auto async_run_blocking_on(Executor pool, completion_batcher* batcher,
                           std::shared_ptr<std::atomic<std::size_t>> backlog, Work work,
                           CompletionToken&& token) {
    using result = blocking_result_t<std::invoke_result_t<Work&>>;
    return boost::asio::async_initiate<CompletionToken,
                                       void(boost::system::error_code, diagnostics, result)>(
        [](auto handler, Executor pool, completion_batcher* batcher,
           std::shared_ptr<std::atomic<std::size_t>> backlog, Work work) {
            using operation = blocking_operation<Work, decltype(handler)>;
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            auto op = std::make_shared<operation>(std::move(work), std::move(handler), batcher,
                                                  std::move(backlog));
            if (slot.is_connected())
                slot.assign([weak = std::weak_ptr<operation>(op)](boost::asio::cancellation_type) {
                    auto cancelled = weak.lock();
                    if (cancelled && cancelled->claim(operation::cancelled)) {
                        cancelled->work.reset(); // the worker will not touch it now
                        // Inside the slot's own handler: it must not be cleared.
                        cancelled->complete(boost::asio::error::operation_aborted,
                                            diagnostics("cancelled before it ran"), result{},
                                            false);
                        if (cancelled->batcher)
                            cancelled->batcher->flush();
                    }
                });
            boost::asio::post(pool, [op = std::move(op)] { op->run(); });
        },
        token, std::move(pool), batcher, std::move(backlog), std::move(work));
}

/// async, in a coroutine: the result of `work()` run on `pool`, or its error
/// rethrown as error_with_diagnostics.
template <class Executor, class Work>
boost::asio::awaitable<blocking_result_t<std::invoke_result_t<Work&>>>
run_blocking(Executor pool, completion_batcher* batcher, Work work) {
    auto running = async_run_blocking_on(std::move(pool), batcher, nullptr, std::move(work),
                                         boost::asio::as_tuple(boost::asio::use_awaitable));
    auto [ec, diag, value] = co_await std::move(running);
    if (ec)
        throw error_with_diagnostics(ec, std::move(diag));
    co_return std::move(value);
}

} // namespace anweddol::detail

#endif
