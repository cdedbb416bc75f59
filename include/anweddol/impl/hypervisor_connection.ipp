//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_IPP
#define ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_IPP

#include <anweddol/detail/libvirt_call.hpp>
#include <anweddol/detail/libvirt_event_loop.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <optional>

namespace anweddol {

namespace connection_impl {

ANWEDDOL_DECL std::mutex registry_mutex;
// One connection per URI; weak, so that a connection nobody uses closes.
ANWEDDOL_DECL std::map<std::string, std::weak_ptr<hypervisor_connection>> registry;

struct semaphore_release {
    detail::async_semaphore& semaphore;
    ~semaphore_release() { semaphore.release(); }
};

} // namespace connection_impl

ANWEDDOL_DECL hypervisor_connection::hypervisor_connection(std::string uri, options opts)
    : uri_(std::move(uri))
    , options_(opts)
    , lanes_(std::make_shared<boost::asio::thread_pool>(
          opts.max_calls_in_flight == 0 ? 1 : opts.max_calls_in_flight))
    , events_wanted_(opts.lifecycle_events) {}

ANWEDDOL_DECL hypervisor_connection::~hypervisor_connection() {
    // The lanes may be running the call that dropped the last reference:
    // they finish on a thread of their own.
    boost::asio::post(detail::blocking_pool(), [lanes = std::move(lanes_)] { lanes->join(); });
    // Deregister on a worker: virConnectDomainEventDeregisterAny is an RPC.
    std::lock_guard lock(mutex_);
    if (connection_)
        boost::asio::post(detail::blocking_pool(),
                          [connection = std::move(connection_), id = lifecycle_callback_] {
                              if (id >= 0)
                                  virConnectDomainEventDeregisterAny(connection.get(), id);
                              virConnectUnregisterCloseCallback(connection.get(), &on_closed);
                          });
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<hypervisor_connection>>
hypervisor_connection::open(std::string uri, options opts) {
    detail::libvirt_event_loop::install(co_await boost::asio::this_coro::executor);
    std::shared_ptr<hypervisor_connection> connection = shared_for(uri, opts);
    co_await reopen(connection); // no-op when open
    if (opts.lifecycle_events && !connection->events_wanted_.load()) {
        // Shared with an opener that did not want events: subscribe now, and
        // say so only once it worked (a failure leaves the next opener to
        // try again). Built outside the co_await expression: GCC 12.
        auto registering = connection->call(
            [self = connection.get()](virConnectPtr c) { self->register_lifecycle_blocking(c); });
        co_await std::move(registering);
        connection->events_wanted_ = true;
    }
    co_return connection;
}

ANWEDDOL_DECL std::shared_ptr<hypervisor_connection>
hypervisor_connection::shared_for(const std::string& uri, options opts) {
    std::lock_guard lock(connection_impl::registry_mutex);
    auto& slot = connection_impl::registry[uri];
    std::shared_ptr<hypervisor_connection> connection = slot.lock();
    if (!connection) {
        connection.reset(new hypervisor_connection(uri, opts));
        slot = connection;
    }
    return connection;
}

template <class Work>
boost::asio::awaitable<detail::blocking_result_t<std::invoke_result_t<Work&, virConnectPtr>>>
hypervisor_connection::call(Work work) {
    if (!is_open())
        co_await reopen(shared_from_this());
    // Built outside the co_await expression: GCC 12 destroys temporaries
    // with captures inside one twice.
    auto running = detail::async_run_blocking_on(
        lanes_->get_executor(),
        [self = shared_from_this(), connection = current(), work = std::move(work)]() mutable {
            const std::size_t now = ++self->in_flight_;
            std::size_t peak = self->peak_in_flight_.load();
            while (now > peak && !self->peak_in_flight_.compare_exchange_weak(peak, now)) {
            }
            struct leave {
                std::atomic<std::size_t>& count;
                ~leave() { --count; }
            } leaving{self->in_flight_};
            return work(connection.get());
        },
        boost::asio::use_awaitable);
    co_return co_await std::move(running);
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
    co_await self->reopen_lock_.async_acquire(boost::asio::use_awaitable);
    connection_impl::semaphore_release release{self->reopen_lock_};
    if (self->is_open())
        co_return; // another caller reopened it meanwhile
    // Built outside the co_await expression: GCC 12 destroys temporaries
    // with captures inside one twice.
    auto reopening =
        detail::async_run_blocking([self] { self->reopen_blocking(); }, boost::asio::use_awaitable);
    co_await std::move(reopening);
}

// On a worker.
ANWEDDOL_DECL void hypervisor_connection::reopen_blocking() {
    detail::connect_handle fresh(virConnectOpen(uri_.c_str()));
    if (!fresh)
        detail::throw_last_libvirt_error("cannot connect to " + uri_);
    // Local drivers (test:///) have no keepalive: they cannot be dropped.
    if (options_.keepalive_interval_seconds > 0 &&
        virConnectSetKeepAlive(fresh.get(), options_.keepalive_interval_seconds,
                               options_.keepalive_count) < 0) {
        if (virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
            detail::throw_last_libvirt_error("cannot enable keepalive on " + uri_);
        virResetLastError();
    }
    // Local drivers cannot lose their connection and do not support this;
    // libvirt then does not take the opaque, so it is ours to free.
    auto* close_opaque = new std::weak_ptr<hypervisor_connection>(weak_from_this());
    if (virConnectRegisterCloseCallback(fresh.get(), &on_closed, close_opaque, &free_weak_self) <
        0) {
        free_weak_self(close_opaque);
        virResetLastError();
    }
    const int lifecycle = events_wanted_ ? register_lifecycle(fresh.get()) : -1;

    detail::connect_handle old;
    int old_lifecycle;
    {
        std::lock_guard lock(mutex_);
        old = std::exchange(connection_, std::move(fresh));
        old_lifecycle = std::exchange(lifecycle_callback_, lifecycle);
    }
    open_ = true;
    ++open_count_;
    if (old) { // dropped: its RPCs fail at once, but free libvirt's side of the callbacks
        if (old_lifecycle >= 0)
            virConnectDomainEventDeregisterAny(old.get(), old_lifecycle);
        virConnectUnregisterCloseCallback(old.get(), &on_closed);
        virResetLastError();
    }
}

// On a worker.
ANWEDDOL_DECL int hypervisor_connection::register_lifecycle(virConnectPtr connection) {
    const int id = virConnectDomainEventRegisterAny(
        connection, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(&on_lifecycle),
        new std::weak_ptr<hypervisor_connection>(weak_from_this()), &free_weak_self);
    if (id < 0)
        detail::throw_last_libvirt_error("cannot subscribe to domain events on " + uri_);
    return id;
}

// On a worker, for a connection opened without events.
ANWEDDOL_DECL void hypervisor_connection::register_lifecycle_blocking(virConnectPtr connection) {
    const int id = register_lifecycle(connection);
    std::lock_guard lock(mutex_);
    if (connection_.get() == connection && lifecycle_callback_ < 0)
        lifecycle_callback_ = id;
    else // reopened meanwhile, with events
        virConnectDomainEventDeregisterAny(connection, id);
}

ANWEDDOL_DECL int hypervisor_connection::on_lifecycle(virConnectPtr, virDomainPtr domain, int event,
                                               int detail, void* opaque) {
    auto self = static_cast<std::weak_ptr<hypervisor_connection>*>(opaque)->lock();
    if (!self)
        return 0;
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(domain, uuid); // local: no RPC on the loop's thread
    const char* name = virDomainGetName(domain);
    self->publish({uuid, name ? name : "", event, detail});
    return 0;
}

ANWEDDOL_DECL void hypervisor_connection::on_closed(virConnectPtr, int reason, void* opaque) {
    if (auto self = static_cast<std::weak_ptr<hypervisor_connection>*>(opaque)->lock()) {
        self->open_ = false;
        self->publish_close(reason);
    }
}

ANWEDDOL_DECL void hypervisor_connection::free_weak_self(void* opaque) {
    delete static_cast<std::weak_ptr<hypervisor_connection>*>(opaque);
}

ANWEDDOL_DECL int hypervisor_connection::add_subscriber(subscriber s) {
    std::lock_guard lock(mutex_);
    const int id = next_subscriber_++;
    subscribers_.emplace(id, std::move(s));
    return id;
}

ANWEDDOL_DECL void hypervisor_connection::remove_subscriber(int id) {
    std::lock_guard lock(mutex_);
    subscribers_.erase(id);
}

ANWEDDOL_DECL void hypervisor_connection::publish(const domain_lifecycle_event& event) {
    std::lock_guard lock(mutex_);
    for (const auto& [id, s] : subscribers_)
        if (s.on_event)
            boost::asio::post(s.executor, [handler = s.on_event, event] { handler(event); });
}

ANWEDDOL_DECL void hypervisor_connection::publish_close(int reason) {
    std::lock_guard lock(mutex_);
    for (const auto& [id, s] : subscribers_)
        if (s.on_close)
            boost::asio::post(s.executor, [handler = s.on_close, reason] { handler(reason); });
}

ANWEDDOL_DECL void hypervisor_connection::subscription::reset() {
    if (auto owner = owner_.lock())
        owner->remove_subscriber(id_);
    owner_.reset();
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::subscribe(boost::asio::any_io_executor executor,
                                 std::function<void(const domain_lifecycle_event&)> handler) {
    return {weak_from_this(), add_subscriber({std::move(executor), std::move(handler), {}})};
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::on_close(boost::asio::any_io_executor executor,
                                std::function<void(int)> handler) {
    return {weak_from_this(), add_subscriber({std::move(executor), {}, std::move(handler)})};
}

ANWEDDOL_DECL boost::asio::awaitable<domain_lifecycle_event>
hypervisor_connection::wait_for_event(std::string uuid, int event,
                                      std::chrono::steady_clock::duration timeout) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor, timeout);
    auto seen = std::make_shared<std::optional<domain_lifecycle_event>>();
    auto watching =
        subscribe(executor, [timer, seen, uuid, event](const domain_lifecycle_event& e) {
            if (!*seen && e.uuid == uuid && e.event == event) {
                *seen = e;
                timer->cancel();
            }
        });
    auto [ec] = co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (*seen)
        co_return **seen;
    if (ec == boost::asio::error::operation_aborted)
        throw boost::system::system_error(ec, "waiting for an event of domain " + uuid);
    throw boost::system::system_error(boost::asio::error::timed_out,
                                      "domain " + uuid + " reported no lifecycle event " +
                                          std::to_string(event) + " in time");
}

} // namespace anweddol

#endif
