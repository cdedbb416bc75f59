//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_HYPERVISOR_POOL_HPP
#define ANWEDDOL_HYPERVISOR_POOL_HPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/detail/host_placement.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol {

/// One libvirt host of a hypervisor_pool.
struct hypervisor_host_options {
    /// Names the host in errors, events and statistics; unique in the pool.
    std::string name;
    /// libvirt's URI of the host: "qemu+tls://host/system" (certificates),
    /// "qemu+ssh://user@host/system" (keys), "qemu:///system" for this
    /// machine; "qemu+tcp://" has no authentication: for test beds only.
    std::string uri;
    /// The bridge of the host's NAT network, where its containers get
    /// their addresses.
    std::string nat_interface_name = "virbr0";
    /// How its guests are reached over SSH: std::nullopt when their
    /// addresses are routable from here; otherwise an SSH session to this
    /// host, which carries every guest connection in a direct-tcpip
    /// channel (libvirt's default NAT network, 192.168.122.0/24 on every
    /// host, is reachable from nowhere else). Its host key is checked as
    /// its host_keys policy says.
    std::optional<ssh_jump_options> jump;
    /// At most this many CPU-heavy boots at once on this host (see
    /// boot_admission::set_cpu_heavy_limit); 0: the host's CPU count, as
    /// libvirt reports it (virNodeGetInfo).
    std::size_t max_cpu_heavy_boots = 0;
    /// Memory placement leaves free for the host itself, in MiB.
    std::uint64_t reserved_memory_mib = 256;
    /// Place only where the container's memory fits; false: by boots in
    /// flight alone, for drivers that report no free memory (test:///).
    bool check_memory = true;
};

/// Where a host of the pool stands.
enum class hypervisor_host_state {
    connecting, ///< added; its first connection is being opened
    up,         ///< takes containers
    down,       ///< its connection dropped (or never opened): retried every reconnect_interval
    draining,   ///< being removed: takes no more containers, waits for its own to go
};

/// A short name of the state, such as "up" or "down".
std::string_view to_string(hypervisor_host_state state) noexcept;

/// A snapshot of one host, for displays and metrics.
struct hypervisor_host_status {
    std::string name;
    std::string uri;
    hypervisor_host_state state = hypervisor_host_state::connecting;
    /// Why it is down (libvirt's message), or empty.
    std::string last_error;
    /// As last read (virNodeGetFreeMemory), in MiB.
    std::uint64_t free_memory_mib = 0;
    /// The memory of the containers placed there that are still booting.
    std::uint64_t booting_memory_mib = 0;
    std::size_t boots_in_flight = 0;     ///< placed, start not finished
    std::size_t containers = 0;          ///< placed, domain not known to be gone
    std::size_t lost_containers = 0;     ///< lost while it was down, destroyed once back
    std::size_t cpu_heavy_limit = 0;     ///< its boot admission's limit
    std::uint64_t placements = 0;        ///< every container ever placed there
    std::uint64_t times_down = 0;        ///< how often its connection dropped
    std::uint64_t orphans_destroyed = 0; ///< domains destroyed when it came back
};

/// What happened in a hypervisor_pool, for logs and metrics.
enum class hypervisor_pool_event_type {
    host_up,           ///< a host's connection opened (first, or again)
    host_down,         ///< a host's connection dropped or could not open; `message` says why
    host_removed,      ///< remove_host() drained a host and let it go
    placed,            ///< a container was placed on `host`
    container_lost,    ///< a container's host went down while it ran or booted
    orphans_destroyed, ///< a host came back, and the domains of its lost containers were destroyed
    orphans_left,      ///< shutdown() found a host still down: its lost domains stay there
};

/// A short name of the event type, such as "host_down".
std::string_view to_string(hypervisor_pool_event_type type) noexcept;

struct hypervisor_pool_event {
    hypervisor_pool_event_type type = hypervisor_pool_event_type::host_up;
    std::string host;
    std::string uuid; ///< placed, container_lost
    std::string message;
    std::size_t count = 0; ///< orphans_destroyed, orphans_left: how many domains
};

struct hypervisor_pool_options {
    std::vector<hypervisor_host_options> hosts;
    /// How often a host that is down is tried again.
    std::chrono::steady_clock::duration reconnect_interval = std::chrono::seconds(1);
    /// Placement asks every host for its free memory at once; a host that
    /// has not answered after this long sits that placement out (a hung
    /// libvirtd stalls no placement until keepalive drops it).
    std::chrono::steady_clock::duration read_timeout = std::chrono::seconds(5);
    /// Called on the pool's executor for every event, until the pool is
    /// shut down or destroyed; must not throw.
    std::function<void(const hypervisor_pool_event&)> on_event;
};

