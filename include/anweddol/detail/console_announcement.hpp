//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_CONSOLE_ANNOUNCEMENT_HPP
#define ANWEDDOL_DETAIL_CONSOLE_ANNOUNCEMENT_HPP

#include <anweddol/detail/config.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/ssh/console_scanner.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <utility>

namespace anweddol {

class container_instance;

namespace detail {

/// The console of a container's current (or last) boot. Bodies in
/// impl/container_instance.ipp, with the class whose insides they read.
struct console_access {
    ANWEDDOL_DECL static std::shared_ptr<console_ring> ring(const container_instance& container);
    /// For tests on a driver without consoles (test:///): a ring that the
    /// test feeds in place of the guest. Replaces the boot's own.
    ANWEDDOL_DECL static void attach(container_instance& container,
                                     std::shared_ptr<console_ring> ring);
};

namespace console_announcement_detail {

// Whether waiting longer is pointless: the console will say nothing more,
// or said what the waiter wants. Without `wait_for_host_keys`, a waiter
// only lets a block that has begun end, and the host-key block follow the
// endpoint block that it comes right after.
inline bool settled(const console_announcement& seen, bool wait_for_host_keys) noexcept {
    if (seen.console_ended || seen.host_keys_complete)
        return true;
    return !wait_for_host_keys && !seen.block_open && !seen.endpoint;
}

// Wakes the waiting coroutine from the thread that feeds the console: the
// timer it waits on is only touched on its executor, by a posted cancel.
struct waker {
    explicit waker(boost::asio::any_io_executor executor)
        : timer(std::move(executor)) {}
    boost::asio::steady_timer timer;
    std::atomic<bool> pending{false};
};

} // namespace console_announcement_detail

/// async: what `ring`'s console announced, once settled: at once when it
/// already is; woken (no polling) when the console completes a block or
/// ends. Settled means: with `wait_for_host_keys`, the first host-key block
/// is complete; without, no block is arriving (nor the host-key block that
/// follows an endpoint block). Otherwise it returns what there is after
/// `limit` (not an error: the caller decides what a missing block means),
/// or at once when the console ended or `ring` is nullptr (no console read:
/// console_ended is then set too). Cancellation (terminal): completes
/// promptly with operation_aborted, leaving nothing behind. Await it on one
/// thread or strand: the container's executor.
inline boost::asio::awaitable<console_announcement>
await_console_announcement(std::shared_ptr<console_ring> ring,
                           std::chrono::steady_clock::duration limit, bool wait_for_host_keys) {
    namespace cad = console_announcement_detail;
    using clock = std::chrono::steady_clock;
    if (!ring) {
        console_announcement nothing;
        nothing.console_ended = true;
        co_return nothing;
    }
    const auto now = clock::now();
    const auto deadline =
        limit >= clock::time_point::max() - now ? clock::time_point::max() : now + limit;
    auto wake = std::make_shared<cad::waker>(co_await boost::asio::this_coro::executor);
    // Watching before the first look: a change in between wakes the wait.
    ring->watch(wake, [weak = std::weak_ptr<cad::waker>(wake)] {
        const auto w = weak.lock();
        if (w && !w->pending.exchange(true))
            boost::asio::post(w->timer.get_executor(), [weak] {
                if (const auto alive = weak.lock())
                    alive->timer.cancel();
            });
    });
    for (;;) {
        wake->pending = false;
        auto seen = ring->announcement();
        if (cad::settled(seen, wait_for_host_keys) || clock::now() >= deadline)
            co_return seen;
        wake->timer.expires_at(deadline);
        co_await wake->timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        const auto state = co_await boost::asio::this_coro::cancellation_state;
        if (state.cancelled() != boost::asio::cancellation_type::none)
            throw boost::system::system_error(boost::asio::error::operation_aborted,
                                              "waiting for the console's announcement");
    }
}

/// The same, for `container`'s console (its current boot's, or its last's).
/// The container need not outlive the wait. Body in impl/container_instance.ipp.
ANWEDDOL_DECL boost::asio::awaitable<console_announcement>
await_console_announcement(const container_instance& container,
                           std::chrono::steady_clock::duration limit, bool wait_for_host_keys);

} // namespace detail
} // namespace anweddol

#endif
