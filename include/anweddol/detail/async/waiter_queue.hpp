//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_WAITER_QUEUE_HPP
#define ANWEDDOL_DETAIL_ASYNC_WAITER_QUEUE_HPP

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <list>
#include <memory>
#include <mutex>
#include <utility>

namespace anweddol::detail {

/// The first-come-first-served queue behind every "wait for a place" of the
/// library (boot admission, a connection's reopen lock): handlers wait in
/// order without blocking a thread, a queued wait can be cancelled through
/// its slot, and a place is handed over as a `Grant`, an RAII object that
/// gives it back when destroyed. The grant travels inside the posted
/// completion: if that completion is destroyed without running (its
/// io_context went away), the place comes back instead of being lost.
///
/// The owner keeps its own count of places, under the mutex it passes in.
/// `Tag` is what the owner needs to know about each waiter (a domain type).
template <class Grant, class Tag>
class waiter_queue {
public:
    using handler_type =
        boost::asio::any_completion_handler<void(boost::system::error_code, Grant)>;

    struct waiter {
        Tag tag;
        // Kept apart: in Boost 1.81 a type-erased handler's executor cannot be
        // posted to, nor its slot cleared.
        boost::asio::any_io_executor executor;
        handler_type handler;
        boost::asio::cancellation_slot slot;
    };

    explicit waiter_queue(std::mutex& mutex)
        : mutex_(mutex) {}

    bool empty() const noexcept { return queue_.empty(); }
    std::size_t size() const noexcept { return queue_.size(); }
    const Tag& front_tag() const { return queue_.front()->tag; }

    /// Under the owner's lock: queues `handler`; a cancellation through its
    /// slot takes it out and completes it with operation_aborted, then calls
    /// `on_cancelled()` under the lock (places behind it may fit now).
    template <class Handler, class OnCancelled>
    void push(Handler handler, Tag tag, OnCancelled on_cancelled) {
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        auto executor = boost::asio::get_associated_executor(handler);
        auto queued = std::make_shared<waiter>(
            waiter{std::move(tag), std::move(executor), std::move(handler), slot});
        queue_.push_back(queued);
        if (slot.is_connected())
            slot.assign([this, weak = std::weak_ptr<waiter>(queued),
                         on_cancelled](boost::asio::cancellation_type) {
                if (auto cancelled = weak.lock())
                    cancel(cancelled, on_cancelled);
            });
    }

    /// Under the owner's lock: the first waiter, taken out of the queue.
    std::shared_ptr<waiter> pop_front() {
        auto first = std::move(queue_.front());
        queue_.pop_front();
        return first;
    }

    /// Posts the completion to the waiter's executor. Call without the lock.
    static void complete(waiter& done, boost::system::error_code ec, Grant grant,
                         bool clear_slot = true) {
        boost::asio::post(done.executor, [handler = std::move(done.handler), slot = done.slot, ec,
                                          grant = std::move(grant), clear_slot]() mutable {
            // The slot belongs to the handler's executor: clear it there.
            if (clear_slot)
                slot.clear();
            std::move(handler)(ec, std::move(grant));
        });
    }

    /// Posts a place granted at once, without queueing.
    template <class Handler>
    static void complete_now(Handler handler, Grant grant) {
        auto executor = boost::asio::get_associated_executor(handler);
        boost::asio::post(executor,
                          [handler = std::move(handler), grant = std::move(grant)]() mutable {
                              std::move(handler)(boost::system::error_code(), std::move(grant));
                          });
    }

private:
    template <class OnCancelled>
    void cancel(const std::shared_ptr<waiter>& cancelled, OnCancelled& on_cancelled) {
        std::unique_lock lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (*it == cancelled) {
                queue_.erase(it);
                on_cancelled(lock); // may unlock
                if (lock.owns_lock())
                    lock.unlock();
                // Inside the slot's own handler: the slot must not be cleared.
                complete(*cancelled, boost::asio::error::operation_aborted, Grant(), false);
                return;
            }
        }
    }

    std::mutex& mutex_;
    std::list<std::shared_ptr<waiter>> queue_;
};

} // namespace anweddol::detail

#endif
