//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_HYPERVISOR_POOL_IPP
#define ANWEDDOL_IMPL_HYPERVISOR_POOL_IPP

#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/detail/libvirt/host_probe.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/impl/hypervisor_pool_state.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <utility>

namespace anweddol {

ANWEDDOL_DECL std::string_view to_string(hypervisor_host_state state) noexcept {
    switch (state) {
    case hypervisor_host_state::connecting:
        return "connecting";
    case hypervisor_host_state::up:
        return "up";
    case hypervisor_host_state::down:
        return "down";
    case hypervisor_host_state::draining:
        return "draining";
    }
    return "unknown";
}

ANWEDDOL_DECL std::string_view to_string(hypervisor_pool_event_type type) noexcept {
    switch (type) {
    case hypervisor_pool_event_type::host_up:
        return "host_up";
    case hypervisor_pool_event_type::host_down:
        return "host_down";
    case hypervisor_pool_event_type::host_removed:
        return "host_removed";
    case hypervisor_pool_event_type::placed:
        return "placed";
    case hypervisor_pool_event_type::container_lost:
        return "container_lost";
    case hypervisor_pool_event_type::orphans_destroyed:
        return "orphans_destroyed";
    case hypervisor_pool_event_type::orphans_left:
        return "orphans_left";
    }
    return "unknown";
}

namespace detail {

inline void validate_host(const hypervisor_host_options& host) {
    if (host.name.empty())
        throw_error(errc::invalid_argument,
                    "a hypervisor host needs a name (hypervisor_host_options::name), which "
                    "errors and events use to say which host they mean");
    if (host.uri.empty())
        throw_error(errc::invalid_argument,
                    "hypervisor host '" + host.name +
                        "' has no libvirt URI: give one such as qemu+tls://host/system");
    check_interface_name(host.nat_interface_name); // as a container's bridge
}

// What destroying a host's orphans came to.
struct orphans_outcome {
    std::vector<std::string> gone;             ///< destroyed, or already gone
    std::size_t destroyed = 0;                 ///< of those, destroyed by this call
    std::map<std::string, std::string> failed; ///< uuid -> libvirt's message
};

// Destroys each domain on its own: one that cannot be destroyed neither
// stops the others nor keeps its host out of service.
inline orphans_outcome destroy_orphans_blocking(virConnectPtr connection,
                                                const std::vector<std::string>& uuids) {
    orphans_outcome outcome;
    for (const auto& uuid : uuids) {
        try {
            outcome.destroyed +=
                destroy_domain_and_reservation_blocking(connection, uuid).destroyed ? 1 : 0;
            outcome.gone.push_back(uuid);
        } catch (const boost::system::system_error& e) {
            outcome.failed[uuid] = e.what();
        }
    }
    return outcome;
}

// Destroys the host's orphans through its (re)opened connection, and says so.
inline boost::asio::awaitable<void>
destroy_orphans(std::shared_ptr<hypervisor_pool_state> pool, std::shared_ptr<hypervisor_host> host,
                std::shared_ptr<hypervisor_connection> connection) {
    if (host->orphans.empty())
        co_return;
    std::vector<std::string> uuids(host->orphans.begin(), host->orphans.end());
    auto destroying =
        connection->call([uuids](virConnectPtr c) { return destroy_orphans_blocking(c, uuids); });
    const orphans_outcome outcome = co_await std::move(destroying);
    for (const auto& uuid : outcome.gone)
        host->orphans.erase(uuid);
    host->orphans_destroyed += outcome.destroyed;
    std::string message = "destroyed " + std::to_string(outcome.destroyed) +
                          " domain(s) of the containers lost while " + host->describe() +
                          " was down";
    for (const auto& [uuid, why] : outcome.failed)
        message += "; could not destroy " + uuid +
                   " (tried again when the host next "
                   "comes back): " +
                   why;
    pool->emit({hypervisor_pool_event_type::orphans_destroyed,
                host->options.name,
                {},
                message,
                outcome.destroyed});
    host->changed.cancel(); // a removal may be waiting for them
}

// Opens (or reopens) the host's connection, destroys the domains of its
// lost containers, and marks it up; then waits until it goes down, and
// tries again every reconnect_interval. Ends once the host is removed
// (stop() drops the host's connection: each step holds its own).
inline boost::asio::awaitable<void> keep_connected(std::shared_ptr<hypervisor_pool_state> pool,
                                                   std::shared_ptr<hypervisor_host> host) {
    while (!host->removed) {
        if (!host->reachable) {
            try {
                if (!host->connection) {
                    auto opening = hypervisor_connection::open(host->options.uri);
                    auto opened = co_await std::move(opening);
                    if (host->removed)
                        break;
                    host->connection = std::move(opened);
                    std::weak_ptr<hypervisor_pool_state> weak_pool = pool;
                    std::weak_ptr<hypervisor_host> weak_host = host;
                    host->close_watch =
                        host->connection->on_close(pool->executor, [weak_pool, weak_host](int) {
                            auto p = weak_pool.lock();
                            auto h = weak_host.lock();
                            if (p && h)
                                p->mark_down(h,
                                             "libvirt closed its connection to " + h->options.uri);
                        });
                }
                const auto connection = host->connection;
                auto reading = connection->call([uri = host->options.uri](virConnectPtr c) {
                    return read_host_resources(c, uri);
                });
                const host_resources resources = co_await std::move(reading);
                if (host->removed)
                    break;
                // Before it takes new containers: once the daemon restarted,
                // nothing else would destroy them.
                auto cleaning = destroy_orphans(pool, host, connection);
                co_await std::move(cleaning);
                if (host->removed)
                    break;
                host->free_memory_mib = resources.free_memory_mib.value_or(0);
                host->memory_known = resources.free_memory_mib.has_value();
                host->cpu_heavy_limit = host->options.max_cpu_heavy_boots
                                            ? host->options.max_cpu_heavy_boots
                                            : std::max(1u, resources.cpus);
                host->admission.set_cpu_heavy_limit(host->cpu_heavy_limit);
                host->reachable = true;
                host->ever_reached = true;
                host->last_error.clear();
                pool->emit({hypervisor_pool_event_type::host_up,
                            host->options.name,
                            {},
                            host->describe() + " is up: " +
                                (resources.free_memory_mib
                                     ? std::to_string(*resources.free_memory_mib) + " MiB free, "
                                     : std::string("free memory unknown, ")) +
                                std::to_string(resources.cpus) + " CPUs",
                            0});
            } catch (const boost::system::system_error& e) {
                if (host->removed)
                    break;
                const bool first = host->last_error.empty() || host->reachable;
                host->last_error = e.what();
                if (first)
                    pool->emit({hypervisor_pool_event_type::host_down,
                                host->options.name,
                                {},
                                host->describe() + " cannot be reached: " + host->last_error,
                                0});
            }
        }
        if (host->removed)
            break;
        // Up: sleep until it goes down (mark_down cancels the timer). Down:
        // try again after the interval.
        if (host->reachable)
            host->retry.expires_at(clock::time_point::max());
        else
            host->retry.expires_after(pool->options.reconnect_interval);
        boost::system::error_code ignored;
        auto sleeping = host->retry.async_wait(
            boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
        co_await std::move(sleeping);
    }
}

// A host checked against the pool's others, with its jump, not started.
ANWEDDOL_DECL std::shared_ptr<hypervisor_host>
hypervisor_pool_state::make_host(hypervisor_host_options host_options) const {
    validate_host(host_options);
    for (const auto& other : hosts) {
        if (other->options.name == host_options.name)
            throw_error(errc::invalid_argument, "the hypervisor pool already has a host named '" +
                                                    host_options.name +
                                                    "': give each a name of its own");
        if (other->options.uri == host_options.uri)
            throw_error(errc::invalid_argument,
                        "hosts '" + other->options.name + "' and '" + host_options.name +
                            "' have the same URI " + host_options.uri +
                            ": one libvirtd is one host (its free memory would count twice)");
    }
    auto host = std::make_shared<hypervisor_host>(executor, std::move(host_options));
    if (host->options.jump)
        host->jump = ssh_jump::create(executor, *host->options.jump); // checks its options
    // Until its CPUs are known, one CPU-heavy boot at a time.
    host->admission.set_cpu_heavy_limit(
        std::max<std::size_t>(1, host->options.max_cpu_heavy_boots));
    return host;
}

ANWEDDOL_DECL void hypervisor_pool_state::start(std::shared_ptr<hypervisor_host> host) {
    hosts.push_back(host);
    boost::asio::co_spawn(executor, keep_connected(shared_from_this(), std::move(host)),
                          boost::asio::detached);
}

// The pool learns that the domain stopped from its lifecycle events, as
// its container does.
ANWEDDOL_DECL void
hypervisor_pool_state::watch_container(const std::shared_ptr<hypervisor_host>& host,
                                       const std::string& uuid) {
    std::weak_ptr<hypervisor_pool_state> weak_pool = shared_from_this();
    std::weak_ptr<hypervisor_host> weak_host = host;
    host->containers[uuid] = host->connection->subscribe(
        uuid, executor, [weak_pool, weak_host, uuid](const domain_lifecycle_event& event) {
            if (event.event != VIR_DOMAIN_EVENT_STOPPED &&
                event.event != VIR_DOMAIN_EVENT_UNDEFINED)
                return;
            auto pool = weak_pool.lock();
            auto h = weak_host.lock();
            if (pool && h && !h->booting.contains(uuid))
                pool->forget_container(h, uuid);
        });
}

ANWEDDOL_DECL void
hypervisor_pool_state::forget_container(const std::shared_ptr<hypervisor_host>& host,
                                        const std::string& uuid) {
    auto entry = host->containers.find(uuid);
    if (entry == host->containers.end())
        return;
    // This may run inside the subscription's own handler: the subscription
    // goes once that has returned.
    boost::asio::post(executor, [watch = std::move(entry->second)] {});
    host->containers.erase(entry);
    host->changed.cancel();
}

ANWEDDOL_DECL void hypervisor_pool_state::mark_down(const std::shared_ptr<hypervisor_host>& host,
                                                    std::string why) {
    if (!host->reachable || host->removed)
        return; // already down (or not up yet: its loop reports that)
    host->reachable = false;
    host->last_error = std::move(why);
    ++host->times_down;
    ++host->down_count;
    // Whatever ran there is lost: its domain cannot be reached, and libvirt
    // forgets its autodestroy when the daemon restarts. Destroyed when the
    // host is back.
    auto lost = std::exchange(host->containers, {});
    for (const auto& entry : lost)
        host->orphans.insert(entry.first);
    host->changed.cancel();
    host->retry.cancel();
    // Reported once the pool is in its new state: a hook may call it back.
    const std::string name = host->options.name;
    const std::string message = host->describe() + " went down: " + host->last_error;
    for (const auto& entry : lost)
        emit({hypervisor_pool_event_type::container_lost, name, entry.first,
              "container " + entry.first + " is lost: " + message +
                  "; its domain is destroyed once the host is back",
              0});
    emit({hypervisor_pool_event_type::host_down, name, {}, message, 0});
}

ANWEDDOL_DECL void hypervisor_pool_state::stop(const std::shared_ptr<hypervisor_host>& host) {
    host->removed = true;
    host->reachable = false;
    host->containers.clear();
    host->close_watch.reset();
    host->connection.reset();
    if (host->jump)
        host->jump->async_close(boost::asio::detached);
    host->retry.cancel();
    host->changed.cancel();
}

} // namespace detail

// --- host_placement ---------------------------------------------------------

ANWEDDOL_DECL detail::host_placement::host_placement(std::shared_ptr<hypervisor_pool_state> pool,
                                                     std::shared_ptr<hypervisor_host> host,
                                                     std::string uuid, unsigned memory_mib)
    : pool_(std::move(pool))
    , host_(std::move(host))
    , uuid_(std::move(uuid))
    , memory_mib_(memory_mib)
    , down_count_(host_->down_count)
    , booting_(true) {
    host_->booting.insert(uuid_);
    ++host_->boots_in_flight;
    host_->booting_memory_mib += memory_mib_;
}

ANWEDDOL_DECL detail::host_placement::host_placement(host_placement&& other) noexcept
    : pool_(std::move(other.pool_))
    , host_(std::move(other.host_))
    , uuid_(std::move(other.uuid_))
    , memory_mib_(other.memory_mib_)
    , down_count_(other.down_count_)
    , booting_(std::exchange(other.booting_, false))
    , kept_(std::exchange(other.kept_, false)) {}

ANWEDDOL_DECL detail::host_placement&
detail::host_placement::operator=(host_placement&& other) noexcept {
    if (this != &other) {
        release();
        pool_ = std::move(other.pool_);
        host_ = std::move(other.host_);
        uuid_ = std::move(other.uuid_);
        memory_mib_ = other.memory_mib_;
        down_count_ = other.down_count_;
        booting_ = std::exchange(other.booting_, false);
        kept_ = std::exchange(other.kept_, false);
    }
    return *this;
}

ANWEDDOL_DECL void detail::host_placement::release() noexcept {
    end_boot();
    // A placement that never got its domain (a start that failed, or never
    // began: cancelled right after the placement) leaves nothing to watch.
    if (host_ && !kept_ && !host_went_down())
        pool_->forget_container(host_, uuid_);
    kept_ = true;
}

ANWEDDOL_DECL const std::string& detail::host_placement::host_name() const {
    return host_->options.name;
}
ANWEDDOL_DECL const std::string& detail::host_placement::uri() const {
    return host_->options.uri;
}
ANWEDDOL_DECL const std::string& detail::host_placement::nat_interface_name() const {
    return host_->options.nat_interface_name;
}
ANWEDDOL_DECL boot_admission& detail::host_placement::admission() const {
    return host_->admission;
}
ANWEDDOL_DECL std::shared_ptr<ssh_jump> detail::host_placement::jump() const {
    return host_->jump;
}

ANWEDDOL_DECL bool detail::host_placement::host_went_down() const noexcept {
    return host_ && (host_->down_count != down_count_ || host_->removed);
}

ANWEDDOL_DECL std::exception_ptr
detail::host_placement::host_down_error(const std::string& when) const {
    std::string message = "container " + uuid_ + ": ";
    if (host_->down_count != down_count_)
        message += "its hypervisor host " + host_->describe() + " went down " + when + " (" +
                   (host_->last_error.empty() ? "its connection closed" : host_->last_error) + ")";
    else
        message += "its hypervisor host " + host_->describe() +
                   " was removed from the pool, or the pool shut down, " + when;
    return std::make_exception_ptr(error_with_diagnostics(errc::host_down, diagnostics(message)));
}

ANWEDDOL_DECL boost::asio::awaitable<void> detail::host_placement::wait_until_down() const {
    // Holds the host: the placement may move while this waits.
    auto host = host_;
    const auto seen = down_count_;
    while (host->down_count == seen && !host->removed) {
        boost::system::error_code ec;
        auto waiting =
            host->changed.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        co_await std::move(waiting);
        // The timer never expires: cancel() wakes every waiter, and each
        // looks at the host again.
        if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
            boost::asio::cancellation_type::none)
            throw_error(boost::asio::error::operation_aborted, "cancelled");
    }
}

ANWEDDOL_DECL void detail::host_placement::end_boot() noexcept {
    if (!booting_)
        return;
    booting_ = false;
    host_->booting.erase(uuid_);
    --host_->boots_in_flight;
    host_->booting_memory_mib -= memory_mib_;
}

ANWEDDOL_DECL void detail::host_placement::keep_container() {
    if (!host_ || host_went_down())
        return; // lost already: an orphan, destroyed once the host is back
    // Its domain stopped between the end of the boot and this call: its
    // STOPPED event took the container off, or will.
    if (!host_->containers.contains(uuid_))
        pool_->watch_container(host_, uuid_);
    kept_ = true;
}

// --- placement ----------------------------------------------------------------

namespace detail {

// What placement hears back from the hosts it asks at once.
struct memory_reads {
    struct answer {
        bool arrived = false;
        std::optional<std::uint64_t> free_memory_mib;
        std::exception_ptr failure;
    };
    memory_reads(const boost::asio::any_io_executor& executor, std::size_t hosts)
        : all_in(executor, clock::time_point::max())
        , answers(hosts)
        , pending(hosts) {}
    boost::asio::steady_timer all_in; // cancelled by the last answer
    std::vector<answer> answers;
    std::size_t pending;
};

// One host's free memory; the connection is held for as long as the call
// runs, even if the host is removed meanwhile.
inline boost::asio::awaitable<std::optional<std::uint64_t>>
read_free_memory(std::shared_ptr<hypervisor_connection> connection, std::string uri) {
    auto reading = connection->call([uri](virConnectPtr c) { return read_host_resources(c, uri); });
    co_return (co_await std::move(reading)).free_memory_mib;
}

} // namespace detail

// The host for a container of `memory_mib`, counted as booting there.
ANWEDDOL_DECL boost::asio::awaitable<detail::host_placement>
detail::place_on_host(std::shared_ptr<hypervisor_pool_state> state, std::string uuid,
                      unsigned memory_mib) {
    if (state->closed || state->shutting_down)
        throw_error(errc::no_host_available,
                    "the hypervisor pool is shut down: it places no more containers");
    for (const auto& host : state->hosts)
        if (host->holds(uuid))
            throw_error(errc::invalid_argument,
                        "container " + uuid + " is already placed on hypervisor host " +
                            host->describe() +
                            (host->orphans.contains(uuid)
                                 ? ", which is down: its domain is destroyed once it is back"
                                 : ": stop it first, or give each container a UUID of its own"));
    // Free memory as the hosts say it now (what booted since the last
    // placement has taken its share), asked of every host at once: a host
    // that does not answer within read_timeout sits this placement out.
    std::vector<std::shared_ptr<hypervisor_host>> candidates;
    for (const auto& host : state->hosts)
        if (host->takes_containers())
            candidates.push_back(host);
    auto reads = std::make_shared<memory_reads>(state->executor, candidates.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        auto reading = read_free_memory(candidates[i]->connection, candidates[i]->options.uri);
        boost::asio::co_spawn(
            state->executor, std::move(reading),
            [reads, i](std::exception_ptr failure, std::optional<std::uint64_t> free) {
                reads->answers[i] = {true, free, failure};
                if (--reads->pending == 0)
                    reads->all_in.cancel();
            });
    }
    if (reads->pending > 0) {
        reads->all_in.expires_after(state->options.read_timeout);
        boost::system::error_code ignored;
        auto waiting = reads->all_in.async_wait(
            boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
        co_await std::move(waiting);
        if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
            boost::asio::cancellation_type::none)
            throw_error(boost::asio::error::operation_aborted, "the placement was cancelled");
    }
    std::map<const hypervisor_host*, std::string> sat_out; // why, for the error message
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const auto& host = candidates[i];
        const auto& answer = reads->answers[i];
        if (!answer.arrived) {
            sat_out[host.get()] =
                "did not say its free memory within " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   state->options.read_timeout)
                                   .count()) +
                " ms;";
            continue;
        }
        if (!answer.failure) {
            host->free_memory_mib = answer.free_memory_mib.value_or(0);
            host->memory_known = answer.free_memory_mib.has_value();
            continue;
        }
        try {
            std::rethrow_exception(answer.failure);
        } catch (const boost::system::system_error& e) {
            // A dropped connection whose close event is still on its way is
            // a host down; any other failure only leaves it out this time.
            if (host->connection && !host->connection->is_open())
                state->mark_down(host, e.what());
            else
                sat_out[host.get()] =
                    "could not say its free memory (" + std::string(e.what()) + ");";
        } catch (...) {
            sat_out[host.get()] = "could not say its free memory;";
        }
    }
    const auto room = [&](const hypervisor_host& host) -> std::int64_t {
        if (!host.options.check_memory)
            return std::numeric_limits<std::int64_t>::max();
        if (!host.memory_known)
            return 0;
        return static_cast<std::int64_t>(host.free_memory_mib) -
               static_cast<std::int64_t>(host.booting_memory_mib) -
               static_cast<std::int64_t>(host.options.reserved_memory_mib);
    };
    std::shared_ptr<hypervisor_host> chosen;
    for (const auto& host : candidates) {
        if (!host->takes_containers() || sat_out.contains(host.get()) ||
            room(*host) < static_cast<std::int64_t>(memory_mib))
            continue;
        if (!chosen || host->boots_in_flight < chosen->boots_in_flight ||
            (host->boots_in_flight == chosen->boots_in_flight && room(*host) > room(*chosen)))
            chosen = host;
    }
    if (!chosen) {
        std::string why =
            "no hypervisor host can take a container of " + std::to_string(memory_mib) + " MiB:";
        if (state->hosts.empty())
            why += " the pool has no hosts;";
        for (const auto& host : state->hosts) {
            why += " " + host->describe() + " ";
            switch (host->state()) {
            case hypervisor_host_state::connecting:
                why += "is still connecting;";
                break;
            case hypervisor_host_state::down:
                why += "is down (" + host->last_error + ");";
                break;
            case hypervisor_host_state::draining:
                why += "is being removed;";
                break;
            case hypervisor_host_state::up:
                if (const auto why_out = sat_out.find(host.get()); why_out != sat_out.end()) {
                    why += why_out->second;
                    break;
                }
                if (!host->memory_known) {
                    why += "did not report its free memory (hypervisor_host_options::"
                           "check_memory = false places there by boots in flight alone);";
                    break;
                }
                why += "has " + std::to_string(std::max<std::int64_t>(0, room(*host))) +
                       " MiB of room (" + std::to_string(host->free_memory_mib) + " free, " +
                       std::to_string(host->booting_memory_mib) + " booting, " +
                       std::to_string(host->options.reserved_memory_mib) + " reserved);";
                break;
            }
        }
        why.pop_back();
        throw_error(errc::no_host_available, why);
    }
    host_placement placement(state, chosen, uuid, memory_mib);
    state->watch_container(chosen, uuid);
    ++chosen->placements;
    state->emit({hypervisor_pool_event_type::placed, chosen->options.name, uuid,
                 "container " + uuid + " placed on " + chosen->describe(), 0});
    co_return placement;
}

