//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_POOL_IPP
#define ANWEDDOL_IMPL_CONTAINER_POOL_IPP

#include <anweddol/container_pool.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace anweddol {

ANWEDDOL_DECL std::string_view to_string(container_pool_event_type type) noexcept {
    switch (type) {
    case container_pool_event_type::boot_started:
        return "boot_started";
    case container_pool_event_type::ready:
        return "ready";
    case container_pool_event_type::boot_failed:
        return "boot_failed";
    case container_pool_event_type::taken:
        return "taken";
    case container_pool_event_type::recycled:
        return "recycled";
    case container_pool_event_type::lost:
        return "lost";
    }
    return "unknown";
}

namespace detail {

namespace pool_impl {

inline std::string paused_because(int reason) {
    switch (reason) {
    case VIR_DOMAIN_PAUSED_USER:
        return "paused by a client of libvirt (virsh suspend)";
    case VIR_DOMAIN_PAUSED_IOERROR:
        return "paused after a disk I/O error";
    case VIR_DOMAIN_PAUSED_WATCHDOG:
        return "paused by its watchdog";
    case VIR_DOMAIN_PAUSED_CRASHED:
        return "paused after its guest crashed";
    default:
        return "paused (libvirt's reason " + std::to_string(reason) + ")";
    }
}

// What libvirt says of the domain `uuid`: no fault while it runs. On a
// connection's lane.
inline pooled_fault domain_fault_blocking(virConnectPtr connection, const std::string& uuid) {
    const domain_handle domain = find_domain(connection, uuid);
    if (!domain)
        return {make_error_code(errc::domain_not_running), "libvirt has no domain " + uuid};
    int state = VIR_DOMAIN_NOSTATE;
    int reason = 0;
    if (virDomainGetState(domain.get(), &state, &reason, 0) < 0)
        throw_last_libvirt_error("cannot read the state of domain " + uuid);
    switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED: // running, waiting on a resource
        return {};
    case VIR_DOMAIN_PAUSED:
        return {make_error_code(errc::domain_paused),
                "domain " + uuid + " is " + paused_because(reason)};
    case VIR_DOMAIN_CRASHED:
        return {make_error_code(errc::domain_crashed), "domain " + uuid + " crashed"};
    default: // shutting down, shut off, suspended to memory, no state
        return {make_error_code(errc::domain_not_running),
                "domain " + uuid + " does not run (libvirt's state " + std::to_string(state) + ")"};
    }
}

inline pooled_fault as_fault(std::exception_ptr failure, const std::string& what) {
    auto [ec, diag] = to_error(failure);
    std::string message = diag.full_message();
    return {ec, what + ": " + (message.empty() ? ec.message() : message)};
}

// The domain's part of check_pooled_container().
inline boost::asio::awaitable<pooled_fault> check_domain(const booted_container& booted,
                                                         const provisioning_options& options) {
    const auto& container = *booted.partial.container;
    if (!container.is_domain_running())
        co_return pooled_fault{make_error_code(errc::domain_not_running),
                               "domain " + container.get_uuid() + " stopped"};
    if (booted.placement && booted.placement.host_went_down())
        co_return pooled_fault{make_error_code(errc::host_down),
                               "the host of domain " + container.get_uuid() + " went down"};
    std::exception_ptr failure;
    try {
        // The container's own connection: connections are shared by URI.
        auto opening = hypervisor_connection::open(booted.placement ? booted.placement.uri()
                                                                    : options.driver_uri);
        auto connection = co_await std::move(opening);
        auto asking = connection->call([uuid = container.get_uuid()](virConnectPtr c) {
            return domain_fault_blocking(c, uuid);
        });
        co_return co_await std::move(asking);
    } catch (...) {
        failure = std::current_exception();
    }
    co_return as_fault(failure, "cannot tell whether domain " + container.get_uuid() + " runs");
}

// The endpoint's part: one command (or one login, when its session was
// lost) within one login attempt's time.
inline boost::asio::awaitable<pooled_fault> check_endpoint(const booted_container& booted) {
    auto& endpoint = *booted.endpoint;
    std::exception_ptr failure;
    try {
        if (endpoint.is_closed()) {
            auto shell = booted.shell;
            shell.ready_timeout = shell.attempt_timeout;
            auto opening = endpoint.open_shell(shell);
            co_await std::move(opening);
        }
        command_options probe;
        probe.timeout = booted.shell.attempt_timeout;
        auto probing = endpoint.execute("true", probe);
        const command_result result = co_await std::move(probing);
        if (result.exit_status == 0)
            co_return pooled_fault{};
        co_return pooled_fault{
            make_error_code(errc::administration_failed),
            "the endpoint of " + booted.partial.ip + " could not run 'true': exit status " +
                std::to_string(result.exit_status) +
                (result.exit_signal.empty() ? std::string()
                                            : " (signal " + result.exit_signal + ")")};
    } catch (...) {
        failure = std::current_exception();
    }
    co_return as_fault(failure, "the endpoint of " + booted.partial.ip + " does not answer");
}

} // namespace pool_impl

