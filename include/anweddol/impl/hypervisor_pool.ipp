//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_HYPERVISOR_POOL_IPP
#define ANWEDDOL_IMPL_HYPERVISOR_POOL_IPP

#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/detail/libvirt/host_probe.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_pool.hpp>

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
    }
    return "unknown";
}

namespace detail {

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
    bool draining = false;
    bool removed = false; // by remove_host() or the pool's end: its loop ends
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
    std::uint64_t placements = 0;
    std::uint64_t times_down = 0;
    std::uint64_t orphans_destroyed = 0;
    std::uint64_t down_count = 0; // placements compare it to see the host went down

    // Broadcasts: cancelled to wake whoever waits on them.
    boost::asio::steady_timer changed; // went down, or lost a container
    boost::asio::steady_timer retry;   // the connection loop: went down, or removed

    hypervisor_host_state state() const {
        if (draining)
            return hypervisor_host_state::draining;
        if (reachable)
            return hypervisor_host_state::up;
        return ever_reached || !last_error.empty() ? hypervisor_host_state::down
                                                   : hypervisor_host_state::connecting;
    }
    bool takes_containers() const { return reachable && !draining && !removed; }
    std::string describe() const { return "'" + options.name + "' (" + options.uri + ")"; }
};

struct hypervisor_pool_state : std::enable_shared_from_this<hypervisor_pool_state> {
    hypervisor_pool_state(boost::asio::any_io_executor ex, hypervisor_pool_options opts)
        : executor(std::move(ex))
        , options(std::move(opts)) {}

    boost::asio::any_io_executor executor;
    hypervisor_pool_options options; // its `hosts` are the ones given at construction
    std::vector<std::shared_ptr<hypervisor_host>> hosts;
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

    void add(hypervisor_host_options host_options);
    void watch_container(const std::shared_ptr<hypervisor_host>& host, const std::string& uuid);
    void forget_container(const std::shared_ptr<hypervisor_host>& host, const std::string& uuid);
    void mark_down(const std::shared_ptr<hypervisor_host>& host, std::string why);
    void stop(const std::shared_ptr<hypervisor_host>& host);
};

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

