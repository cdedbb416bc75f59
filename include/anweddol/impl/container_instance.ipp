//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_INSTANCE_IPP
#define ANWEDDOL_IMPL_CONTAINER_INSTANCE_IPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/console_announcement.hpp>
#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/file_sha256.hpp>
#include <anweddol/detail/libvirt/address_wait.hpp>
#include <anweddol/detail/libvirt/container_checks.hpp>
#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/stop_signal.hpp>
#include <anweddol/endpoint_shell_instance.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>

namespace anweddol {

namespace container_impl {

// Whether libvirtd dropped `connection` (it restarted, or a keepalive timed
// out) under a call that just failed: such a call fails with libvirt's
// internal error ("client socket is closed", or "An error occurred, but the
// cause is unknown" for a call caught in flight), and the connection
// reopens at the next call once libvirt has reported it closed, which this
// waits for (briefly).
inline boost::asio::awaitable<bool>
connection_dropped(std::shared_ptr<hypervisor_connection> connection) {
    if (!connection->is_open())
        co_return true;
    auto asking = connection->call([](virConnectPtr c) { return virConnectIsAlive(c) == 1; });
    if (co_await std::move(asking))
        co_return false; // the failure was the call's own
    auto executor = co_await boost::asio::this_coro::executor;
    auto reported = std::make_shared<boost::asio::steady_timer>(executor, std::chrono::seconds(5));
    auto watching = connection->on_close(executor, [reported](int) { reported->cancel(); });
    if (connection->is_open()) {
        auto waiting = reported->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        co_await std::move(waiting);
    }
    co_return !connection->is_open();
}

// Destroys the domain on the connection's lanes (on a worker, through the
// handle, for an adopted domain without one). Uncancellable: a half-done
// cleanup would leave the domain behind.
inline boost::asio::awaitable<void>
destroy_domain(anweddol::runtime& rt, std::shared_ptr<hypervisor_connection> connection,
               std::string uuid, detail::domain_handle fallback) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto destroying = [&]() -> boost::asio::awaitable<void> {
        if (connection) {
            // The domain's STOPPED event follows the destroy. Waiting for it
            // (briefly) keeps a start with the same UUID right after from
            // taking it for the end of its own domain.
            auto gone = std::make_shared<detail::stop_signal>(executor);
            hypervisor_connection::subscription watching;
            if (connection->lifecycle_events())
                watching = connection->subscribe(
                    uuid, executor, [gone](const domain_lifecycle_event& event) {
                        gone->on_event(event.event, event.detail, false);
                    });
            const auto destroy = [uuid](virConnectPtr c) {
                return detail::destroy_domain_blocking(c, uuid, nullptr);
            };
            bool destroyed = false;
            std::exception_ptr failure;
            try {
                auto calling = connection->call(destroy);
                destroyed = co_await std::move(calling);
            } catch (...) {
                failure = std::current_exception();
            }
            if (failure) {
                // A connection that libvirtd dropped is reopened for a second
                // try: the domain may still run (without autodestroy).
                auto checking = connection_dropped(connection);
                if (!co_await std::move(checking))
                    std::rethrow_exception(failure);
                auto calling = connection->call(destroy);
                destroyed = co_await std::move(calling);
            }
            if (destroyed && connection->lifecycle_events()) {
                using namespace boost::asio::experimental::awaitable_operators;
                boost::asio::steady_timer limit(executor, std::chrono::seconds(5));
                co_await (gone->wait() || limit.async_wait(boost::asio::use_awaitable));
            }
        } else {
            auto running = detail::run_blocking(
                rt.workers(), &rt.completions(), [uuid, fallback = std::move(fallback)] {
                    detail::destroy_domain_blocking(nullptr, uuid, fallback.get());
                });
            co_await std::move(running);
        }
    };
    // Built outside the co_await expression, as every awaitable with
    // captures here: GCC 12 destroys such temporaries twice.
    auto unstoppable =
        boost::asio::co_spawn(executor, destroying(),
                              boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(),
                                                                  boost::asio::use_awaitable));
    co_await std::move(unstoppable);
}

} // namespace container_impl

ANWEDDOL_DECL container_instance::container_instance(boost::asio::any_io_executor ex,
                                                     std::string iso_path,
                                                     std::string container_uuid, unsigned memory,
                                                     unsigned vcpus, std::string nat_interface_name)
    : executor_(std::move(ex))
    , iso_path_(std::move(iso_path))
    , uuid_(detail::normalized_uuid(std::move(container_uuid)))
    , memory_(memory)
    , vcpus_(vcpus)
    , nat_interface_name_(std::move(nat_interface_name)) {
    detail::check_memory(memory_);
    detail::check_vcpus(vcpus_);
    detail::check_interface_name(nat_interface_name_);
}

