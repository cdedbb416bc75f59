//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//

// Before the guard: header-only, hypervisor_pool.hpp ends by including
// impl/hypervisor_pool.ipp, which includes this header and needs its
// definitions whichever of the two a program includes first.
#include <anweddol/hypervisor_pool.hpp>

#ifndef ANWEDDOL_IMPL_HYPERVISOR_POOL_STATE_HPP
#define ANWEDDOL_IMPL_HYPERVISOR_POOL_STATE_HPP

// A hypervisor_pool's bookkeeping: its hosts and what each holds. Bodies in
// impl/hypervisor_pool.ipp; in a header of its own so that the unit tests
// can feed it what the test driver cannot do (a host's connection
// dropping). In impl/, beside its bodies, not in detail/: it is built on
// the public classes (a host's boot admission, connection and jump), and
// no detail header includes a public one.

#include <anweddol/boot_admission.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::detail {

using clock = std::chrono::steady_clock;

// One host, shared by the pool, its placements and its connection loop; used
// on the pool's executor only.
struct hypervisor_host {
    hypervisor_host(const boost::asio::any_io_executor& executor, hypervisor_host_options opts)
        : options(std::move(opts))
        , changed(executor, clock::time_point::max())
        , retry(executor, clock::time_point::max()) {}

    hypervisor_host_options options;
    std::shared_ptr<ssh_jump> jump;
    boot_admission admission;
    std::shared_ptr<hypervisor_connection> connection;
    hypervisor_connection::subscription close_watch;

    bool reachable = false; // the connection is open, and the orphans are gone
    bool ever_reached = false;
    std::size_t removals = 0; // remove_host() calls waiting: it drains while any does
    bool removed = false;     // by remove_host() or the pool's end: its loop ends
    std::string last_error;
    std::uint64_t free_memory_mib = 0;
    bool memory_known = false; // the driver reports its free memory
    std::size_t cpu_heavy_limit = 0;
    std::uint64_t booting_memory_mib = 0;
    std::size_t boots_in_flight = 0;
    // Containers placed here whose domain may still run, each with the
    // watch that forgets it once its domain stops.
    std::map<std::string, hypervisor_connection::subscription> containers;
    // Containers lost while the host was down: their domains are destroyed
    // once it is back, before it takes new ones.
    std::set<std::string> orphans;
    // Containers whose start is under way here (placed, boot not ended). A
    // domain of theirs that stops does not take them off: the start may
    // boot another with the same UUID (a KVM guest that paused is booted
    // again under qemu), and the end of the start says whether one runs.
    std::set<std::string> booting;
    std::uint64_t placements = 0;
    std::uint64_t times_down = 0;
    std::uint64_t orphans_destroyed = 0;
    std::uint64_t down_count = 0; // placements compare it to see the host went down

    // Broadcasts: cancelled to wake whoever waits on them.
    boost::asio::steady_timer changed; // went down, or lost a container
    boost::asio::steady_timer retry;   // the connection loop: went down, or removed

    hypervisor_host_state state() const {
        if (removals > 0)
            return hypervisor_host_state::draining;
        if (reachable)
            return hypervisor_host_state::up;
        return ever_reached || !last_error.empty() ? hypervisor_host_state::down
                                                   : hypervisor_host_state::connecting;
    }
    bool takes_containers() const { return reachable && removals == 0 && !removed; }
    /// Whether `uuid` is this host's, running or lost.
    bool holds(const std::string& uuid) const {
        return containers.contains(uuid) || orphans.contains(uuid);
    }
    std::string describe() const { return "'" + options.name + "' (" + options.uri + ")"; }
};

struct hypervisor_pool_state : std::enable_shared_from_this<hypervisor_pool_state> {
    hypervisor_pool_state(boost::asio::any_io_executor ex, hypervisor_pool_options opts)
        : executor(std::move(ex))
        , options(std::move(opts)) {}

    boost::asio::any_io_executor executor;
    hypervisor_pool_options options; // its `hosts` are the ones given at construction
    std::vector<std::shared_ptr<hypervisor_host>> hosts;
    bool shutting_down = false; // shutdown() began: no more hosts, no more placements
    bool closed = false;

    void emit(hypervisor_pool_event event) const {
        if (!closed && options.on_event)
            options.on_event(event);
    }

    std::shared_ptr<hypervisor_host> find(std::string_view name) const {
        for (const auto& host : hosts)
            if (host->options.name == name)
                return host;
        return nullptr;
    }

    std::shared_ptr<hypervisor_host> make_host(hypervisor_host_options host_options) const;
    void start(std::shared_ptr<hypervisor_host> host);
    void watch_container(const std::shared_ptr<hypervisor_host>& host, const std::string& uuid);
    void forget_container(const std::shared_ptr<hypervisor_host>& host, const std::string& uuid);
    void mark_down(const std::shared_ptr<hypervisor_host>& host, std::string why);
    void stop(const std::shared_ptr<hypervisor_host>& host);
};

} // namespace anweddol::detail

#endif
