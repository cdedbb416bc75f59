//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_SEMAPHORE_HPP
#define ANWEDDOL_DETAIL_ASYNC_SEMAPHORE_HPP

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>

namespace anweddol::detail {

/// Counts free slots and queues, in order and without blocking any thread,
/// the callers that wait for one. A queued wait can be cancelled through its
/// cancellation slot: it then completes with operation_aborted and takes no
/// slot. Thread-safe.
class async_semaphore {
public:
    explicit async_semaphore(std::size_t slots)
        : available_(slots) {}

    /// Completes with success once a slot is taken (release() gives it back).
    template <class CompletionToken = boost::asio::use_awaitable_t<>>
    auto async_acquire(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            [this](auto handler) { initiate(std::move(handler)); }, token);
    }

    /// Gives a slot back: to the first waiter, or to the free count.
    void release() {
        std::unique_lock lock(mutex_);
        if (queue_.empty()) {
            ++available_;
            return;
        }
        auto first = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        complete(*first, {});
    }

    std::size_t waiting() const {
        std::lock_guard lock(mutex_);
        return queue_.size();
    }

private:
    using handler_type = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    struct waiter {
        // The handler's own executor, kept apart: in Boost 1.81 the type-erased
        // handler's executor cannot be posted to.
        boost::asio::any_io_executor executor;
        handler_type handler;
        // Kept apart too: the type-erased handler's slot cannot be cleared.
        boost::asio::cancellation_slot slot;
    };

    template <class Handler>
    void initiate(Handler handler) {
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        auto executor = boost::asio::get_associated_executor(handler);
        std::unique_lock lock(mutex_);
        if (available_ > 0 && queue_.empty()) {
            --available_;
            lock.unlock();
            boost::asio::post(executor, [handler = std::move(handler)]() mutable {
                std::move(handler)(boost::system::error_code());
            });
            return;
        }
        auto queued =
            std::make_shared<waiter>(waiter{std::move(executor), std::move(handler), slot});
        queue_.push_back(queued);
        if (slot.is_connected())
            slot.assign([this, weak = std::weak_ptr<waiter>(queued)](
                            boost::asio::cancellation_type) { cancel(weak.lock()); });
    }

    void cancel(const std::shared_ptr<waiter>& cancelled) {
        if (!cancelled)
            return;
        std::unique_lock lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (*it == cancelled) {
                queue_.erase(it);
                lock.unlock();
                // Inside the slot's own handler: the slot must not be cleared.
                complete(*cancelled, boost::asio::error::operation_aborted, false);
                return;
            }
        }
    }

    static void complete(waiter& done, boost::system::error_code ec, bool clear_slot = true) {
        boost::asio::post(done.executor, [handler = std::move(done.handler), slot = done.slot, ec,
                                          clear_slot]() mutable {
            // The slot belongs to the handler's executor: clear it there.
            if (clear_slot)
                slot.clear();
            std::move(handler)(ec);
        });
    }

    mutable std::mutex mutex_;
    std::size_t available_;
    std::list<std::shared_ptr<waiter>> queue_;
};

} // namespace anweddol::detail

#endif