/// Many libvirt hosts behind one API: a container started or provisioned
/// through the pool is placed on the host with the fewest boots in flight
/// among those with room for it (free memory, less the memory of what boots
/// there and the host's reserve), then on the one with the most room. Each
/// host has its own boot admission (CPU-heavy boots limited to its CPU
/// count) and, where its guests are not routable from here, its own SSH
/// jump.
///
/// A host whose libvirt connection drops is marked down at once: its boots
/// and provisionings in flight fail with errc::host_down naming it, its
/// running containers are reported lost (their domains cannot be reached,
/// and libvirt forgets their autodestroy when its daemon restarts), and new
/// placements avoid it. It is tried again every reconnect_interval; once
/// back, the domains of its lost containers are destroyed before it takes
/// new ones, so none of them outlives its owner. Hosts can be added and
/// removed at run time: removing one drains it.
///
/// The pool owns each host's connection, boot admission and jump; nothing
/// of it is process-wide. Use it from its executor only (one io_context
/// thread, or a strand), as container_instance; its hosts' connections
/// belong to that io_context's runtime. Containers placed through it must
/// not outlive it.
class hypervisor_pool {
public:
    /// Starts connecting to every host in the background. Throws
    /// boost::system::system_error with errc::invalid_argument, saying
    /// what to fix, for a host without a name or URI, two hosts with one
    /// name or one URI, a malformed bridge name, invalid jump options, or a
    /// reconnect_interval or read_timeout that is not positive; nothing is
    /// connected then.
    hypervisor_pool(boost::asio::any_io_executor executor, hypervisor_pool_options options);
    hypervisor_pool(const hypervisor_pool&) = delete;
    hypervisor_pool& operator=(const hypervisor_pool&) = delete;
    /// Stops placing, and lets go of every host's connection and jump at
    /// once, except for hosts that still hold lost domains: those make
    /// shutdown()'s last try in the background, without events. Containers
    /// still placed are their owners' (they destroy their domains as usual).
    ~hypervisor_pool();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// Adds a host, and starts connecting to it. Errors as the constructor's,
    /// and errc::invalid_argument for a name or URI already in the pool, or
    /// a pool that was shut down or whose shutdown() has begun.
    void add_host(hypervisor_host_options host);

    /// async: stops placing containers on host `name` (it is draining), waits
    /// until every container placed there has stopped (or was lost and
    /// destroyed when the host came back), then forgets the host and closes
    /// its connection and jump. Completes with `(error_code)`. Errors:
    /// errc::invalid_argument for an unknown name; errc::no_host_available
    /// when the pool shuts down meanwhile; operation_aborted when cancelled,
    /// and then the host takes containers again (unless another removal
    /// still waits).
    template <class CompletionToken = default_completion_token>
    auto remove_host(std::string name, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, remove_host_here(state_, std::move(name)),
                                          nullptr, std::forward<CompletionToken>(token));
    }

    /// Every host, in the order they were added.
    std::vector<hypervisor_host_status> get_hosts() const;
    std::optional<hypervisor_host_status> get_host(std::string_view name) const;
    /// The host a container was placed on, while its domain may still run.
    std::optional<std::string> host_of(std::string_view uuid) const;

    /// async: places `container` on a host and starts it there (its
    /// driver URI, bridge and boot admission become the host's; `opts`
    /// gives the rest); completes with `(error_code, std::string)`: the
    /// host's name. Errors: errc::no_host_available (the diagnostics say
    /// what each host lacks), errc::host_down when the host drops during
    /// the start, and those of start_domain(). Nothing is left running on
    /// failure or cancellation.
    template <class CompletionToken = default_completion_token>
    auto start_container(std::shared_ptr<container_instance> container, start_options opts = {},
                         CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_,
                                          start_here(state_, std::move(container), std::move(opts)),
                                          nullptr, std::forward<CompletionToken>(token));
    }

    /// Used by start_container() and provision(): a host with room for a
    /// container `uuid` of `memory_mib`, counted as booting there until
    /// the placement ends its boot. Errors: errc::no_host_available;
    /// errc::invalid_argument for a UUID already placed.
    boost::asio::awaitable<detail::host_placement> place(std::string uuid, unsigned memory_mib) {
        return detail::place_on_host(state_, std::move(uuid), memory_mib);
    }

    /// async: stops placing; destroys the domains of containers lost on
    /// hosts that are back by now (those still down are reported with an
    /// orphans_left event); closes every host's connection and jump.
    /// Completes with `(error_code)`. Boots under way fail with
    /// errc::host_down; placements, with errc::no_host_available.
    template <class CompletionToken = default_completion_token>
    auto shutdown(CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, shutdown_here(state_), nullptr,
                                          std::forward<CompletionToken>(token));
    }

private:
    // Static, with the state as a parameter: a coroutine that starts after
    // the pool is gone still has what it works on.
    using state_ptr = std::shared_ptr<detail::hypervisor_pool_state>;
    static boost::asio::awaitable<void> remove_host_here(state_ptr state, std::string name);
    static boost::asio::awaitable<std::string>
    start_here(state_ptr state, std::shared_ptr<container_instance> container, start_options opts);
    static boost::asio::awaitable<void> shutdown_here(state_ptr state);
    static hypervisor_host_status status_of(const detail::hypervisor_host& host);
    // The unit tests' way to the bookkeeping, to feed it what the test
    // driver cannot do (a host's connection dropping).
    friend struct detail::hypervisor_pool_access;

    boost::asio::any_io_executor executor_;
    std::shared_ptr<detail::hypervisor_pool_state> state_;
};

namespace detail {
/// Starts `container` on the placement's host (its URI, bridge and boot
/// admission), racing the host going down; the placement stops counting
/// as a boot in flight when the start ends.
boost::asio::awaitable<void> start_on_host(std::shared_ptr<container_instance> container,
                                           start_options opts, host_placement& placement);
} // namespace detail

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/hypervisor_pool.ipp>
#endif

#endif