ANWEDDOL_DECL boost::asio::awaitable<pooled_fault>
check_pooled_container(const booted_container& booted, const provisioning_options& options) {
    if (!booted.partial.container || !booted.endpoint)
        co_return pooled_fault{make_error_code(errc::domain_not_running), "no container"};
    auto checking_domain = pool_impl::check_domain(booted, options);
    pooled_fault fault = co_await std::move(checking_domain);
    if (fault)
        co_return fault;
    // Only once its domain runs: a paused guest would hold the probe for
    // its whole timeout.
    auto checking_endpoint = pool_impl::check_endpoint(booted);
    co_return co_await std::move(checking_endpoint);
}

// Everything the pool's coroutines share. It outlives the pool object while
// boots, stops and takes still run; all of it is used on the pool's
// executor only.
struct container_pool_state : std::enable_shared_from_this<container_pool_state> {
    using clock = std::chrono::steady_clock;

    struct pooled {
        booted_container booted;
        clock::time_point since; // when it became ready
    };

    // A take waiting for a container: a boot, or close(), fills one of the
    // two and cancels `wake`.
    struct waiter {
        explicit waiter(const boost::asio::any_io_executor& ex)
            : wake(ex, clock::time_point::max()) {}
        boost::asio::steady_timer wake;
        std::optional<booted_container> container;
        std::exception_ptr failure;
        bool served() const { return container.has_value() || failure != nullptr; }
    };

    container_pool_state(boost::asio::any_io_executor ex, container_pool_options opts)
        : executor(std::move(ex))
        , options(std::move(opts))
        , refill_timer(executor)
        , idle_timer(executor)
        , quiet(executor, clock::time_point::max()) {}

    boost::asio::any_io_executor executor;
    container_pool_options options;
    std::deque<pooled> ready;                    // oldest first
    std::deque<std::shared_ptr<waiter>> waiters; // in the order the takes came
    // A boot under way: what cancels it, and whether the pool did (it was
    // no longer needed: that is no failure).
    struct boot_handle {
        boost::asio::cancellation_signal signal;
        bool cancelled = false;
        void cancel() {
            cancelled = true;
            signal.emit(boost::asio::cancellation_type::terminal);
        }
    };
    std::map<std::uint64_t, std::shared_ptr<boot_handle>> boots; // by number
    std::uint64_t next_boot = 0;
    std::size_t background = 0; // boots and stops still running
    bool closed = false;
    bool destroyed = false;           // the pool object is gone (closed too)
    clock::duration delay{};          // since the last failure in a row; zero after a success
    clock::time_point refill_after{}; // no refill (for the pool itself) before
    boost::asio::steady_timer refill_timer;
    boost::asio::steady_timer idle_timer;
    boost::asio::steady_timer quiet; // cancelled when `background` drops to zero
    container_pool_stats stats;

    // The boots under way that are still wanted.
    std::size_t live_boots() const {
        return static_cast<std::size_t>(std::count_if(
            boots.begin(), boots.end(), [](const auto& boot) { return !boot.second->cancelled; }));
    }

