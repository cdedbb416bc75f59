//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_DEADLINE_THREADS_HPP
#define ANWEDDOL_DETAIL_ASYNC_DEADLINE_THREADS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/sigpipe.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace anweddol::detail {

/// Blocking work that may never return, each piece on a thread of its own,
/// with a deadline for the one waiting for it: virConnectOpen has no timeout
/// in libvirt 9.0, and a host that accepts the connection and never answers
/// holds its caller forever. Run on shared workers, such opens would hold
/// them all; here each holds its own thread, and its caller gives up at the
/// deadline. A thread given up on finishes in its own time and keeps what
/// it made to itself (its work's result is destroyed on that thread).
///
/// shutdown() (the runtime's, when its io_context goes) gives up on every
/// thread still running, waits for them up to a bound, and detaches those
/// still blocked: from then on they touch only what they share with this
/// object through a shared_ptr, never the io_context. Thread-safe.
class deadline_threads {
public:
    deadline_threads() = default;
    deadline_threads(const deadline_threads&) = delete;
    deadline_threads& operator=(const deadline_threads&) = delete;
    ~deadline_threads() { shutdown(std::chrono::seconds(0)); }

    /// async, in a coroutine: `work()`'s result, run on a new thread, or
    /// its exception; after `deadline`, boost::asio::error::timed_out with
    /// `timeout_message`; operation_aborted when cancelled, or once
    /// shutdown() ran (nothing new starts then).
    template <class T, class Work>
    boost::asio::awaitable<T> run(Work work, std::chrono::steady_clock::duration deadline,
                                  std::string timeout_message);

    /// Gives up on every thread still running, waits for them until
    /// `bound` has passed, joins those that ended and detaches the rest.
    void shutdown(std::chrono::steady_clock::duration bound) noexcept;

    /// Threads started and not yet joined or detached (for tests).
    std::size_t unjoined() const {
        std::lock_guard lock(mutex_);
        return entries_.size();
    }

    /// Threads that shutdown() detached and that still run, in this
    /// process: each counts itself out when it ends.
    static std::size_t detached_running() noexcept { return detached_.load(); }

private:
    // What a thread shares with its caller and with shutdown().
    struct attempt_base {
        std::mutex mutex;
        std::condition_variable ended_cv;
        bool detached = false;      // shutdown() let the thread go: it counts itself out
        bool delivered = false;     // the caller has the outcome to collect
        bool abandoned = false;     // nobody waits any more: keep the result
        bool ended = false;         // the thread's function returned
        std::function<void()> wake; // posts to the caller's io_context; reset when abandoned
    };
    template <class T>
    struct attempt : attempt_base {
        std::optional<T> value;
        std::exception_ptr failure;
    };
    struct entry {
        std::thread thread;
        std::shared_ptr<attempt_base> shared;
    };

    void start(std::shared_ptr<attempt_base> shared, std::function<void()> body);

    mutable std::mutex mutex_;
    std::vector<entry> entries_;
    bool shut_down_ = false;
    // What a detached thread may still touch beside its attempt: it lives as
    // long as the process.
    static inline std::atomic<std::size_t> detached_{0};
};

template <class T, class Work>
boost::asio::awaitable<T> deadline_threads::run(Work work,
                                                std::chrono::steady_clock::duration deadline,
                                                std::string timeout_message) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor, deadline);
    auto shared = std::make_shared<attempt<T>>();
    // The thread holds the timer weakly: a caller gone (cancelled, its
    // io_context destroyed) is not woken.
    shared->wake = [executor, weak = std::weak_ptr<boost::asio::steady_timer>(timer)] {
        boost::asio::post(executor, [weak] {
            if (auto waiting = weak.lock())
                waiting->cancel();
        });
    };
    start(shared, [shared, work = std::move(work)]() mutable {
        std::optional<T> value;
        std::exception_ptr failure;
        try {
            value.emplace(work());
        } catch (...) {
            failure = std::current_exception();
        }
        // Declared after `value`: unlocked before a result nobody took is
        // destroyed (closing a connection is an RPC).
        std::lock_guard lock(shared->mutex);
        if (shared->abandoned)
            return;
        shared->value = std::move(value);
        shared->failure = failure;
        shared->delivered = true;
        shared->wake();
    });
    // However this frame ends (a cancellation before the wait began, its
    // io_context destroyed), the thread learns that nobody waits any more.
    struct give_up_on_exit {
        std::shared_ptr<attempt_base> shared;
        ~give_up_on_exit() {
            std::lock_guard lock(shared->mutex);
            shared->abandoned = true;
            shared->wake = nullptr;
        }
    } giving_up{shared};
    boost::system::error_code ec;
    auto waiting = timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    co_await std::move(waiting);
    std::unique_lock lock(shared->mutex);
    if (shared->delivered) {
        if (shared->failure)
            std::rethrow_exception(shared->failure);
        T value = std::move(*shared->value);
        lock.unlock();
        co_return value;
    }
    lock.unlock();
    if (ec == boost::asio::error::operation_aborted)
        throw_error(boost::asio::error::operation_aborted, "cancelled: " + timeout_message);
    throw_error(boost::asio::error::timed_out, std::move(timeout_message));
}

inline void deadline_threads::start(std::shared_ptr<attempt_base> shared,
                                    std::function<void()> body) {
    std::lock_guard lock(mutex_);
    if (shut_down_)
        throw_error(boost::asio::error::operation_aborted,
                    "the io_context is shutting down: nothing new starts");
    // Threads that ended since are joined here (at once: their function
    // returned), so that they do not pile up.
    std::erase_if(entries_, [](entry& e) {
        {
            std::lock_guard ended_lock(e.shared->mutex);
            if (!e.shared->ended)
                return false;
        }
        e.thread.join();
        return true;
    });
    entries_.reserve(entries_.size() + 1); // no throw after the thread started
    std::thread thread = with_sigpipe_blocked_threads([&] {
        return std::thread([shared, body = std::move(body)]() mutable {
            body();
            body = nullptr; // what the work held goes on this thread
            std::lock_guard ended_lock(shared->mutex);
            shared->ended = true;
            shared->ended_cv.notify_all();
            if (shared->detached)
                --detached_;
        });
    });
    entries_.push_back({std::move(thread), std::move(shared)});
}

inline void deadline_threads::shutdown(std::chrono::steady_clock::duration bound) noexcept {
    std::vector<entry> all;
    {
        std::lock_guard lock(mutex_);
        shut_down_ = true;
        all = std::move(entries_);
        entries_.clear();
    }
    for (auto& e : all) {
        std::lock_guard lock(e.shared->mutex);
        e.shared->abandoned = true;
        e.shared->wake = nullptr; // the executor goes with its io_context
    }
    const auto until = std::chrono::steady_clock::now() + bound;
    for (auto& e : all) {
        std::unique_lock lock(e.shared->mutex);
        const bool ended =
            e.shared->ended_cv.wait_until(lock, until, [&] { return e.shared->ended; });
        if (!ended) {
            // Blocked in libvirt: it ends on its own, touching nothing of ours.
            e.shared->detached = true;
            ++detached_;
        }
        lock.unlock();
        if (ended)
            e.thread.join();
        else
            e.thread.detach();
    }
}

} // namespace anweddol::detail

#endif
