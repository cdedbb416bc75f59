//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_CAPACITY_HPP
#define ANWEDDOL_CONTAINER_CAPACITY_HPP

#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/errc.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace anweddol {

/// How many containers a server may hold at once, and whether the host has
/// the memory for one more: what a server asks before it boots a container
/// for a client, so that a burst of requests is refused rather than boots
/// more guests than the host can run.
///
/// A place is a `reservation`, held while the container lives and given
/// back when the reservation is destroyed or reset (RAII). Granting one
/// needs a free place under options::max_containers and, when
/// options::check_memory, enough of the host's free memory
/// (virNodeGetFreeMemory, read through the connection's worker threads)
/// once the memory of the containers still booting is taken off: a guest
/// that is starting has not yet shown up in the host's free memory, so the
/// host's figure alone would let a burst of requests through. A refusal is
/// an error, errc::over_capacity, whose diagnostics say which limit.
///
/// Thread-safe. Reservations may outlive the capacity.
class container_capacity {
    struct state;

public:
    struct options {
        /// The most places held at once; 0: no limit on the count.
        std::size_t max_containers = 0;
        /// Whether a place also needs the memory: free memory at least the
        /// memory of the booting containers, the container's own, and
        /// memory_headroom_mib.
        bool check_memory = true;
        /// MiB left free for the host itself (QEMU's own overhead, the page
        /// cache, the server).
        std::uint64_t memory_headroom_mib = 512;
        /// The libvirt URI whose host's memory counts.
        std::string driver_uri = "qemu:///system";
    };

    /// A place, given back when destroyed or reset. Moved, never copied.
    /// Not synchronised: use one reservation from one thread at a time.
    class reservation {
    public:
        reservation() = default;
        reservation(reservation&& other) noexcept
            : state_(std::move(other.state_))
            , memory_mib_(std::exchange(other.memory_mib_, 0))
            , booting_(std::exchange(other.booting_, false)) {}
        reservation& operator=(reservation&& other) noexcept {
            if (this != &other) {
                reset();
                state_ = std::move(other.state_);
                memory_mib_ = std::exchange(other.memory_mib_, 0);
                booting_ = std::exchange(other.booting_, false);
            }
            return *this;
        }
        ~reservation() { reset(); }

        /// The container has booted: from now on the host's free memory
        /// accounts for it, so its memory stops counting as booting. It
        /// keeps its place among options::max_containers until reset.
        void mark_booted() noexcept;
        /// Gives the place back now (a no-op on an empty reservation).
        void reset() noexcept;

        explicit operator bool() const noexcept { return state_ != nullptr; }
        /// The memory the place was granted for, in MiB.
        std::uint64_t memory_mib() const noexcept { return memory_mib_; }
        /// Whether its memory still counts as booting.
        bool booting() const noexcept { return booting_; }

    private:
        friend class container_capacity;
        reservation(std::shared_ptr<state> s, std::uint64_t memory_mib) noexcept
            : state_(std::move(s))
            , memory_mib_(memory_mib)
            , booting_(true) {}
        std::shared_ptr<state> state_;
        std::uint64_t memory_mib_ = 0;
        bool booting_ = false;
    };

    /// A snapshot of the accounting, for logs and metrics.
    struct usage {
        std::size_t reserved = 0;             ///< places held
        std::size_t booting = 0;              ///< of them, still booting
        std::uint64_t booting_memory_mib = 0; ///< their memory
        std::uint64_t granted = 0;            ///< places granted so far
        std::uint64_t refused = 0;            ///< requests refused so far
        /// The host's free memory at the last check (none before one).
        std::optional<std::uint64_t> last_free_memory_mib;
    };

    container_capacity(boost::asio::any_io_executor executor, options opts);
    explicit container_capacity(boost::asio::any_io_executor executor)
        : container_capacity(std::move(executor), options{}) {}
    container_capacity(const container_capacity&) = delete;
    container_capacity& operator=(const container_capacity&) = delete;

    /// async: a place for a container of `memory_mib` MiB, counted as
    /// booting until reservation::mark_booted(); completes with
    /// `(error_code, reservation)`. Errors: errc::over_capacity (compares
    /// equal to std::errc::resource_unavailable_try_again) when every place
    /// is taken or the memory is short, the diagnostics saying which and by
    /// how much; libvirt's error when the free memory cannot be read. A
    /// refusal or an error takes no place. Cancelling it (while the
    /// connection opens, or while the call waits for a lane) completes it
    /// with operation_aborted and takes no place. Runs on the capacity's
    /// executor for tokens other than the default.
    template <class CompletionToken = default_completion_token>
    auto reserve(std::uint64_t memory_mib, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, reserve_here(state_, memory_mib), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    /// reserve(), filling `diag` with the reason of a refusal or libvirt's message.
    template <class CompletionToken = default_completion_token>
    auto reserve(std::uint64_t memory_mib, diagnostics& diag, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, reserve_here(state_, memory_mib), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// The accounting now. Thread-safe.
    usage get_usage() const;
    /// The limits it was made with; they do not change.
    const options& get_options() const noexcept;
    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

private:
    static boost::asio::awaitable<reservation> reserve_here(std::shared_ptr<state> s,
                                                            std::uint64_t memory_mib);

    struct state {
        explicit state(options o)
            : opts(std::move(o)) {}
        // A place under the count limit, booting; errc::over_capacity otherwise.
        reservation take(const std::shared_ptr<state>& self, std::uint64_t memory_mib);
        // Throws errc::over_capacity unless `place` fits in `free_mib` beside the other boots.
        void check_memory(const reservation& place, std::uint64_t free_mib);
        void refuse(std::string why);

        const options opts;
        mutable std::mutex mutex; // guards what follows
        usage counts;
    };

    boost::asio::any_io_executor executor_;
    std::shared_ptr<state> state_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/container_capacity.ipp>
#endif

#endif