    // Nothing is reported once the pool is shut down or destroyed: the hook
    // may refer to what its owner has destroyed since (a take still handing
    // over, say).
    void emit(const container_pool_event& event) const {
        if (options.on_event && !closed)
            options.on_event(event);
    }
    void emit(container_pool_event_type type, std::string uuid) const {
        container_pool_event event;
        event.type = type;
        event.uuid = std::move(uuid);
        emit(event);
    }

    // Starts the boots that are missing: at once those that waiting takes
    // need; the pool's own refills once no take waits, and unless a
    // failure's delay runs. Under software emulation a boot keeps a core
    // busy, so refills started beside the boots of a burst of takes would
    // delay the very boots those clients wait for (a burst of 4 beyond a
    // pool of 2 on 2 cores: 6 boots sharing them instead of 4).
    void refill() {
        if (closed)
            return;
        while (live_boots() < waiters.size())
            start_boot();
        if (!waiters.empty())
            return; // the last take served calls refill() again
        const std::size_t wanted = options.size;
        if (ready.size() + live_boots() >= wanted)
            return;
        if (clock::now() < refill_after) {
            refill_timer.expires_at(refill_after);
            refill_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
                if (auto self = weak.lock(); self && !ec)
                    self->refill();
            });
            return;
        }
        while (ready.size() + live_boots() < wanted)
            start_boot();
    }

    void start_boot() {
        auto container = std::make_shared<container_instance>(
            executor, options.iso_path, std::string(), options.memory, options.vcpus,
            options.nat_interface_name);
        container->set_options(options.container);
        const std::uint64_t id = next_boot++;
        auto handle = std::make_shared<boot_handle>();
        boots.emplace(id, handle);
        ++background;
        ++stats.boots_started;
        emit(container_pool_event_type::boot_started, container->get_uuid());
        boost::asio::co_spawn(
            executor, boot(shared_from_this(), id, std::move(container)),
            boost::asio::bind_cancellation_slot(handle->signal.slot(), [](std::exception_ptr) {}));
    }

    static boost::asio::awaitable<void> boot(std::shared_ptr<container_pool_state> self,
                                             std::uint64_t id,
                                             std::shared_ptr<container_instance> container) {
        std::optional<booted_container> booted;
        std::exception_ptr failure;
        try {
            auto booting = detail::boot_and_log_in(container, self->options.provisioning);
            booted = co_await std::move(booting);
            if (self->options.hand_over_ahead) {
                auto handing_over = detail::hand_over_ahead(*booted, self->options.provisioning);
                co_await std::move(handing_over);
            }
        } catch (...) {
            // A failed hand-over ahead has destroyed its domain: that
            // container is no more, and this boot failed.
            booted.reset();
            failure = std::current_exception();
        }
        const bool cancelled = self->boots.at(id)->cancelled;
        self->boots.erase(id);
        if (booted && cancelled)
            self->discard(std::move(*booted)); // done before its cancellation came
        else if (booted)
            self->boot_succeeded(std::move(*booted));
        else if (!cancelled)
            self->boot_failed(*container, failure);
        // (A cancelled boot has destroyed its domain: that is no failure.)
        self->finished_in_background();
    }

    void boot_failed(const container_instance& container, std::exception_ptr failure) {
        if (closed)
            return; // cancelled by shutdown: its domain is gone already
        ++stats.boots_failed;
        delay = delay == clock::duration::zero() ? options.retry_delay
                                                 : std::min(delay * 2, options.retry_delay_max);
        refill_after = clock::now() + delay;
        auto [ec, diag] = to_error(failure);
        container_pool_event event;
        event.type = container_pool_event_type::boot_failed;
        event.uuid = container.get_uuid();
        event.error = ec;
        event.message = diag.full_message();
        event.retry_in = delay;
        if (event.message.empty())
            event.message = ec.message();
        emit(event);
        // The take that has waited longest gets the failure, as it would
        // have had its own boot's.
        if (!waiters.empty()) {
            auto first = std::move(waiters.front());
            waiters.pop_front();
            first->failure = failure;
            first->wake.cancel();
        }
        refill();
    }

    void boot_succeeded(booted_container booted) {
        delay = clock::duration::zero();
        refill_after = {};
        container_pool_event event;
        event.type = container_pool_event_type::ready;
        event.uuid = booted.partial.container->get_uuid();
        event.timings = booted.partial.timings;
        emit(event);
        place(std::move(booted));
    }

    // A booted container goes to the take that has waited longest, else
    // into the pool if it has room, else away.
    void place(booted_container booted) {
        if (closed) {
            discard(std::move(booted));
            return;
        }
        if (!waiters.empty()) {
            auto first = std::move(waiters.front());
            waiters.pop_front();
            first->container = std::move(booted);
            first->wake.cancel();
            return;
        }
        if (ready.size() < options.size) {
            ready.push_back({std::move(booted), clock::now()});
            arm_idle_timer();
            return;
        }
        discard(std::move(booted));
    }

    // Destroys a container's domain in the background (its endpoint
    // session first).
    void discard(booted_container booted) {
        booted.endpoint.reset();
        detail::cleanse(booted.partial.password); // set when handed over ahead
        auto container = std::move(booted.partial.container);
        if (!container || !container->is_domain_running())
            return;
        ++background;
        boost::asio::co_spawn(executor, stop(shared_from_this(), std::move(container)),
                              [](std::exception_ptr) {});
    }

    static boost::asio::awaitable<void> stop(std::shared_ptr<container_pool_state> self,
                                             std::shared_ptr<container_instance> container) {
        try {
            co_await container->stop_domain(true);
        } catch (...) {
            // Gone already; or libvirt failed, and the container's
            // destructor tries again.
        }
        self->finished_in_background();
    }

    void finished_in_background() {
        if (--background == 0)
            quiet.cancel();
    }

    // The ready containers whose domain stopped on its own go.
    void drop_lost() {
        for (auto it = ready.begin(); it != ready.end();) {
            // A container on a hypervisor_pool host that went down still
            // looks running, but can no longer be handed over.
            if (it->booted.partial.container->is_domain_running() &&
                !it->booted.placement.host_went_down()) {
                ++it;
                continue;
            }
            ++stats.lost;
            emit(container_pool_event_type::lost, it->booted.partial.container->get_uuid());
            discard(std::move(it->booted));
            it = ready.erase(it);
        }
    }

    void arm_idle_timer() {
        if (closed || ready.empty()) {
            idle_timer.cancel();
            return;
        }
        idle_timer.expires_at(ready.front().since + options.max_idle);
        idle_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            if (auto self = weak.lock(); self && !ec)
                self->recycle_idle();
        });
    }

    void recycle_idle() {
        drop_lost();
        const auto now = clock::now();
        while (!ready.empty() && ready.front().since + options.max_idle <= now) {
            ++stats.recycled;
            emit(container_pool_event_type::recycled,
                 ready.front().booted.partial.container->get_uuid());
            discard(std::move(ready.front().booted));
            ready.pop_front();
        }
        arm_idle_timer();
        refill();
    }

    // Cancels the boots nobody needs any more (a waiting take was
    // cancelled), newest first: their domains are destroyed.
    void cancel_surplus_boots() {
        const std::size_t needed = options.size + waiters.size();
        std::size_t have = ready.size() + live_boots();
        for (auto it = boots.rbegin(); it != boots.rend() && have > needed; ++it) {
            if (!it->second->cancelled) {
                it->second->cancel();
                --have;
            }
        }
    }

    void resize(std::size_t size) {
        options.size = size;
        while (ready.size() > size) {
            discard(std::move(ready.back().booted));
            ready.pop_back();
        }
        arm_idle_timer();
        cancel_surplus_boots();
        refill();
    }

    // A ready container found unusable: destroyed, and replaced.
    void lose(booted_container booted, pooled_fault fault) {
        ++stats.lost;
        container_pool_event event;
        event.type = container_pool_event_type::lost;
        event.uuid = booted.partial.container->get_uuid();
        event.error = fault.error;
        event.message = std::move(fault.message);
        emit(event);
        discard(std::move(booted));
        refill();
    }

    // A ready container that a cancelled take had checked goes back where
    // it was, unless a waiting take or a smaller pool wants it otherwise.
    void put_back(booted_container booted, clock::time_point since) {
        if (closed || !waiters.empty() || ready.size() >= options.size) {
            place(std::move(booted));
            return;
        }
        ready.push_front({std::move(booted), since});
        arm_idle_timer();
    }

    // Why the take fails once the pool is closed.
    [[noreturn]] void throw_closed() const {
        detail::throw_error(errc::pool_closed,
                            destroyed ? "the container pool was destroyed before this take ran"
                                      : "the container pool is shut down");
    }

    // The oldest ready container that can still be handed over (see
    // check_pooled_container); those that cannot are destroyed and
    // replaced. nullopt when none is ready, or takes wait before this one.
    static boost::asio::awaitable<std::optional<booted_container>>
    take_ready(std::shared_ptr<container_pool_state> self) {
        while (!self->ready.empty() && self->waiters.empty()) {
            booted_container candidate = std::move(self->ready.front().booted);
            const clock::time_point since = self->ready.front().since;
            self->ready.pop_front();
            self->arm_idle_timer();
            // Short (one libvirt call, one command with a deadline) and not
            // cancelled half-way: a take cancelled meanwhile puts the
            // container back, whole.
            auto checking = boost::asio::co_spawn(
                self->executor, check_pooled_container(candidate, self->options.provisioning),
                boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(),
                                                    boost::asio::use_awaitable));
            ++self->background; // a shutdown meanwhile waits for it to be discarded
            pooled_fault fault = co_await std::move(checking);
            if (self->closed)
                self->discard(std::move(candidate));
            self->finished_in_background();
            if (self->closed)
                self->throw_closed();
            if (fault) {
                self->lose(std::move(candidate), std::move(fault));
                continue;
            }
            const auto cancel_state = co_await boost::asio::this_coro::cancellation_state;
            if (cancel_state.cancelled() != boost::asio::cancellation_type::none) {
                self->put_back(std::move(candidate), since);
                throw boost::system::system_error(boost::asio::error::operation_aborted);
            }
            co_return std::move(candidate);
        }
        co_return std::nullopt;
    }

    // No more boots and takes: the waiting takes fail, boots are cancelled.
    void close() {
        if (closed)
            return;
        closed = true;
        refill_timer.cancel();
        idle_timer.cancel();
        auto failure = std::make_exception_ptr(error_with_diagnostics(
            make_error_code(errc::pool_closed),
            diagnostics("the container pool was shut down while this take waited")));
        for (auto& waiting : std::exchange(waiters, {})) {
            waiting->failure = failure;
            waiting->wake.cancel();
        }
        std::vector<std::shared_ptr<boot_handle>> under_way;
        for (auto& [id, handle] : boots)
            under_way.push_back(handle);
        for (auto& handle : under_way)
            handle->cancel();
    }
};

} // namespace detail

