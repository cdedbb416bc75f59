//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_BOOT_ADMISSION_HPP
#define ANWEDDOL_BOOT_ADMISSION_HPP

#include <anweddol/detail/config.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace anweddol {

/// Bounds how many containers boot at the same time in this process and
/// queues the others in order, without blocking any thread. A boot holds its
/// place from the creation of its domain until its address is known.
///
/// Software emulation (domain type "qemu") is CPU-bound: booting more guests
/// than there are cores makes every one of them slower, and all of them
/// later. So by default, boots of "qemu" domains are limited to the host's
/// CPU count and other types (kvm) are not limited. set_limit() replaces
/// that with one limit for every type; set_unbounded() removes it.
/// Thread-safe.
class boot_admission {
public:
    /// The process-wide admission that containers use.
    static boot_admission& global() {
        static boot_admission admission;
        return admission;
    }

    /// At most `boots` at the same time, whatever the domain type (0 is taken as 1).
    void set_limit(std::size_t boots) { reconfigure(boots == 0 ? 1 : boots); }
    /// No limit at all.
    void set_unbounded() { reconfigure(std::numeric_limits<std::size_t>::max()); }
    /// Back to the default: the CPU count for "qemu" domains, no limit otherwise.
    void set_automatic() { reconfigure(std::nullopt); }

    /// The limit that applies to a domain of `domain_type` now.
    std::size_t limit_for(std::string_view domain_type) const {
        std::lock_guard lock(mutex_);
        return limit_for_locked(domain_type);
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

    /// A place in the boot admission; gives it back when destroyed.
    class ticket {
    public:
        ticket() = default;
        ticket(ticket&& other) noexcept
            : owner_(std::exchange(other.owner_, nullptr)) {}
        ticket& operator=(ticket&& other) noexcept {
            if (this != &other) {
                reset();
                owner_ = std::exchange(other.owner_, nullptr);
            }
            return *this;
        }
        ~ticket() { reset(); }
        /// Gives the place back now.
        void reset() {
            if (auto* owner = std::exchange(owner_, nullptr))
                owner->release();
        }
        explicit operator bool() const noexcept { return owner_ != nullptr; }

    private:
        friend class boot_admission;
        explicit ticket(boot_admission* owner)
            : owner_(owner) {}
        boot_admission* owner_ = nullptr;
    };

    /// async: a place for booting a domain of `domain_type`, once one is free
    /// and every earlier waiter has had theirs. Cancelling the wait completes
    /// it with operation_aborted and takes no place.
    boost::asio::awaitable<ticket> admit(std::string domain_type);

private:
    using handler_type = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    struct waiter {
        std::string domain_type;
        // Kept apart: in Boost 1.81 a type-erased handler's executor cannot be posted to.
        boost::asio::any_io_executor executor;
        handler_type handler;
        // Kept apart too: the type-erased handler's slot cannot be cleared.
        boost::asio::cancellation_slot slot;
    };

    std::size_t limit_for_locked(std::string_view domain_type) const {
        if (limit_)
            return *limit_;
        if (domain_type == "qemu")
            return std::max(1u, std::thread::hardware_concurrency());
        return std::numeric_limits<std::size_t>::max();
    }

    template <class CompletionToken>
    auto async_wait_turn(std::string domain_type, CompletionToken&& token);
    void reconfigure(std::optional<std::size_t> limit);
    void release();
    // Hands places to the waiters at the head of the queue that fit; under the lock.
    void admit_waiters(std::unique_lock<std::mutex>& lock);
    void cancel(const std::shared_ptr<waiter>& cancelled);
    static void complete(waiter& done, boost::system::error_code ec, bool clear_slot);

    mutable std::mutex mutex_;
    std::optional<std::size_t> limit_;
    std::size_t booting_ = 0;
    std::list<std::shared_ptr<waiter>> queue_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/boot_admission.ipp>
#endif

#endif
