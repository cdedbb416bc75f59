//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_POOL_HPP
#define ANWEDDOL_CONTAINER_POOL_HPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace anweddol {

/// What happened in a container_pool, for logs and metrics.
enum class container_pool_event_type {
    boot_started, ///< a container began to boot (a refill, or for a waiting take)
    ready,        ///< it booted and its endpoint logged in: it waits in the pool
    boot_failed,  ///< its boot failed (the domain is destroyed); `error` says why
    taken,        ///< take() handed it over
    recycled,     ///< it waited longer than max_idle and was destroyed, to be replaced
    /// its domain stopped, paused or crashed, or its endpoint stopped
    /// answering, while it waited in the pool: it was destroyed (never
    /// handed over), to be replaced; `message` says what was wrong
    lost,
};

/// A short name of the event type, such as "ready" or "boot_failed".
std::string_view to_string(container_pool_event_type type) noexcept;

struct container_pool_event {
    container_pool_event_type type = container_pool_event_type::boot_started;
    std::string uuid;
    /// boot_failed: the error, and its explanation with the guest's console;
    /// lost: what was wrong with it.
    boost::system::error_code error;
    std::string message;
    /// boot_failed: how long the pool waits before its next refill.
    std::chrono::steady_clock::duration retry_in{};
    /// ready: how long its boot took, phase by phase.
    provisioning_timings timings;
};

struct container_pool_options {
    /// How many containers to keep booted and waiting (0: none; every take
    /// then boots its own, as provision() does).
    std::size_t size = 1;
    /// What each container is: the live ISO (required), memory in MiB (at
    /// least 512), vCPUs (at least 1), bridge.
    std::string iso_path;
    unsigned memory = 512;
    unsigned vcpus = 1;
    std::string nat_interface_name = "virbr0";
    /// Each container's own options (domain type, autodestroy, owner, the
    /// boot admission: by default the io_context's own, which refills queue
    /// in like any other boot).
    container_instance::options container;
    /// How each is booted and handed over: driver URI, address timeout,
    /// SSH options, client port, password length, the client's login check.
    /// Its on_progress sees the boots' phases and the takes' hand-overs.
    /// Unlike a provisioning_options of its own, it requires the guests'
    /// host keys on their consoles: whoever assigns one here sets
    /// require_console_host_keys as they mean it.
    provisioning_options provisioning = [] {
        provisioning_options pooled;
        pooled.require_console_host_keys = true;
        return pooled;
    }();
    /// Hand each container over as soon as it has booted, while it waits in
    /// the pool: its client credentials are made, the setup script runs and
    /// the client's login is checked (whatever verify_client_login says)
    /// before any take, and a take then only checks the container and closes
    /// that login's session, instead of spending the whole hand-over (about
    /// 2 s under software emulation) in front of its client. The container
    /// waits with its endpoint disabled and a client account whose password
    /// only this process holds (wiped if the container is discarded); a
    /// take's timings report the administration and verification that ran
    /// before it. A take that waits for a boot gets its hand-over ahead too.
    bool hand_over_ahead = false;
    /// A container that waited this long is destroyed and replaced by a
    /// fresh one (a guest's clock, entropy and leases age).
    std::chrono::steady_clock::duration max_idle = std::chrono::minutes(30);
    /// After a failed refill, the next waits this long, doubled at each
    /// failure in a row up to retry_delay_max. A take that waits for a
    /// container never waits for the delay: its boot starts at once.
    std::chrono::steady_clock::duration retry_delay = std::chrono::seconds(1);
    std::chrono::steady_clock::duration retry_delay_max = std::chrono::seconds(60);
    /// Called on the pool's executor for every event, until the pool is
    /// shut down or destroyed; must not throw.
    std::function<void(const container_pool_event&)> on_event;
};

/// A snapshot of a pool, for displays and metrics.
struct container_pool_stats {
    std::size_t target = 0;  ///< options.size
    std::size_t ready = 0;   ///< booted, waiting to be taken
    std::size_t booting = 0; ///< boots under way (refills and boots for waiting takes)
    std::size_t waiting = 0; ///< takes waiting for a container
    std::uint64_t boots_started = 0;
    std::uint64_t boots_failed = 0;
    std::uint64_t taken_warm = 0;       ///< handed out at once, from the pool
    std::uint64_t taken_after_wait = 0; ///< handed out after waiting for a boot
    std::uint64_t recycled = 0;         ///< destroyed after max_idle
    std::uint64_t lost = 0;             ///< found stopped, paused, crashed or unreachable
};