ANWEDDOL_DECL boost::asio::awaitable<void>
detail::start_on_host(std::shared_ptr<container_instance> container, start_options opts,
                      host_placement& placement) {
    const container_instance::options before = container->get_options();
    // The container moves to the host's bridge for good: its domain is there.
    container_instance::options on_host = before;
    on_host.admission = &placement.admission();
    on_host.bypass_admission = false;
    container->set_options(on_host);
    container->set_nat_interface_name(placement.nat_interface_name());
    opts.driver_uri = placement.uri();
    auto starting = container->start_domain(std::move(opts), boost::asio::use_awaitable);
    auto guarded = unless_host_down(placement, std::move(starting), "during its start");
    std::exception_ptr failure;
    try {
        co_await std::move(guarded);
    } catch (...) {
        failure = std::current_exception();
    }
    // The host's admission is the pool's: the container does not keep it.
    container->set_options(before);
    placement.end_boot();
    if (container->is_domain_running())
        placement.keep_container(); // its STOPPED event takes it off the host
    else
        placement.release(); // no domain: nothing to wait for
    if (failure)
        std::rethrow_exception(failure);
}

// --- hypervisor_pool --------------------------------------------------------

ANWEDDOL_DECL hypervisor_pool::hypervisor_pool(boost::asio::any_io_executor executor,
                                               hypervisor_pool_options options)
    : executor_(std::move(executor)) {
    if (options.reconnect_interval <= std::chrono::steady_clock::duration::zero())
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_pool_options::reconnect_interval must be positive");
    if (options.read_timeout <= std::chrono::steady_clock::duration::zero())
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_pool_options::read_timeout must be positive");
    auto hosts = std::move(options.hosts);
    state_ = std::make_shared<detail::hypervisor_pool_state>(executor_, std::move(options));
    // Every host is checked before any connects.
    std::vector<std::shared_ptr<detail::hypervisor_host>> made;
    for (auto& host : hosts) {
        made.push_back(state_->make_host(std::move(host)));
        state_->hosts.push_back(made.back()); // so that the next is checked against it
    }
    state_->hosts.clear();
    for (auto& host : made)
        state_->start(std::move(host));
}