ANWEDDOL_DECL container_pool::container_pool(boost::asio::any_io_executor executor,
                                             container_pool_options options)
    : executor_(std::move(executor)) {
    if (options.iso_path.empty())
        detail::throw_error(errc::iso_path_not_set, "a container pool needs the ISO to boot");
    if (options.retry_delay <= options.retry_delay.zero() ||
        options.retry_delay_max < options.retry_delay)
        detail::throw_error(errc::invalid_argument,
                            "a container pool's retry_delay must be positive and at most "
                            "retry_delay_max");
    if (options.max_idle <= options.max_idle.zero())
        detail::throw_error(errc::invalid_argument, "a container pool's max_idle must be positive");
    // The containers' own checks (memory, vCPUs, bridge name), before any boot.
    container_instance probe(executor_, options.iso_path, std::string(), options.memory,
                             options.vcpus, options.nat_interface_name);
    state_ = std::make_shared<detail::container_pool_state>(executor_, std::move(options));
    boost::asio::post(executor_, [weak = std::weak_ptr(state_)] {
        if (auto state = weak.lock())
            state->refill();
    });
}

ANWEDDOL_DECL container_pool::~container_pool() {
    state_->destroyed = true;
    state_->close();
    // The containers' destructors destroy their domains in the background.
    for (auto& waiting : state_->ready)
        detail::cleanse(waiting.booted.partial.password); // set when handed over ahead
    state_->ready.clear();
}

