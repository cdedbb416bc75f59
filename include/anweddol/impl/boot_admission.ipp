//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_BOOT_ADMISSION_IPP
#define ANWEDDOL_IMPL_BOOT_ADMISSION_IPP

#include <anweddol/boot_admission.hpp>

#include <vector>

namespace anweddol {

template <class CompletionToken>
auto boot_admission::async_wait_turn(std::string domain_type, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [this](auto handler, std::string type) {
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            auto executor = boost::asio::get_associated_executor(handler);
            std::unique_lock lock(mutex_);
            if (queue_.empty() && booting_ < limit_for_locked(type)) {
                ++booting_;
                lock.unlock();
                boost::asio::post(executor, [handler = std::move(handler)]() mutable {
                    std::move(handler)(boost::system::error_code());
                });
                return;
            }
            auto queued = std::make_shared<waiter>(
                waiter{std::move(type), std::move(executor), std::move(handler), slot});
            queue_.push_back(queued);
            if (slot.is_connected())
                slot.assign([this, weak = std::weak_ptr<waiter>(queued)](
                                boost::asio::cancellation_type) { cancel(weak.lock()); });
        },
        token, std::move(domain_type));
}

ANWEDDOL_DECL boost::asio::awaitable<boot_admission::ticket>
boot_admission::admit(std::string domain_type) {
    co_await async_wait_turn(std::move(domain_type), boost::asio::use_awaitable);
    co_return ticket(this);
}

ANWEDDOL_DECL void boot_admission::reconfigure(std::optional<std::size_t> limit) {
    std::unique_lock lock(mutex_);
    limit_ = limit;
    admit_waiters(lock);
}

ANWEDDOL_DECL void boot_admission::release() {
    std::unique_lock lock(mutex_);
    --booting_;
    admit_waiters(lock);
}

ANWEDDOL_DECL void boot_admission::admit_waiters(std::unique_lock<std::mutex>& lock) {
    // In order: a waiter that does not fit holds back the ones behind it.
    std::vector<std::shared_ptr<waiter>> admitted;
    while (!queue_.empty() && booting_ < limit_for_locked(queue_.front()->domain_type)) {
        ++booting_;
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
    }
    lock.unlock();
    for (auto& w : admitted)
        complete(*w, {}, true);
}

ANWEDDOL_DECL void boot_admission::cancel(const std::shared_ptr<waiter>& cancelled) {
    if (!cancelled)
        return;
    std::unique_lock lock(mutex_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (*it == cancelled) {
            queue_.erase(it);
            admit_waiters(lock); // the ones behind may fit now
            // Inside the slot's own handler: the slot must not be cleared.
            complete(*cancelled, boost::asio::error::operation_aborted, false);
            return;
        }
    }
}

ANWEDDOL_DECL void boot_admission::complete(waiter& done, boost::system::error_code ec, bool clear_slot) {
    boost::asio::post(done.executor, [handler = std::move(done.handler), slot = done.slot, ec,
                                      clear_slot]() mutable {
        // The slot belongs to the handler's executor: clear it there.
        if (clear_slot)
            slot.clear();
        std::move(handler)(ec);
    });
}

} // namespace anweddol

#endif