ANWEDDOL_DECL hypervisor_pool::~hypervisor_pool() {
    state_->closed = true;
    // Hosts without lost domains let go of their connections and jumps now;
    // the others make their last try in the background, reporting nothing.
    bool orphans = false;
    for (const auto& host : state_->hosts) {
        if (host->orphans.empty())
            state_->stop(host);
        else
            orphans = true;
    }
    if (orphans) {
        auto ending = shutdown_here(state_);
        boost::asio::co_spawn(executor_, std::move(ending), boost::asio::detached);
    }
}

ANWEDDOL_DECL void hypervisor_pool::add_host(hypervisor_host_options host) {
    // Once shutdown() began, a new host would never be stopped: it ends
    // with the hosts it found when it began.
    if (state_->closed || state_->shutting_down)
        detail::throw_error(errc::invalid_argument,
                            "the hypervisor pool is shut down (or shutting down): it takes no "
                            "more hosts; add '" +
                                host.name + "' to a pool that runs");
    state_->start(state_->make_host(std::move(host)));
}

ANWEDDOL_DECL std::vector<hypervisor_host_status> hypervisor_pool::get_hosts() const {
    std::vector<hypervisor_host_status> all;
    for (const auto& host : state_->hosts)
        all.push_back(status_of(*host));
    return all;
}

