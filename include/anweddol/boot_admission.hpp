//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_BOOT_ADMISSION_HPP
#define ANWEDDOL_BOOT_ADMISSION_HPP

#include <anweddol/detail/async/place.hpp>
#include <anweddol/detail/async/waiter_queue.hpp>
#include <anweddol/detail/config.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace anweddol {

/// Bounds how many containers of one io_context boot at the same time and
/// queues the others in order, without blocking any thread. A boot holds its
/// place from the creation of its domain until its address is known, or,
/// under a CPU-heavy limit, only while its guest is CPU-heavy: once its
/// QEMU has used less than `cpu_light_threshold` of a core over the last
/// `cpu_light_window` (read through libvirt every `cpu_poll_interval`), it
/// gives its place back and goes on booting outside the count.
///
/// Software emulation (domain type "qemu") is CPU-bound while the guest's
/// firmware and kernel start, then mostly waits (for DHCP, for timers):
/// booting more guests than there are cores makes every one of them slower,
/// but holding a core's place through the waiting leaves it idle. So by
/// default, boots of "qemu" domains are limited to the host's CPU count
/// while CPU-heavy (benchmarks/provision chose this from measurements), and
/// other types (kvm) are not limited. set_limit() replaces that with one
/// limit for every type, held until the address is known;
/// set_cpu_heavy_limit() with one limit on CPU-heavy boots of every type;
/// set_unbounded() removes it. Each io_context has one, which its
/// containers use by default: `runtime::of(executor).admission()`.
/// Thread-safe.
class boot_admission {
public:
    boot_admission() = default;
    boot_admission(const boot_admission&) = delete;
    boot_admission& operator=(const boot_admission&) = delete;

    /// How long a boot's guest must stay under `cpu_light_threshold` cores
    /// before a CPU-heavy place is given back, and how often it is read.
    static constexpr std::chrono::milliseconds cpu_light_window{1000};
    static constexpr std::chrono::milliseconds cpu_poll_interval{250};
    static constexpr double cpu_light_threshold = 0.25;

    /// At most `boots` at the same time, whatever the domain type, each
    /// holding its place until its address is known (0 is taken as 1).
    void set_limit(std::size_t boots) { reconfigure(boots == 0 ? 1 : boots, false); }
    /// At most `boots` CPU-heavy boots at the same time, whatever the domain
    /// type: a boot gives its place back once its guest turns CPU-light, or
    /// its address is known (0 is taken as 1).
    void set_cpu_heavy_limit(std::size_t boots) { reconfigure(boots == 0 ? 1 : boots, true); }
    /// No limit at all.
    void set_unbounded() { reconfigure(std::numeric_limits<std::size_t>::max(), false); }
    /// Back to the default: "qemu" domains limited to the CPU count while
    /// CPU-heavy, no limit otherwise.
    void set_automatic() { reconfigure(std::nullopt, false); }

    /// The limit that applies to a domain of `domain_type` now.
    std::size_t limit_for(std::string_view domain_type) const {
        std::lock_guard lock(mutex_);
        return limit_for_locked(domain_type);
    }
    /// Whether a boot of a domain of `domain_type` gives its place back once
    /// its guest is no longer CPU-heavy (rather than when its address is known).
    bool releases_when_cpu_light(std::string_view domain_type) const {
        std::lock_guard lock(mutex_);
        if (limit_)
            return cpu_heavy_only_;
        return domain_type == "qemu" && automatic_releases_when_cpu_light;
    }
    /// How many boots hold a place, and how many wait for one.
    std::size_t booting() const {
        std::lock_guard lock(mutex_);
        return booting_;
    }
    std::size_t waiting() const {
        std::lock_guard lock(mutex_);
        return queue_.size();
    }

    /// A place in the boot admission; gives it back when destroyed or reset.
    using ticket = detail::place<boot_admission>;

    /// async: a place for booting a domain of `domain_type`, once one is free
    /// and every earlier waiter has had theirs; completes with
    /// `(error_code, ticket)`. Cancelling the wait completes it with
    /// operation_aborted and takes no place. A place granted to a completion
    /// that never runs (its io_context destroyed) is given back.
    template <class CompletionToken = boost::asio::use_awaitable_t<>>
    auto async_admit(std::string domain_type, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, ticket)>(
            [this](auto handler, std::string type) {
                std::unique_lock lock(mutex_);
                if (queue_.empty() && booting_ < limit_for_locked(type)) {
                    ++booting_;
                    lock.unlock();
                    queue_type::complete_now(std::move(handler), ticket(this));
                    return;
                }
                queue_.push(std::move(handler), std::move(type),
                            [this](std::unique_lock<std::mutex>& held) { admit_waiters(held); });
            },
            token, std::move(domain_type));
    }

    /// async: async_admit in a coroutine.
    boost::asio::awaitable<ticket> admit(std::string domain_type);

private:
    friend ticket; // gives its place back
    using queue_type = detail::waiter_queue<ticket, std::string>;

    std::size_t limit_for_locked(std::string_view domain_type) const {
        if (limit_)
            return *limit_;
        if (domain_type == "qemu")
            return std::max(1u, std::thread::hardware_concurrency());
        return std::numeric_limits<std::size_t>::max();
    }

    // The automatic policy's choice for "qemu" domains (see the class
    // comment and README's provisioning table for the measurements).
    static constexpr bool automatic_releases_when_cpu_light = true;

    void reconfigure(std::optional<std::size_t> limit, bool cpu_heavy_only);
    void release() noexcept;
    // Hands places to the waiters at the head of the queue that fit; unlocks.
    void admit_waiters(std::unique_lock<std::mutex>& lock);

    mutable std::mutex mutex_;
    std::optional<std::size_t> limit_;
    bool cpu_heavy_only_ = false;
    std::size_t booting_ = 0;
    queue_type queue_{mutex_};
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/boot_admission.ipp>
#endif

#endif
