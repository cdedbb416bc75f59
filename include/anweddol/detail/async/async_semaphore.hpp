//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_ASYNC_SEMAPHORE_HPP
#define ANWEDDOL_DETAIL_ASYNC_ASYNC_SEMAPHORE_HPP

#include <anweddol/detail/async/place.hpp>
#include <anweddol/detail/async/waiter_queue.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <mutex>
#include <utility>
#include <variant>

namespace anweddol::detail {

/// Counts free slots and queues, in order and without blocking a thread, the
/// callers that wait for one (waiter_queue). A slot is held by a `permit`,
/// which gives it back when destroyed, also when the completion carrying it
/// never ran. Thread-safe.
class async_semaphore {
public:
    /// A slot, given back when destroyed or reset.
    using permit = place<async_semaphore>;

    explicit async_semaphore(std::size_t slots)
        : available_(slots) {}
    async_semaphore(const async_semaphore&) = delete;
    async_semaphore& operator=(const async_semaphore&) = delete;

    /// Completes with a permit once a slot is free and every earlier waiter
    /// has had one. Cancelling a queued wait completes it with
    /// operation_aborted and an empty permit.
    template <class CompletionToken = boost::asio::use_awaitable_t<>>
    auto async_acquire(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, permit)>(
            [this](auto handler) {
                std::unique_lock lock(mutex_);
                if (available_ > 0 && queue_.empty()) {
                    --available_;
                    lock.unlock();
                    queue_type::complete_now(std::move(handler), permit(this));
                    return;
                }
                queue_.push(std::move(handler), std::monostate(),
                            [](std::unique_lock<std::mutex>&) {});
            },
            token);
    }

    std::size_t waiting() const {
        std::lock_guard lock(mutex_);
        return queue_.size();
    }
    std::size_t available() const {
        std::lock_guard lock(mutex_);
        return available_;
    }

private:
    friend permit; // gives its slot back
    using queue_type = waiter_queue<permit, std::monostate>;

    void release() noexcept {
        std::unique_lock lock(mutex_);
        if (queue_.empty()) {
            ++available_;
            return;
        }
        auto first = queue_.pop_front();
        lock.unlock();
        queue_type::complete(*first, {}, permit(this));
    }

    mutable std::mutex mutex_;
    std::size_t available_;
    queue_type queue_{mutex_};
};

} // namespace anweddol::detail

#endif