ANWEDDOL_DECL std::optional<hypervisor_host_status>
hypervisor_pool::get_host(std::string_view name) const {
    const auto host = state_->find(name);
    if (!host)
        return std::nullopt;
    return status_of(*host);
}

ANWEDDOL_DECL hypervisor_host_status
hypervisor_pool::status_of(const detail::hypervisor_host& host) {
    return hypervisor_host_status{
        .name = host.options.name,
        .uri = host.options.uri,
        .state = host.state(),
        .last_error = host.last_error,
        .free_memory_mib = host.free_memory_mib,
        .booting_memory_mib = host.booting_memory_mib,
        .boots_in_flight = host.boots_in_flight,
        .containers = host.containers.size(),
        .lost_containers = host.orphans.size(),
        .cpu_heavy_limit = host.admission.limit_for("qemu"),
        .placements = host.placements,
        .times_down = host.times_down,
        .orphans_destroyed = host.orphans_destroyed,
    };
}

ANWEDDOL_DECL std::optional<std::string> hypervisor_pool::host_of(std::string_view uuid) const {
    for (const auto& host : state_->hosts)
        if (host->containers.contains(std::string(uuid)))
            return host->options.name;
    return std::nullopt;
}

ANWEDDOL_DECL boost::asio::awaitable<std::string>
hypervisor_pool::start_here(std::shared_ptr<detail::hypervisor_pool_state> state,
                            std::shared_ptr<container_instance> container, start_options opts) {
    if (!container)
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_pool::start_container() needs a container, not nullptr");
    if (container->is_domain_running())
        detail::throw_error(errc::domain_already_running,
                            "container " + container->get_uuid() + " is already running");
    auto placing = detail::place_on_host(state, container->get_uuid(), container->get_memory());
    auto placement = co_await std::move(placing);
    auto starting = detail::start_on_host(container, std::move(opts), placement);
    co_await std::move(starting);
    co_return placement.host_name();
}

