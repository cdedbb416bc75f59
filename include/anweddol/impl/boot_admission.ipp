//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_BOOT_ADMISSION_IPP
#define ANWEDDOL_IMPL_BOOT_ADMISSION_IPP

#include <anweddol/boot_admission.hpp>

#include <vector>

namespace anweddol {

ANWEDDOL_DECL boost::asio::awaitable<boot_admission::ticket>
boot_admission::admit(std::string domain_type) {
    auto admitting = async_admit(std::move(domain_type), boost::asio::use_awaitable);
    co_return co_await std::move(admitting);
}

ANWEDDOL_DECL void boot_admission::reconfigure(std::optional<std::size_t> limit,
                                               bool cpu_heavy_only) {
    std::unique_lock lock(mutex_);
    limit_ = limit;
    cpu_heavy_only_ = cpu_heavy_only;
    admit_waiters(lock);
}

ANWEDDOL_DECL void boot_admission::release() noexcept {
    std::unique_lock lock(mutex_);
    --booting_;
    admit_waiters(lock);
}

ANWEDDOL_DECL void boot_admission::admit_waiters(std::unique_lock<std::mutex>& lock) {
    // In order: a waiter that does not fit holds back the ones behind it.
    std::vector<std::shared_ptr<queue_type::waiter>> admitted;
    while (!queue_.empty() && booting_ < limit_for_locked(queue_.front_tag())) {
        ++booting_;
        admitted.push_back(queue_.pop_front());
    }
    lock.unlock();
    for (auto& w : admitted)
        queue_type::complete(*w, {}, ticket(this));
}

} // namespace anweddol

#endif
