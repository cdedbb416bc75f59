//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_POOL_IPP
#define ANWEDDOL_IMPL_CONTAINER_POOL_IPP

#include <anweddol/container_pool.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/error.hpp>

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
    // need, and the pool's own refills unless a failure's delay runs.
    void refill() {
        if (closed)
            return;
        while (live_boots() < waiters.size())
            start_boot();
        const std::size_t wanted = options.size + waiters.size();
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
        } catch (...) {
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
    state_->close();
    // The containers' destructors destroy their domains in the background.
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

ANWEDDOL_DECL boost::asio::awaitable<provisioned_container> container_pool::take_here() {
    using clock = std::chrono::steady_clock;
    const auto began = clock::now();
    auto state = state_; // the take may outlive the pool object
    if (state->closed)
        detail::throw_error(errc::pool_closed, "the container pool is shut down");
    state->drop_lost();

    std::optional<detail::booted_container> booted;
    const bool warm = !state->ready.empty() && state->waiters.empty();
    if (warm) {
        booted = std::move(state->ready.front().booted);
        state->ready.pop_front();
        state->arm_idle_timer();
    } else {
        auto waiting = std::make_shared<detail::container_pool_state::waiter>(executor_);
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
            throw boost::system::system_error(boost::asio::error::operation_aborted);
        }
        if (waiting->failure)
            std::rethrow_exception(waiting->failure);
        if (!waiting->container)
            detail::throw_error(errc::pool_closed, "the container pool is shut down");
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

ANWEDDOL_DECL boost::asio::awaitable<void> container_pool::shutdown_here() {
    auto state = state_;
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
