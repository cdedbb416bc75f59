//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_EVENTS_IPP
#define ANWEDDOL_IMPL_HYPERVISOR_CONNECTION_EVENTS_IPP

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <memory>
#include <optional>

// A connection's events: registration with libvirt, its callbacks, and the
// subscriptions that route them. Part of hypervisor_connection.ipp.

namespace anweddol {

// On a worker.
ANWEDDOL_DECL int hypervisor_connection::register_lifecycle(virConnectPtr connection) {
    // libvirt frees the opaque when the callback is deregistered; when the
    // registration fails, it is still ours.
    auto opaque = std::make_unique<callback_opaque>(callbacks_);
    const int id = virConnectDomainEventRegisterAny(
        connection, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(&on_lifecycle), opaque.get(), &free_callback_opaque);
    if (id < 0)
        detail::throw_last_libvirt_error("cannot subscribe to domain events on " + uri_);
    opaque.release();
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
    auto target = static_cast<callback_opaque*>(opaque)->lock();
    if (!target)
        return 0;
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(domain, uuid); // local: no RPC on the loop's thread
    const char* name = virDomainGetName(domain);
    target->router.publish({uuid, name ? name : "", event, detail});
    return 0;
}

ANWEDDOL_DECL void hypervisor_connection::on_closed(virConnectPtr, int reason, void* opaque) {
    auto* close = static_cast<close_opaque*>(opaque);
    if (auto target = close->target.lock())
        if (target->liveness.closed(*close->watch, reason))
            target->router.publish_close(reason);
}

ANWEDDOL_DECL void hypervisor_connection::free_callback_opaque(void* opaque) {
    delete static_cast<callback_opaque*>(opaque);
}

ANWEDDOL_DECL void hypervisor_connection::subscription::reset() noexcept {
    if (!subscriber_)
        return;
    subscriber_->active = false;
    if (auto owner = owner_.lock())
        owner->remove(subscriber_);
    owner_.reset();
    subscriber_.reset();
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::add(std::shared_ptr<detail::domain_event_router::subscriber> s) {
    callbacks_->router.add(s);
    // Aliasing: the subscription keeps the router apart from the connection.
    return {std::shared_ptr<detail::domain_event_router>(callbacks_, &callbacks_->router),
            std::move(s)};
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::subscribe(std::string uuid, boost::asio::any_io_executor executor,
                                 std::function<void(const domain_lifecycle_event&)> handler) {
    auto s = std::make_shared<detail::domain_event_router::subscriber>();
    s->uuid = std::move(uuid);
    s->executor = std::move(executor);
    s->on_event = std::move(handler);
    if (s->uuid.empty())
        detail::throw_error(errc::invalid_argument,
                            "subscribe to a domain by its UUID, or use the overload without one "
                            "for every domain");
    return add(std::move(s));
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::subscribe(boost::asio::any_io_executor executor,
                                 std::function<void(const domain_lifecycle_event&)> handler) {
    auto s = std::make_shared<detail::domain_event_router::subscriber>();
    s->executor = std::move(executor);
    s->on_event = std::move(handler);
    return add(std::move(s));
}

ANWEDDOL_DECL hypervisor_connection::subscription
hypervisor_connection::on_close(boost::asio::any_io_executor executor,
                                std::function<void(int)> handler) {
    auto s = std::make_shared<detail::domain_event_router::subscriber>();
    s->executor = std::move(executor);
    s->on_close = std::move(handler);
    return add(std::move(s));
}

ANWEDDOL_DECL boost::asio::awaitable<domain_lifecycle_event>
hypervisor_connection::wait_here(std::string uuid, int event,
                                 std::chrono::steady_clock::duration timeout) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor, timeout);
    auto seen = std::make_shared<std::optional<domain_lifecycle_event>>();
    auto watching =
        subscribe(uuid, executor, [timer, seen, event](const domain_lifecycle_event& e) {
            if (!*seen && e.event == event) {
                *seen = e;
                timer->cancel();
            }
        });
    auto waiting = timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    auto [ec] = co_await std::move(waiting);
    if (*seen)
        co_return **seen;
    if (ec == boost::asio::error::operation_aborted)
        detail::throw_error(ec, "waiting for an event of domain " + uuid);
    detail::throw_error(boost::asio::error::timed_out, "domain " + uuid +
                                                           " reported no lifecycle event " +
                                                           std::to_string(event) + " in time");
}

} // namespace anweddol

#endif