ANWEDDOL_DECL container_instance::~container_instance() {
    destroy_in_background();
    release_reservation_in_background(); // of a domain that stopped by itself
}

ANWEDDOL_DECL anweddol::runtime& container_instance::get_runtime() const {
    return anweddol::runtime::of(executor_);
}

ANWEDDOL_DECL bool container_instance::is_domain_running() const noexcept {
    return state_->running && state_->domain;
}

ANWEDDOL_DECL virDomainPtr container_instance::get_domain_descriptor() const noexcept {
    return state_->domain.get();
}

ANWEDDOL_DECL std::optional<std::string> container_instance::get_mac() const {
    if (!state_->domain)
        detail::throw_error(errc::domain_not_created,
                            "container " + uuid_ + " has no domain: start it first");
    return state_->mac;
}

ANWEDDOL_DECL std::optional<std::string> container_instance::get_ip() const {
    if (!state_->domain)
        detail::throw_error(errc::domain_not_created,
                            "container " + uuid_ + " has no domain: start it first");
    return state_->ip;
}

ANWEDDOL_DECL std::optional<std::string> container_instance::get_reserved_address() const {
    if (!state_->reservation)
        return std::nullopt;
    return state_->reservation->ip;
}

ANWEDDOL_DECL std::string container_instance::get_console_log() const {
    return state_->console ? state_->console->text() : std::string();
}

ANWEDDOL_DECL void container_instance::set_domain_descriptor(virDomainPtr domain) {
    // A domain forgotten while it runs keeps the address reserved for it;
    // one that stopped gives it back (forget_domain()).
    if (is_domain_running())
        state_->reservation.reset();
    forget_domain();
    state_->domain = detail::retain_domain(domain);
    state_->running = domain != nullptr;
}

ANWEDDOL_DECL void container_instance::set_memory(unsigned memory) {
    detail::check_memory(memory);
    memory_ = memory;
}

ANWEDDOL_DECL void container_instance::set_vcpus(unsigned vcpus) {
    detail::check_vcpus(vcpus);
    vcpus_ = vcpus;
}

ANWEDDOL_DECL void container_instance::set_nat_interface_name(std::string nat_interface_name) {
    detail::check_interface_name(nat_interface_name);
    nat_interface_name_ = std::move(nat_interface_name);
}

ANWEDDOL_DECL void
container_instance::watch_lifecycle(const std::shared_ptr<hypervisor_connection>& connection,
                                    bool from_start) {
    state_->watching = connection->subscribe(
        uuid_, executor_,
        [weak = std::weak_ptr<domain_state>(state_),
         started = std::make_shared<bool>(!from_start)](const domain_lifecycle_event& e) {
            // With `from_start`, events before the domain's STARTED are an
            // earlier domain's with the same UUID.
            if (!*started && !(*started = e.event == VIR_DOMAIN_EVENT_STARTED))
                return;
            if (e.event != VIR_DOMAIN_EVENT_STOPPED)
                return;
            if (auto alive = weak.lock()) {
                alive->running = false;
                alive->ip.reset();
            }
        });
}

ANWEDDOL_DECL void container_instance::release_reservation_in_background() noexcept {
    auto& st = *state_;
    if (!st.reservation)
        return;
    auto reservation = std::move(*st.reservation);
    st.reservation.reset();
    try {
        get_runtime().run_detached([connection = st.connection,
                                    reservation = std::move(reservation)]() noexcept {
            try {
                if (connection)
                    detail::release_reservation_blocking(connection->current().get(), reservation);
            } catch (...) {
                // libvirtd is gone, or refuses: the next sweep removes it.
            }
        });
    } catch (...) {
        // Out of memory: the next sweep removes it.
    }
}

ANWEDDOL_DECL void container_instance::forget_domain() {
    auto& st = *state_;
    release_reservation_in_background();
    st.slot_claim.reset(); // the slot may restore another container now
    st.watching.reset();
    st.domain.reset();
    st.running = false;
    st.mac.reset();
    st.ip.reset();
    if (st.console_stream) {
        // Closing the console is an RPC: not on the io thread.
        get_runtime().run_detached(
            [console = std::move(st.console_stream)]() mutable noexcept { console.close(); });
    }
    st.connection.reset(); // the connection closes when nothing else holds it
}