// Opens (or reopens) the host's connection, destroys the domains of its
// lost containers, and marks it up; then waits until it goes down, and
// tries again every reconnect_interval. Ends once the host is removed.
inline boost::asio::awaitable<void> keep_connected(std::shared_ptr<hypervisor_pool_state> pool,
                                                   std::shared_ptr<hypervisor_host> host) {
    while (!host->removed) {
        if (!host->reachable) {
            try {
                if (!host->connection) {
                    auto opening = hypervisor_connection::open(host->options.uri);
                    host->connection = co_await std::move(opening);
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
                auto reading = host->connection->call([uri = host->options.uri](virConnectPtr c) {
                    return read_host_resources(c, uri);
                });
                const host_resources resources = co_await std::move(reading);
                if (!host->orphans.empty()) {
                    std::vector<std::string> uuids(host->orphans.begin(), host->orphans.end());
                    auto destroying = host->connection->call([uuids](virConnectPtr c) {
                        for (const auto& uuid : uuids)
                            destroy_domain_blocking(c, uuid, nullptr);
                    });
                    co_await std::move(destroying);
                    host->orphans_destroyed += uuids.size();
                    for (const auto& uuid : uuids)
                        host->orphans.erase(uuid);
                    pool->emit({hypervisor_pool_event_type::orphans_destroyed,
                                host->options.name,
                                {},
                                "destroyed the domains of the containers lost while " +
                                    host->describe() + " was down",
                                uuids.size()});
                }
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
        host->retry.expires_at(host->reachable ? clock::time_point::max()
                                               : clock::now() + pool->options.reconnect_interval);
        boost::system::error_code ignored;
        auto sleeping = host->retry.async_wait(
            boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
        co_await std::move(sleeping);
    }
}

ANWEDDOL_DECL void hypervisor_pool_state::add(hypervisor_host_options host_options) {
    validate_host(host_options);
    if (find(host_options.name))
        throw_error(errc::invalid_argument, "the hypervisor pool already has a host named '" +
                                                host_options.name +
                                                "': give each a name of its own");
    auto host = std::make_shared<hypervisor_host>(executor, std::move(host_options));
    if (host->options.jump)
        host->jump = ssh_jump::create(executor, *host->options.jump);
    // Until its CPUs are known, one CPU-heavy boot at a time.
    host->admission.set_cpu_heavy_limit(
        std::max<std::size_t>(1, host->options.max_cpu_heavy_boots));
    hosts.push_back(host);
    boost::asio::co_spawn(executor, keep_connected(shared_from_this(), host),
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
            // Not from inside the subscription's own handler.
            if (pool && h)
                boost::asio::post(pool->executor,
                                  [pool, h, uuid] { pool->forget_container(h, uuid); });
        });
}

ANWEDDOL_DECL void
hypervisor_pool_state::forget_container(const std::shared_ptr<hypervisor_host>& host,
                                        const std::string& uuid) {
    if (host->containers.erase(uuid) > 0)
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
    for (auto& [uuid, watch] : lost) {
        host->orphans.insert(uuid);
        emit({hypervisor_pool_event_type::container_lost, host->options.name, uuid,
              "container " + uuid + " is lost: its host " + host->describe() + " went down (" +
                  host->last_error +
                  "); its domain is destroyed once the "
                  "host is back",
              0});
    }
    emit({hypervisor_pool_event_type::host_down,
          host->options.name,
          {},
          host->describe() + " went down: " + host->last_error,
          0});
    host->changed.cancel();
    host->retry.cancel();
}

ANWEDDOL_DECL void hypervisor_pool_state::stop(const std::shared_ptr<hypervisor_host>& host) {
    host->removed = true;
    host->reachable = false;
    host->containers.clear();
    host->close_watch.reset();
    host->connection.reset();
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
    ++host_->boots_in_flight;
    host_->booting_memory_mib += memory_mib_;
}

ANWEDDOL_DECL detail::host_placement::host_placement(host_placement&& other) noexcept
    : pool_(std::move(other.pool_))
    , host_(std::move(other.host_))
    , uuid_(std::move(other.uuid_))
    , memory_mib_(other.memory_mib_)
    , down_count_(other.down_count_)
    , booting_(std::exchange(other.booting_, false)) {}

ANWEDDOL_DECL detail::host_placement&
detail::host_placement::operator=(host_placement&& other) noexcept {
    if (this != &other) {
        end_boot();
        pool_ = std::move(other.pool_);
        host_ = std::move(other.host_);
        uuid_ = std::move(other.uuid_);
        memory_mib_ = other.memory_mib_;
        down_count_ = other.down_count_;
        booting_ = std::exchange(other.booting_, false);
    }
    return *this;
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
detail::host_placement::host_down_error(const std::string& detail) const {
    const std::string why = host_->last_error.empty() ? "its connection closed" : host_->last_error;
    return std::make_exception_ptr(error_with_diagnostics(
        errc::host_down, diagnostics("hypervisor host " + host_->describe() + " went down " +
                                     detail + " of container " + uuid_ + ": " + why)));
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
    --host_->boots_in_flight;
    host_->booting_memory_mib -= memory_mib_;
}

ANWEDDOL_DECL void detail::host_placement::forget_container() noexcept {
    if (host_ && !host_went_down())
        pool_->forget_container(host_, uuid_);
}

// --- hypervisor_pool --------------------------------------------------------

ANWEDDOL_DECL hypervisor_pool::hypervisor_pool(boost::asio::any_io_executor executor,
                                               hypervisor_pool_options options)
    : executor_(std::move(executor)) {
    if (options.reconnect_interval <= std::chrono::steady_clock::duration::zero())
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_pool_options::reconnect_interval must be positive");
    std::set<std::string> names;
    for (const auto& host : options.hosts) {
        detail::validate_host(host);
        if (!names.insert(host.name).second)
            detail::throw_error(errc::invalid_argument, "two hypervisor hosts are named '" +
                                                            host.name +
                                                            "': give each a name of its own");
        if (host.jump)
            ssh_jump::create(executor_, *host.jump); // validates, connects nothing
    }
    state_ = std::make_shared<detail::hypervisor_pool_state>(executor_, options);
    for (auto& host : options.hosts)
        state_->add(std::move(host));
}

ANWEDDOL_DECL hypervisor_pool::~hypervisor_pool() {
    state_->closed = true;
    for (const auto& host : state_->hosts)
        state_->stop(host);
}

ANWEDDOL_DECL void hypervisor_pool::add_host(hypervisor_host_options host) {
    if (state_->closed)
        detail::throw_error(errc::invalid_argument, "the hypervisor pool is shut down");
    state_->add(std::move(host));
}

ANWEDDOL_DECL std::vector<hypervisor_host_status> hypervisor_pool::get_hosts() const {
    std::vector<hypervisor_host_status> all;
    for (const auto& host : state_->hosts)
        all.push_back(*get_host(host->options.name));
    return all;
}

ANWEDDOL_DECL std::optional<hypervisor_host_status>
hypervisor_pool::get_host(std::string_view name) const {
    const auto host = state_->find(name);
    if (!host)
        return std::nullopt;
    return hypervisor_host_status{
        .name = host->options.name,
        .uri = host->options.uri,
        .state = host->state(),
        .last_error = host->last_error,
        .free_memory_mib = host->free_memory_mib,
        .booting_memory_mib = host->booting_memory_mib,
        .boots_in_flight = host->boots_in_flight,
        .containers = host->containers.size(),
        .cpu_heavy_limit = host->admission.limit_for("qemu"),
        .placements = host->placements,
        .times_down = host->times_down,
        .orphans_destroyed = host->orphans_destroyed,
    };
}

ANWEDDOL_DECL std::optional<std::string> hypervisor_pool::host_of(std::string_view uuid) const {
    for (const auto& host : state_->hosts)
        if (host->containers.contains(std::string(uuid)))
            return host->options.name;
    return std::nullopt;
}

ANWEDDOL_DECL boost::asio::awaitable<detail::host_placement>
hypervisor_pool::place(std::string uuid, unsigned memory_mib) {
    auto state = state_;
    if (state->closed)
        detail::throw_error(errc::no_host_available, "the hypervisor pool is shut down");
    // Free memory as the hosts say it now: what booted since the last
    // placement has taken its share.
    std::vector<std::shared_ptr<detail::hypervisor_host>> candidates;
    for (const auto& host : state->hosts)
        if (host->takes_containers())
            candidates.push_back(host);
    for (const auto& host : candidates) {
        auto reading = host->connection->call([uri = host->options.uri](virConnectPtr c) {
            return detail::read_host_resources(c, uri);
        });
        try {
            const auto free = (co_await std::move(reading)).free_memory_mib;
            host->free_memory_mib = free.value_or(0);
            host->memory_known = free.has_value();
        } catch (const boost::system::system_error& e) {
            if (e.code() == boost::asio::error::operation_aborted)
                throw;
            state->mark_down(host, e.what()); // its close event may still be on its way
        }
    }
    const auto room = [&](const detail::hypervisor_host& host) -> std::int64_t {
        if (!host.options.check_memory)
            return std::numeric_limits<std::int64_t>::max();
        return static_cast<std::int64_t>(host.free_memory_mib) -
               static_cast<std::int64_t>(host.booting_memory_mib) -
               static_cast<std::int64_t>(host.options.reserved_memory_mib);
    };
    std::shared_ptr<detail::hypervisor_host> chosen;
    for (const auto& host : candidates) {
        if (!host->takes_containers() || room(*host) < static_cast<std::int64_t>(memory_mib))
            continue;
        if (!chosen || host->boots_in_flight < chosen->boots_in_flight ||
            (host->boots_in_flight == chosen->boots_in_flight && room(*host) > room(*chosen)))
            chosen = host;
    }
    if (!chosen) {
        std::string why =
            "no hypervisor host can take a container of " + std::to_string(memory_mib) + " MiB:";
        if (state->hosts.empty())
            why += " the pool has no hosts";
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
                if (!host->memory_known) {
                    why += "does not report its free memory (hypervisor_host_options::"
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
        detail::throw_error(errc::no_host_available, why);
    }
    detail::host_placement placement(state, chosen, uuid, memory_mib);
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
    auto guarded = unless_host_down(placement, std::move(starting), "during the start");
    std::exception_ptr failure;
    try {
        co_await std::move(guarded);
    } catch (...) {
        failure = std::current_exception();
    }
    // The host's admission is the pool's: the container does not keep it.
    container->set_options(before);
    placement.end_boot();
    if (failure) {
        if (!container->is_domain_running())
            placement.forget_container(); // no domain: nothing to wait for
        std::rethrow_exception(failure);
    }
}

ANWEDDOL_DECL boost::asio::awaitable<std::string>
hypervisor_pool::start_here(std::shared_ptr<container_instance> container, start_options opts) {
    if (!container)
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_pool::start_container() needs a container, not nullptr");
    if (container->is_domain_running())
        detail::throw_error(errc::domain_already_running,
                            "container " + container->get_uuid() + " is already running");
    auto placing = place(container->get_uuid(), container->get_memory());
    auto placement = co_await std::move(placing);
    auto starting = detail::start_on_host(container, std::move(opts), placement);
    co_await std::move(starting);
    co_return placement.host_name();
}

ANWEDDOL_DECL boost::asio::awaitable<void> hypervisor_pool::remove_host_here(std::string name) {
    auto state = state_;
    auto host = state->find(name);
    if (!host)
        detail::throw_error(errc::invalid_argument,
                            "the hypervisor pool has no host named '" + name + "'");
    host->draining = true;
    try {
        while (!host->containers.empty() || !host->orphans.empty()) {
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
        host->draining = false; // cancelled: it takes containers again
        throw;
    }
    state->stop(host);
    std::erase(state->hosts, host);
    state->emit({hypervisor_pool_event_type::host_removed,
                 name,
                 {},
                 "hypervisor host " + host->describe() + " was drained and removed",
                 0});
}

ANWEDDOL_DECL boost::asio::awaitable<void> hypervisor_pool::shutdown_here() {
    auto state = state_;
    for (const auto& host : state->hosts)
        state->stop(host);
    state->closed = true;
    co_return;
}

} // namespace anweddol

#endif
