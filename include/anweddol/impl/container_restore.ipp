//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_RESTORE_IPP
#define ANWEDDOL_IMPL_CONTAINER_RESTORE_IPP

// A container's start from a snapshot slot: the slot's one cold boot to the
// barrier and its save, then the restore. Part of container_instance.ipp.

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/file_sha256.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/detail/libvirt/snapshot_image.hpp>
#include <anweddol/impl/snapshot_slot_state.hpp>

#include <boost/asio/steady_timer.hpp>

namespace anweddol {

namespace container_impl {

// What an image saved for `iso`, `memory`... would be saved from; the ISO
// hashed again only when its size or time changed since `earlier`.
inline detail::slot_image_inputs
describe_slot_inputs(std::string iso, unsigned memory, unsigned vcpus, std::string bridge,
                     std::string domain_type, std::string driver_uri,
                     std::optional<detail::slot_image_inputs> earlier) {
    detail::slot_image_inputs inputs{
        .iso_path = std::filesystem::absolute(iso).lexically_normal().string(),
        .iso_sha256 = {},
        .iso_size = std::filesystem::file_size(iso),
        .iso_modified = std::filesystem::last_write_time(iso),
        .memory = memory,
        .vcpus = vcpus,
        .bridge = std::move(bridge),
        .domain_type = std::move(domain_type),
        .driver_uri = std::move(driver_uri),
        .isolated_port = false, // the caller's: it planned the isolation
        .traffic_filter = {},
        .dhcp_server = {},
        .owner = {},
    };
    if (earlier && earlier->iso_path == inputs.iso_path && earlier->iso_size == inputs.iso_size &&
        earlier->iso_modified == inputs.iso_modified)
        inputs.iso_sha256 = earlier->iso_sha256;
    else
        inputs.iso_sha256 = detail::file_sha256(inputs.iso_path);
    return inputs;
}

inline bool same_slot_inputs(const detail::slot_image_inputs& a,
                             const detail::slot_image_inputs& b) {
    return a.iso_path == b.iso_path && a.iso_sha256 == b.iso_sha256 && a.memory == b.memory &&
           a.vcpus == b.vcpus && a.bridge == b.bridge && a.domain_type == b.domain_type &&
           a.driver_uri == b.driver_uri && a.isolated_port == b.isolated_port &&
           a.traffic_filter == b.traffic_filter && a.dhcp_server == b.dhcp_server &&
           a.owner == b.owner;
}

} // namespace container_impl

ANWEDDOL_DECL boost::asio::awaitable<void>
container_instance::restore_here(std::shared_ptr<hypervisor_connection> connection,
                                 const start_options& opts, std::string domain_type,
                                 std::shared_ptr<void> slot_claim) {
    const auto slot = options_.slot; // kept alive for the whole start
    auto& shared = *slot->state_;
    auto& rt = get_runtime();
    auto describing = detail::run_blocking(
        rt.workers(), &rt.completions(),
        [iso = iso_path_, memory = memory_, vcpus = vcpus_, bridge = nat_interface_name_,
         domain_type, uri = opts.driver_uri, earlier = shared.saved] {
            return container_impl::describe_slot_inputs(iso, memory, vcpus, bridge, domain_type,
                                                        uri, earlier);
        });
    auto inputs = co_await std::move(describing);
    inputs.isolated_port = state_->isolation.ports_isolated;
    inputs.traffic_filter = state_->traffic_filter;
    inputs.dhcp_server = state_->dhcp_server;
    inputs.owner = options_.owner.empty() ? detail::host_name() : options_.owner;
    if (shared.saved && !container_impl::same_slot_inputs(*shared.saved, inputs))
        shared.saved.reset();
    if (shared.saved && shared.reservation) {
        // Kept between containers, where a sweep may have taken it as stale.
        auto keeping = connection->call(
            [bridge = nat_interface_name_, r = *shared.reservation](virConnectPtr c) {
                return detail::keep_reservation_blocking(c, bridge, r);
            });
        if (!co_await std::move(keeping)) {
            // Its address went elsewhere, and the image's filter knows no other.
            shared.saved.reset();
            shared.reservation.reset();
        }
    }
    if (!shared.saved) {
        boot_admission::ticket admitted;
        if (!options_.bypass_admission) {
            boot_admission& admission = options_.admission ? *options_.admission : rt.admission();
            auto admitting = admission.admit(domain_type);
            admitted = co_await std::move(admitting);
        }
        auto saving = save_slot_here(connection, opts, domain_type);
        co_await std::move(saving);
        shared.saved = std::move(inputs);
    }
    auto restoring = boot_here(connection, opts, domain_type, nullptr, std::move(slot_claim));
    co_await std::move(restoring);
}

ANWEDDOL_DECL boost::asio::awaitable<void>
container_instance::save_slot_here(std::shared_ptr<hypervisor_connection> connection,
                                   const start_options& opts, std::string domain_type) {
    auto& shared = *options_.slot->state_;
    const auto& hook = opts.on_progress ? opts.on_progress : options_.on_progress;
    if (hook)
        hook({uuid_, container_phase::creating_domain, std::chrono::steady_clock::now()});
    // The reservation (kept from an earlier save where there is one) and
    // the bridge's STP (sysfs) are both read on the connection's lane: not
    // on the io thread.
    auto reserving = connection->call([bridge = nat_interface_name_, mac = shared.mac,
                                       earlier = shared.reservation](virConnectPtr c) {
        auto reservation = earlier ? earlier : detail::reserve_address_blocking(c, bridge, mac);
        const auto stp = detail::read_local_bridge_stp(bridge);
        return std::pair(std::move(reservation),
                         stp ? detail::stp_cost_note(bridge, *stp) : std::string());
    });
    auto [reservation, network_note] = co_await std::move(reserving);
    if (!shared.reservation)
        shared.connection = connection;
    shared.reservation = std::move(reservation);
    shared.network_note = std::move(network_note);

    const std::string image = shared.image_path().string();
    detail::domain_definition definition{
        .uuid = uuid_,
        .type = domain_type,
        .memory_mib = memory_,
        .vcpus = vcpus_,
        .iso_path = std::filesystem::absolute(iso_path_).lexically_normal().string(),
        .bridge = nat_interface_name_,
        .mac = shared.mac,
        .owner = options_.owner.empty() ? detail::host_name() : options_.owner,
        .isolated_port = state_->isolation.ports_isolated,
        .traffic_filter = state_->traffic_filter,
        .dhcp_server = state_->dhcp_server,
        .reserved_ip = shared.reservation && !state_->traffic_filter.empty()
                           ? shared.reservation->ip
                           : std::string(),
        .snapshot_slot = true,
    };
    auto executor = co_await boost::asio::this_coro::executor;
    // `stopped`: the boot ended (or paused) before the barrier; `saved`: the
    // save stopped the domain. Events before its STARTED are an earlier
    // domain's of the slot (libvirt sends a domain's events in order).
    auto stopped = std::make_shared<detail::stop_signal>(executor);
    auto saved = std::make_shared<detail::stop_signal>(executor);
    auto watching = connection->subscribe(
        uuid_, executor,
        [stopped, saved,
         started = std::make_shared<bool>(false)](const domain_lifecycle_event& event) {
            if (!*started && !(*started = event.event == VIR_DOMAIN_EVENT_STARTED))
                return;
            stopped->on_event(event.event, event.detail, true);
            saved->on_event(event.event, event.detail, false);
        });
    auto console = std::make_shared<detail::console_ring>(64 * 1024);
    // Autodestroy: a process that dies before the save leaves nothing.
    auto creating = connection->call([uri = opts.driver_uri, definition, console](virConnectPtr c) {
        return detail::create_domain_blocking(c, uri, definition, true, console, false, false);
    });
    auto created = co_await std::move(creating);

    std::exception_ptr failure;
    try {
        boost::asio::steady_timer poll(executor);
        const auto deadline = std::chrono::steady_clock::now() + shared.opts.barrier_timeout;
        for (;;) {
            const auto sign = detail::read_barrier_sign(console->text());
            if (sign == detail::barrier_sign::reached)
                break;
            if (sign == detail::barrier_sign::missing)
                detail::throw_error(errc::snapshot_barrier_missing,
                                    "snapshot slot " + uuid_ +
                                        ": its guest made its host keys without stopping at the "
                                        "barrier: ISO " +
                                        iso_path_ + " does not implement it");
            if (stopped->raised())
                detail::throw_error(stopped->code(), "snapshot slot " + uuid_ + "'s guest " +
                                                         stopped->describe() +
                                                         " before it reached the barrier");
            if (std::chrono::steady_clock::now() >= deadline)
                detail::throw_error(errc::snapshot_barrier_missing,
                                    "snapshot slot " + uuid_ +
                                        ": its guest did not reach the "
                                        "barrier within " +
                                        std::to_string(shared.opts.barrier_timeout.count()) +
                                        " s: ISO " + iso_path_ +
                                        " may not implement it (or boots slower)");
            poll.expires_after(std::chrono::milliseconds(50));
            co_await poll.async_wait(boost::asio::use_awaitable);
        }
        auto saving = connection->call([uuid = uuid_, image](virConnectPtr c) {
            detail::save_domain_blocking(c, uuid, image);
        });
        co_await std::move(saving);
        // Its STOPPED event must not be taken for the end of the domain
        // about to be restored with the same UUID.
        // (The save's own pause raised `stopped` already: wait for STOPPED.)
        using namespace boost::asio::experimental::awaitable_operators;
        boost::asio::steady_timer limit(executor, std::chrono::seconds(5));
        auto gone = saved->wait() || limit.async_wait(boost::asio::use_awaitable);
        co_await std::move(gone);
    } catch (...) {
        failure = std::current_exception();
    }
    // The console of a domain that is gone closes at once; the stream is an
    // RPC all the same: on the connection's lane.
    auto closing = connection->call(
        [stream = std::make_shared<detail::console_stream>(std::move(created.console)),
         domain = std::shared_ptr<virDomain>(created.domain.release(), virDomainFree),
         destroy = failure != nullptr](virConnectPtr) {
            if (destroy) {
                virDomainDestroy(domain.get());
                virResetLastError();
            }
            stream->close();
        });
    co_await boost::asio::this_coro::reset_cancellation_state();
    co_await std::move(closing);
    if (failure)
        std::rethrow_exception(detail::with_guest_console(failure, console->text()));
}

} // namespace anweddol

#endif