ANWEDDOL_DECL boost::asio::awaitable<void>
hypervisor_pool::remove_host_here(std::shared_ptr<detail::hypervisor_pool_state> state,
                                  std::string name) {
    auto host = state->find(name);
    if (!host)
        detail::throw_error(errc::invalid_argument,
                            "the hypervisor pool has no host named '" + name + "'");
    ++host->removals;
    try {
        while ((!host->containers.empty() || !host->orphans.empty()) && !host->removed) {
            boost::system::error_code ec;
            auto waiting = host->changed.async_wait(
                boost::asio::redirect_error(boost::asio::use_awaitable, ec));
            co_await std::move(waiting);
            if ((co_await boost::asio::this_coro::cancellation_state).cancelled() !=
                boost::asio::cancellation_type::none)
                detail::throw_error(boost::asio::error::operation_aborted,
                                    "removing hypervisor host '" + name + "' was cancelled");
        }
    } catch (...) {
        --host->removals; // cancelled: unless another removal waits, it takes containers again
        throw;
    }
    --host->removals;
    if (host->removed) { // the pool shut down meanwhile, or another removal finished first
        if (state->closed)
            detail::throw_error(errc::no_host_available,
                                "the hypervisor pool shut down while host '" + name +
                                    "' drained: shutdown() took it out of service");
        co_return;
    }
    state->stop(host);
    std::erase(state->hosts, host);
    state->emit({hypervisor_pool_event_type::host_removed,
                 name,
                 {},
                 "hypervisor host " + host->describe() + " was drained and removed",
                 0});
}