ANWEDDOL_DECL void container_instance::destroy_in_background() noexcept {
    if (!state_->running || !state_->domain)
        return;
    // The address goes in the same job, once the domain is gone: its filter
    // lets the guest use it for as long as it runs.
    auto reservation = std::exchange(state_->reservation, std::nullopt);
    // So does the hold on a snapshot slot: its next restore needs the
    // domain's UUID free.
    auto slot_claim = std::exchange(state_->slot_claim, nullptr);
    const auto destroy = [](virConnectPtr current, const std::string& uuid, virDomainPtr domain,
                            const std::optional<detail::dhcp_reservation>& reservation) noexcept {
        try {
            detail::destroy_domain_blocking(current, uuid, domain);
            if (reservation && current)
                detail::release_reservation_quietly(current, *reservation);
        } catch (...) {
            // Nobody is left to tell: libvirtd is gone, and its domains with it
            // (or the domain still runs, and keeps its address for a sweep).
        }
    };
    try {
        auto& rt = get_runtime();
        auto connection = state_->connection;
        rt.run_detached(
            [connection = std::move(connection), uuid = uuid_, reservation, destroy, slot_claim,
             domain = std::shared_ptr<virDomain>(
                 detail::retain_domain(state_->domain.get()).release(), virDomainFree)]() noexcept {
                try {
                    const auto current =
                        connection ? connection->current() : detail::connect_handle();
                    destroy(current.get(), uuid, domain.get(), reservation);
                } catch (...) {
                    // No connection: libvirtd is gone.
                }
            });
    } catch (...) {
        // Out of memory before the work was handed over: block rather than
        // leak the VM.
        try {
            const auto current =
                state_->connection ? state_->connection->current() : detail::connect_handle();
            destroy(current.get(), uuid_, state_->domain.get(), reservation);
        } catch (...) {
        }
    }
    forget_domain();
}

ANWEDDOL_DECL boost::asio::awaitable<std::string> container_instance::checksum_here() {
    if (iso_path_.empty())
        detail::throw_error(errc::iso_path_not_set,
                            "container " + uuid_ + " has no ISO file path to hash");
    auto& rt = get_runtime();
    auto hashing = detail::run_blocking(rt.workers(), &rt.completions(),
                                        [path = iso_path_] { return detail::file_sha256(path); });
    co_return co_await std::move(hashing);
}

ANWEDDOL_DECL boost::asio::awaitable<void>
container_instance::start_positional(bool wait_available, int wait_max_tryout,
                                     std::string driver_uri) {
    if (wait_max_tryout < -1)
        detail::throw_error(errc::invalid_argument,
                            "wait_max_tryout must be -1 (no limit) or a number of seconds, not " +
                                std::to_string(wait_max_tryout));
    start_options opts;
    opts.wait_available = wait_available;
    if (wait_max_tryout >= 0)
        opts.address_timeout = std::chrono::seconds(wait_max_tryout);
    else
        opts.address_timeout.reset();
    opts.driver_uri = std::move(driver_uri);
    auto starting = start_here(std::move(opts));
    co_await std::move(starting);
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<endpoint_shell_instance>>
container_instance::shell_here(std::string user, std::string password, std::uint16_t port,
                               bool open_shell) {
    if (!is_domain_running() || !state_->ip)
        detail::throw_error(errc::domain_not_running,
                            "container " + uuid_ +
                                " has no address yet: start it with wait_available first");
    auto shell = std::make_shared<endpoint_shell_instance>(executor_, *state_->ip, std::move(user),
                                                           std::move(password), port);
    if (open_shell) {
        auto opening = shell->open_shell();
        co_await std::move(opening);
    }
    co_return shell;
}

ANWEDDOL_DECL std::shared_ptr<detail::console_ring>
detail::console_access::ring(const container_instance& container) {
    return container.state_->console;
}

ANWEDDOL_DECL void detail::console_access::attach(container_instance& container,
                                                  std::shared_ptr<console_ring> ring) {
    container.state_->console = std::move(ring);
}

ANWEDDOL_DECL boost::asio::awaitable<detail::console_announcement>
detail::await_console_announcement(const container_instance& container,
                                   std::chrono::steady_clock::duration limit,
                                   bool wait_for_host_keys) {
    return await_console_announcement(console_access::ring(container), limit, wait_for_host_keys);
}

} // namespace anweddol

#include <anweddol/impl/container_adopt.ipp>
#include <anweddol/impl/container_restore.ipp>
#include <anweddol/impl/container_start.ipp>

#endif
