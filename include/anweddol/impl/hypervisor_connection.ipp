//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_IPP
#define ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_IPP

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/event_hooks.hpp>
#include <anweddol/detail/sigpipe.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <memory>
#include <optional>

namespace anweddol {

namespace connection_impl {

inline std::size_t automatic_lanes(const std::string& uri) {
    // In-process drivers run every call under one driver lock.
    return uri.starts_with("test:") ? 1 : 5;
}

// Connections are shared by URI and the settings that shape them; events
// are not among them: a connection gains events when an opener asks.
inline std::string registry_key(const std::string& uri, const hypervisor_connection::options& o,
                                std::size_t lanes) {
    return uri + '\n' + std::to_string(lanes) + '\n' +
           std::to_string(o.keepalive_interval.count()) + '\n' + std::to_string(o.keepalive_count);
}

} // namespace connection_impl

ANWEDDOL_DECL
hypervisor_connection::hypervisor_connection(anweddol::runtime& rt, std::string key,
                                             std::string uri, options opts)
    : runtime_(rt)
    , key_(std::move(key))
    , uri_(std::move(uri))
    , options_(opts)
    , lane_count_(opts.max_calls_in_flight ? opts.max_calls_in_flight
                                           : connection_impl::automatic_lanes(uri_))
    , lanes_(std::make_shared<detail::worker_threads>(lane_count_))
    , events_wanted_(opts.lifecycle_events) {
    runtime_.track_lanes(lanes_);
}

ANWEDDOL_DECL hypervisor_connection::~hypervisor_connection() {
    {
        std::lock_guard lock(runtime_.connections_mutex_);
        auto entry = runtime_.connections_.find(key_);
        if (entry != runtime_.connections_.end() && entry->second.expired())
            runtime_.connections_.erase(entry);
    }
    // The lanes may be running the call that dropped the last reference:
    // they finish on a thread of their own (or, once the io_context is
    // shutting down, here: a lane does not wait for itself).
    runtime_.run_detached([lanes = std::move(lanes_)] { lanes->join(); });
    // Deregister and close on a worker: both are RPCs. Closing lets libvirt
    // remove its watches and timers, and the io_context can run out of work.
    std::function<void()> close;
    try {
        close = take_libvirt_connection();
    } catch (...) {
        return; // out of memory: the connection was closed here, with its callbacks
    }
    runtime_.run_detached([close = std::move(close)]() mutable { close(); });
}

// The libvirt connection, its callbacks deregistered and closed when the
// result is called (or destroyed); null once taken.
ANWEDDOL_DECL std::function<void()> hypervisor_connection::take_libvirt_connection() {
    std::lock_guard lock(mutex_);
    if (!connection_)
        return [] {
        };
    return [close = std::shared_ptr<close_opaque>(std::move(close_opaque_)),
            connection = std::shared_ptr<virConnect>(connection_.release(), virConnectClose),
            id = std::exchange(lifecycle_callback_, -1), loop = &runtime_.event_loop()]() mutable {
        if (!connection)
            return;
        const detail::libvirt_event_loop::scope on_our_loop(loop);
        if (id >= 0)
            virConnectDomainEventDeregisterAny(connection.get(), id);
        if (close)
            virConnectUnregisterCloseCallback(connection.get(), &on_closed);
        virResetLastError();
        connection.reset();
        close.reset(); // the callback cannot run any more
    };
}

// The io_context is going, its lanes joined: no call can come any more.
// Closed now, while libvirt's event loop is still attached, so that libvirt
// removes its timers and watches through it; a holder that lets go later
// (a coroutine frame the io_context destroys) finds nothing left to close.
ANWEDDOL_DECL void hypervisor_connection::close_at_shutdown() noexcept {
    try {
        const detail::sigpipe_suppressed no_sigpipe;
        take_libvirt_connection()();
    } catch (...) {
        // out of memory: the destructor closes it
    }
}

// The runtime's, here where both classes are complete: closes every
// connection still held (by coroutine frames that the io_context destroys
// after this); see hypervisor_connection::close_at_shutdown.
ANWEDDOL_DECL void runtime::close_connections() noexcept {
    std::vector<std::shared_ptr<hypervisor_connection>> live;
    {
        std::lock_guard lock(connections_mutex_);
        for (const auto& [key, weak] : connections_)
            if (auto connection = weak.lock())
                live.push_back(std::move(connection));
    }
    for (const auto& connection : live)
        connection->close_at_shutdown();
    // The last reference may go here: its destructor takes connections_mutex_.
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<hypervisor_connection>>
hypervisor_connection::open(std::string uri, options opts) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto opening = open_on(std::move(executor), std::move(uri), opts);
    co_return co_await std::move(opening);
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<hypervisor_connection>>
hypervisor_connection::open_on(boost::asio::any_io_executor executor, std::string uri,
                               options opts) {
    detail::libvirt_event_hooks::install();
    std::shared_ptr<hypervisor_connection> connection =
        shared_for(anweddol::runtime::of(executor), uri, opts);
    co_await reopen(connection); // no-op when open
    if (opts.lifecycle_events && !connection->events_wanted_.load()) {
        // Shared with an opener that did not want events: subscribe now, and
        // say so only once it worked (a failure leaves the next opener to
        // try again).
        auto registering = connection->call_here(
            [self = connection.get()](virConnectPtr c) { self->register_lifecycle_blocking(c); });
        co_await std::move(registering);
        connection->events_wanted_ = true;
    }
    co_return connection;
}

ANWEDDOL_DECL std::shared_ptr<hypervisor_connection>
hypervisor_connection::shared_for(anweddol::runtime& rt, const std::string& uri,
                                  const options& opts) {
    if (uri.empty())
        detail::throw_error(errc::invalid_argument,
                            "empty libvirt URI: give one such as qemu:///system");
    if (opts.open_timeout <= std::chrono::steady_clock::duration::zero())
        detail::throw_error(errc::invalid_argument,
                            "hypervisor_connection::options::open_timeout must be positive");
    const std::size_t lanes =
        opts.max_calls_in_flight ? opts.max_calls_in_flight : connection_impl::automatic_lanes(uri);
    std::string key = connection_impl::registry_key(uri, opts, lanes);
    std::lock_guard lock(rt.connections_mutex_);
    auto& slot = rt.connections_[key];
    std::shared_ptr<hypervisor_connection> connection = slot.lock();
    if (!connection) {
        connection.reset(new hypervisor_connection(rt, key, uri, opts));
        slot = connection;
    }
    return connection;
}

ANWEDDOL_DECL hypervisor_connection::in_flight_count::in_flight_count(hypervisor_connection& c)
    : connection(c) {
    const std::size_t now = ++connection.in_flight_;
    std::size_t peak = connection.peak_in_flight_.load();
    while (now > peak && !connection.peak_in_flight_.compare_exchange_weak(peak, now)) {
    }
}

ANWEDDOL_DECL hypervisor_connection::in_flight_count::~in_flight_count() {
    --connection.in_flight_;
}

ANWEDDOL_DECL detail::connect_handle hypervisor_connection::current() const {
    std::lock_guard lock(mutex_);
    return detail::retain_connect(connection_.get());
}

// A static coroutine with the connection as a parameter: its frame owns a
// reference for as long as it runs.
ANWEDDOL_DECL boost::asio::awaitable<void>
hypervisor_connection::reopen(std::shared_ptr<hypervisor_connection> self) {
    if (self->is_open())
        co_return;
    // The permit gives the lock back when this frame ends, or when its
    // completion is destroyed without running.
    auto acquiring = self->reopen_lock_.async_acquire(boost::asio::use_awaitable);
    auto permit = co_await std::move(acquiring);
    if (self->is_open())
        co_return; // another caller reopened it meanwhile
    auto& rt = self->runtime_;
    auto* loop = &rt.event_loop();
    // virConnectOpen on a thread of its own, with a deadline: it has no
    // timeout, and an unreachable host must not hold a shared worker. The
    // thread holds nothing of this connection (it may outlive the runtime).
    const auto timeout = self->options_.open_timeout;
    auto opening = rt.openers_.run<detail::connect_handle>(
        [uri = self->uri_, loop] {
            const detail::libvirt_event_loop::scope on_our_loop(loop);
            detail::connect_handle fresh(virConnectOpen(uri.c_str()));
            if (!fresh)
                detail::throw_last_libvirt_error("cannot connect to " + uri);
            return fresh;
        },
        timeout,
        "cannot connect to " + self->uri_ + ": no answer within " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
            " ms (hypervisor_connection::options::open_timeout); check that libvirtd runs "
            "there and that its port is reachable");
    detail::connect_handle opened = co_await std::move(opening);
    auto fresh = std::make_shared<detail::connect_handle>(std::move(opened));
    // The rest are RPCs on an open connection, which keepalive bounds: on
    // this connection's own lanes.
    auto adopting =
        detail::run_blocking(self->lanes_->get_executor(), &rt.completions(), [self, loop, fresh] {
            const detail::libvirt_event_loop::scope on_our_loop(loop);
            self->adopt_blocking(std::move(*fresh));
        });
    co_await std::move(adopting);
}

// On a lane: makes `fresh` (just opened) the connection, with its keepalive
// and callbacks.
ANWEDDOL_DECL void hypervisor_connection::adopt_blocking(detail::connect_handle fresh) {
    // Local drivers (test:///) have no keepalive: they cannot be dropped.
    if (options_.keepalive_interval.count() > 0 &&
        virConnectSetKeepAlive(fresh.get(), static_cast<int>(options_.keepalive_interval.count()),
                               options_.keepalive_count) < 0) {
        if (virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
            detail::throw_last_libvirt_error("cannot enable keepalive on " + uri_);
        virResetLastError();
    }
    // The close callback's opaque stays ours (no free function): drivers
    // without close callbacks (test:///, every local one) accept the
    // registration and drop it, so libvirt would never free it. It is freed
    // once unregistered, when the callback can no longer run. Its watch
    // exists before the registration: a close reported at once counts.
    auto watch = callbacks_->liveness.arm();
    auto close = std::make_unique<close_opaque>(close_opaque{callbacks_, watch});
    if (virConnectRegisterCloseCallback(fresh.get(), &on_closed, close.get(), nullptr) < 0) {
        virResetLastError();
        close.reset();
    }
    int lifecycle = -1;
    try {
        if (events_wanted_)
            lifecycle = register_lifecycle(fresh.get());
    } catch (...) {
        if (close)
            virConnectUnregisterCloseCallback(fresh.get(), &on_closed);
        throw;
    }

    detail::connect_handle old;
    int old_lifecycle;
    std::unique_ptr<close_opaque> old_close;
    {
        std::lock_guard lock(mutex_);
        old = std::exchange(connection_, std::move(fresh));
        old_lifecycle = std::exchange(lifecycle_callback_, lifecycle);
        old_close = std::exchange(close_opaque_, std::move(close));
    }
    // Open unless libvirt reported it closed since the registration: then
    // it is reported now, and the next call reopens it.
    if (const auto reason = callbacks_->liveness.opened(std::move(watch)))
        callbacks_->router.publish_close(*reason);
    ++open_count_;
    if (old) { // dropped: its RPCs fail at once, but free libvirt's side of the callbacks
        if (old_lifecycle >= 0)
            virConnectDomainEventDeregisterAny(old.get(), old_lifecycle);
        if (old_close)
            virConnectUnregisterCloseCallback(old.get(), &on_closed);
        virResetLastError();
        old_close.reset();
    }
}

} // namespace anweddol

#include <anweddol/impl/hypervisor_connection_events.ipp>

#endif