ANWEDDOL_DECL boost::asio::awaitable<void>
hypervisor_pool::shutdown_here(std::shared_ptr<detail::hypervisor_pool_state> state) {
    state->shutting_down = true;
    // Hosts that are down may have lost containers: one last try at their
    // domains (a host that answers now takes its connection back).
    const auto hosts = state->hosts;
    for (const auto& host : hosts) {
        const auto connection = host->connection;
        if (host->orphans.empty() || !connection || host->removed)
            continue;
        try {
            auto cleaning = detail::destroy_orphans(state, host, connection);
            co_await std::move(cleaning);
        } catch (const boost::system::system_error& e) {
            if (e.code() == boost::asio::error::operation_aborted)
                throw;
        }
        if (!host->orphans.empty()) {
            std::string uuids;
            for (const auto& uuid : host->orphans)
                uuids += " " + uuid;
            state->emit({hypervisor_pool_event_type::orphans_left,
                         host->options.name,
                         {},
                         "hypervisor host " + host->describe() +
                             " is still down: the domains of its lost containers are left "
                             "running there (destroy them, or sweep_containers() their "
                             "owner):" +
                             uuids,
                         host->orphans.size()});
        }
    }
    // Every host, also one that was there before and is not in `hosts`
    // (none can be added meanwhile, but the list is the truth).
    for (const auto& host : state->hosts)
        state->stop(host);
    state->closed = true;
}

} // namespace anweddol

#endif