namespace detail {
struct container_pool_state;

/// Why a pooled container cannot be handed over; empty when it can.
struct pooled_fault {
    boost::system::error_code error;
    std::string message;
    explicit operator bool() const noexcept { return !message.empty(); }
};

/// async: checks a booted container before its hand-over: its domain must
/// run for libvirt (not paused, crashed, shut off or gone), and its
/// endpoint's session must run a command (a closed one is logged in again)
/// within the login options' attempt_timeout. Never throws: a check that
/// fails is a fault. Uses libvirt's connection of `options` (or of the
/// container's host), on its lanes.
boost::asio::awaitable<pooled_fault> check_pooled_container(const booted_container& booted,
                                                            const provisioning_options& options);
} // namespace detail

/// Keeps containers booted and waiting, so that handing one to a client
/// costs only the hand-over: fresh client credentials, the setup script,
/// the client's login check. A container in the pool has its address and
/// its endpoint logged in (with the host keys its console printed pinned).
///
/// The pool refills itself in the background, through the boot admission,
/// as containers are taken. A take that finds the pool empty boots one
/// more container, as provision() would, and takes the first container
/// that is ready: takes are served in the order they came. While takes
/// wait, the pool starts no refill of its own: the boots that clients wait
/// for get the cores (a refill already under way serves a waiting take). Failed boots are
/// reported (on_event, get_stats()) and retried with a growing delay; a
/// failure while takes wait fails the oldest of them, with the boot's
/// error and diagnostics. Nothing is ever left behind: a failed boot, a
/// cancelled take, shutdown() and the destructor destroy their domains.
///
/// Before a take hands a pooled container over, it checks that libvirt
/// still runs its domain (not paused, crashed or gone) and that its
/// endpoint's session still answers; one that fails is destroyed and
/// replaced (a `lost` event), and the take goes on with the next ready one
/// or a fresh boot: a take never receives a container it cannot use.
///
/// Use it from its executor only (one io_context thread, or a strand), as
/// container_instance. Its containers run on that executor too. Operations
/// may outlive the pool object: a take or shutdown that runs after the
/// pool was destroyed completes with errc::pool_closed.
class container_pool {
public:
    /// Starts filling at once. Throws boost::system::system_error:
    /// errc::iso_path_not_set for an empty ISO path, errc::invalid_memory,
    /// errc::invalid_vcpus, errc::invalid_argument for a malformed bridge
    /// name, a max_idle or retry_delay that is not positive, or a
    /// retry_delay_max below retry_delay. Nothing boots then.
    container_pool(boost::asio::any_io_executor executor, container_pool_options options);
    container_pool(const container_pool&) = delete;
    container_pool& operator=(const container_pool&) = delete;
    /// Stops refilling and destroys every container it holds, in the
    /// background; takes still waiting complete with errc::pool_closed.
    ~container_pool();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }
    const container_pool_options& get_options() const noexcept;
    container_pool_stats get_stats() const noexcept;

    /// Keeps `size` containers waiting from now on. A smaller size destroys
    /// the containers beyond it; a larger one starts refills.
    void resize(std::size_t size);

    /// async: a container handed over to fresh client credentials, taken
    /// from the pool (from_pool is then true) or, when none is ready, the
    /// first one to finish booting. Completes with
    /// `(error_code, provisioned_container)`; the default token returns it
    /// and throws error_with_diagnostics.
    ///
    /// Errors: errc::pool_closed after shutdown(), or when the pool was
    /// destroyed before the take ran (a deferred or posted take); those of provision()
    /// (the boot's, when it failed while this take waited; the
    /// hand-over's). Cancelling a take while it waits leaves every
    /// container in the pool; once its hand-over began, the container is
    /// destroyed: none is ever left half-administered.
    template <class CompletionToken = default_completion_token>
    auto take(CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, take_here(state_), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <class CompletionToken = default_completion_token>
    auto take(diagnostics& diag, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, take_here(state_), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async: stops refilling, fails the waiting takes with
    /// errc::pool_closed, cancels the boots under way and destroys every
    /// container of the pool; completes with `(error_code)` once their
    /// domains are gone. Containers already taken are the takers'. A
    /// shutdown that runs after the pool was destroyed completes with
    /// errc::pool_closed (the destructor destroyed the containers).
    template <class CompletionToken = default_completion_token>
    auto shutdown(CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, shutdown_here(state_), nullptr,
                                          std::forward<CompletionToken>(token));
    }

private:
    // Static, with the state as a parameter: the coroutine frame owns it, so
    // a take or shutdown that first runs after the pool object was destroyed
    // (deferred, posted) never reads the destroyed object.
    static boost::asio::awaitable<provisioned_container>
    take_here(std::shared_ptr<detail::container_pool_state> state);
    static boost::asio::awaitable<void>
    shutdown_here(std::shared_ptr<detail::container_pool_state> state);

    boost::asio::any_io_executor executor_;
    std::shared_ptr<detail::container_pool_state> state_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/container_pool.ipp>
#endif

#endif