ANWEDDOL_DECL const container_pool_options& container_pool::get_options() const noexcept {
    return state_->options;
}

ANWEDDOL_DECL container_pool_stats container_pool::get_stats() const noexcept {
    auto stats = state_->stats;
    stats.target = state_->options.size;
    stats.ready = state_->ready.size();
    stats.booting = state_->live_boots();
    stats.waiting = state_->waiters.size();
    return stats;
}

ANWEDDOL_DECL void container_pool::resize(std::size_t size) {
    if (!state_->closed)
        state_->resize(size);
}

ANWEDDOL_DECL boost::asio::awaitable<provisioned_container>
container_pool::take_here(std::shared_ptr<detail::container_pool_state> state) {
    using clock = std::chrono::steady_clock;
    const auto began = clock::now();
    if (state->closed)
        state->throw_closed();
    state->drop_lost();

    auto taking_ready = detail::container_pool_state::take_ready(state);
    std::optional<detail::booted_container> booted = co_await std::move(taking_ready);
    const bool warm = booted.has_value();
    if (!warm) {
        auto waiting = std::make_shared<detail::container_pool_state::waiter>(state->executor);
        state->waiters.push_back(waiting);
        state->refill();
        auto woken = waiting->wake.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        co_await std::move(woken);
        const auto cancel_state = co_await boost::asio::this_coro::cancellation_state;
        if (cancel_state.cancelled() != boost::asio::cancellation_type::none) {
            // Cancelled while waiting: a container that arrived meanwhile
            // goes back, and the boot started for this take is not needed.
            std::erase(state->waiters, waiting);
            if (waiting->container)
                state->place(std::move(*waiting->container));
            state->cancel_surplus_boots();
            state->refill(); // the refills this take held back
            throw boost::system::system_error(boost::asio::error::operation_aborted);
        }
        if (waiting->failure)
            std::rethrow_exception(waiting->failure);
        if (!waiting->container)
            state->throw_closed();
        booted = std::move(*waiting->container);
    }

    // The refill that replaces this container starts once its hand-over is
    // done: under software emulation a boot takes a whole core, which the
    // hand-over (the guest's sshd, the setup script) would have to share.
    // A take that comes meanwhile and finds the pool empty starts it at once.
    booted->began = began;
    const auto handing_over_at = clock::now();
    const auto uuid = booted->partial.container->get_uuid();
    auto handing_over = detail::hand_over(std::move(*booted), state->options.provisioning);
    std::optional<provisioned_container> handed_over;
    std::exception_ptr failure;
    try {
        handed_over = co_await std::move(handing_over);
    } catch (...) {
        failure = std::current_exception();
    }
    state->refill();
    if (failure)
        std::rethrow_exception(failure);
    auto result = std::move(*handed_over);
    result.from_pool = warm;
    result.timings.pool_wait = warm ? clock::duration::zero() : handing_over_at - began;
    ++(warm ? state->stats.taken_warm : state->stats.taken_after_wait);
    state->emit(container_pool_event_type::taken, uuid);
    co_return result;
}

ANWEDDOL_DECL boost::asio::awaitable<void>
container_pool::shutdown_here(std::shared_ptr<detail::container_pool_state> state) {
    if (state->destroyed)
        detail::throw_error(errc::pool_closed,
                            "the container pool was destroyed before this shutdown ran: its "
                            "destructor destroyed its containers already");
    state->close();
    for (auto& entry : std::exchange(state->ready, {}))
        state->discard(std::move(entry.booted));
    while (state->background > 0) {
        state->quiet.expires_at(std::chrono::steady_clock::time_point::max());
        auto waiting = state->quiet.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        co_await std::move(waiting);
    }
}

} // namespace anweddol

#endif
