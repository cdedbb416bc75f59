//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_START_IPP
#define ANWEDDOL_IMPL_CONTAINER_START_IPP

// A container's start and stop: the two operations with a domain to clean up
// whatever happens. Part of container_instance.ipp.

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/cpu_use_window.hpp>
#include <anweddol/detail/libvirt/network_filter.hpp>
#include <anweddol/detail/libvirt/snapshot_image.hpp>
#include <anweddol/impl/snapshot_slot_state.hpp>

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>

namespace anweddol {

namespace container_impl {

// Gives `place` back once domain `uuid`'s guest has used less than the
// admission's threshold of a core over its window; then, or when libvirt
// cannot say, waits to be cancelled (it runs beside the address wait, in a
// group that ends when that wait does). Touches `place` only while it runs.
inline boost::asio::awaitable<void>
release_when_cpu_light(std::shared_ptr<hypervisor_connection> connection, std::string uuid,
                       boot_admission::ticket& place) {
    auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::steady_timer timer(executor);
    detail::cpu_use_window window(boot_admission::cpu_light_window,
                                  boot_admission::cpu_light_threshold);
    while (place) {
        timer.expires_after(boot_admission::cpu_poll_interval);
        co_await timer.async_wait(boost::asio::use_awaitable);
        auto reading =
            connection->call([uuid](virConnectPtr c) { return detail::domain_cpu_time(c, uuid); });
        std::optional<std::chrono::nanoseconds> used;
        try {
            used = co_await std::move(reading);
        } catch (const boost::system::system_error& e) {
            if (e.code() == boost::asio::error::operation_aborted)
                throw;
        }
        if (!used)
            break; // hold the place until the address is known, as set_limit does
        if (window.light_after(std::chrono::steady_clock::now(), *used))
            place.reset();
    }
    timer.expires_at(boost::asio::steady_timer::time_point::max());
    co_await timer.async_wait(boost::asio::use_awaitable);
}

} // namespace container_impl

ANWEDDOL_DECL boost::asio::awaitable<void> container_instance::start_here(start_options opts) {
    if (is_domain_running())
        detail::throw_error(errc::domain_already_running,
                            "container " + uuid_ + " is already running");
    if (iso_path_.empty())
        detail::throw_error(errc::iso_path_not_set,
                            "container " + uuid_ + " has no ISO file path to boot from");
    std::shared_ptr<void> slot_claim;
    if (options_.slot) {
        if (options_.slot->get_uuid() != uuid_)
            detail::throw_error(errc::invalid_argument,
                                "container " + uuid_ + " is not snapshot slot " +
                                    options_.slot->get_uuid() +
                                    "'s: a restored domain keeps the saved one's UUID, so "
                                    "construct the container with snapshot_slot::get_uuid()");
        if (!detail::is_local_uri(opts.driver_uri))
            detail::throw_error(errc::invalid_argument,
                                "snapshot slots need a local hypervisor (the image is a file of "
                                "its host), not " +
                                    opts.driver_uri);
        state_->slot_claim.reset(); // of this container's own domain, which stopped by itself
        slot_claim = options_.slot->state_->claim(options_.slot->state_);
        if (!slot_claim)
            detail::throw_error(errc::snapshot_slot_busy,
                                "snapshot slot " + uuid_ +
                                    " holds another container's domain: one slot restores one "
                                    "container at a time");
    }
    if (opts.address_timeout && opts.address_timeout->count() < 0)
        detail::throw_error(errc::invalid_argument,
                            "start_options::address_timeout must not be negative: use "
                            "std::nullopt for no limit");
    auto& rt = get_runtime();
    // Every awaitable with captures is built outside its co_await
    // expression: GCC 12 destroys such temporaries twice.
    auto opening = hypervisor_connection::open(opts.driver_uri);
    auto connection = co_await std::move(opening);
    const std::string wanted_type =
        opts.domain_type.empty() ? options_.domain_type : opts.domain_type;
    auto checking = connection->call([uri = opts.driver_uri, uuid = uuid_, iso = iso_path_,
                                      bridge = nat_interface_name_, wanted_type,
                                      isolation = options_.isolation](virConnectPtr c) {
        std::string type = detail::preflight(c, uri, uuid, iso, bridge, wanted_type);
        return std::pair(std::move(type),
                         detail::plan_network_isolation(c, uri, bridge, isolation));
    });
    auto checked = co_await std::move(checking);
    std::string domain_type = std::move(checked.first);
    state_->isolation = std::move(checked.second.applied);
    state_->traffic_filter = std::move(checked.second.filter);
    state_->dhcp_server = std::move(checked.second.dhcp_server);

    // The automatic type is kvm wherever libvirt offers it, but a host may
    // have /dev/kvm and still not run KVM guests: they pause with an
    // emulation failure a few seconds in. The first such boot teaches the
    // runtime, and this start (and every later one) goes on with qemu.
    const bool automatic = wanted_type.empty();
    std::string choice = automatic ? "automatic: " + domain_type + ", the best libvirt offers"
                                   : "chosen by the caller";
    if (automatic && domain_type == "kvm" && rt.kvm_runs(opts.driver_uri) == false) {
        domain_type = "qemu";
        choice = "automatic: qemu (software emulation), since KVM guests pause on this host";
    }

    state_->restored = false;
    if (slot_claim) {
        // A restore costs no boot: only the slot's first one is admitted.
        state_->domain_type_choice = choice;
        auto restoring = restore_here(connection, opts, domain_type, std::move(slot_claim));
        co_await std::move(restoring);
        co_return;
    }

    boot_admission::ticket admitted;
    boot_admission& admission = options_.admission ? *options_.admission : rt.admission();
    if (!options_.bypass_admission) {
        const auto& hook = opts.on_progress ? opts.on_progress : options_.on_progress;
        if (hook)
            hook({uuid_, container_phase::waiting_for_boot_slot, std::chrono::steady_clock::now()});
        auto admitting = admission.admit(domain_type);
        admitted = co_await std::move(admitting);
    }

    state_->domain_type_choice = choice;
    const auto cpu_heavy_place = [&](const std::string& type) {
        return !options_.bypass_admission && admission.releases_when_cpu_light(type) ? &admitted
                                                                                     : nullptr;
    };
    bool kvm_paused = false;
    try {
        auto booting = boot_here(connection, opts, domain_type, cpu_heavy_place(domain_type));
        co_await std::move(booting);
    } catch (const boost::system::system_error& e) {
        kvm_paused = automatic && domain_type == "kvm" && e.code() == errc::domain_paused &&
                     rt.kvm_runs(opts.driver_uri) != true && !is_domain_running();
        if (!kvm_paused)
            throw;
    }
    if (kvm_paused) { // destroyed already: boot again, emulated
        rt.record_kvm_runs(opts.driver_uri, false);
        state_->domain_type_choice =
            "automatic: qemu (software emulation), since a KVM guest paused on this host";
        if (!options_.bypass_admission) {
            // A KVM place is not a software-emulation one: queue again.
            admitted.reset();
            auto admitting = admission.admit("qemu");
            admitted = co_await std::move(admitting);
        }
        auto booting = boot_here(connection, opts, "qemu", cpu_heavy_place("qemu"));
        co_await std::move(booting);
    }
}

ANWEDDOL_DECL boost::asio::awaitable<void>
container_instance::boot_here(std::shared_ptr<hypervisor_connection> connection,
                              const start_options& opts, std::string domain_type,
                              boot_admission::ticket* cpu_heavy_place,
                              std::shared_ptr<void> slot_claim) {
    // With a claim, the domain comes from the slot's image: its MAC, and
    // its reserved address, are the slot's.
    const snapshot_slot::state* slot = slot_claim ? options_.slot->state_.get() : nullptr;
    const auto report = [&](container_phase phase) {
        const auto& hook = opts.on_progress ? opts.on_progress : options_.on_progress;
        if (hook)
            hook({uuid_, phase, std::chrono::steady_clock::now()});
    };
    auto& rt = get_runtime();
    detail::domain_definition definition{
        .uuid = uuid_,
        .type = domain_type,
        .memory_mib = memory_,
        .vcpus = vcpus_,
        // libvirtd resolves a relative path against its own directory.
        .iso_path = std::filesystem::absolute(iso_path_).lexically_normal().string(),
        .bridge = nat_interface_name_,
        .mac = slot ? slot->mac : detail::random_mac(),
        .owner = options_.owner.empty() ? detail::host_name() : options_.owner,
        .isolated_port = state_->isolation.ports_isolated,
        .traffic_filter = state_->traffic_filter,
        .dhcp_server = state_->dhcp_server,
        .reserved_ip = {}, // what the reservation, made with the domain, gives
    };

    // Watch from before the domain exists: a guest that dies (or pauses) at
    // once must not leave the address wait waiting for nothing.
    auto executor = co_await boost::asio::this_coro::executor;
    auto stopped = std::make_shared<detail::stop_signal>(executor);
    // A restored domain has the UUID of the slot's earlier ones, whose last
    // events (a destroy's STOPPED) may still be on their way: libvirt sends
    // a domain's events in order, so this one's begin with its STARTED.
    auto started = std::make_shared<bool>(slot == nullptr);
    auto watching_stop = connection->subscribe(
        uuid_, executor, [stopped, started](const domain_lifecycle_event& event) {
            if (*started || (*started = event.event == VIR_DOMAIN_EVENT_STARTED))
                stopped->on_event(event.event, event.detail, true);
        });
    auto st = state_;
    release_reservation_in_background(); // of a domain that stopped by itself
    watch_lifecycle(connection, slot != nullptr);
    st->console = options_.console_log_bytes > 0
                      ? std::make_shared<detail::console_ring>(options_.console_log_bytes)
                      : nullptr;

    report(container_phase::creating_domain);
    // Without the address wait, nothing checks that the guest got the
    // reserved address before it is used: its filter learns it instead.
    auto creating =
        connection->call([uri = opts.driver_uri, definition, autodestroy = options_.autodestroy,
                          console = st->console, reserve = options_.reserve_address,
                          give = opts.wait_available](virConnectPtr c) {
            return detail::create_domain_blocking(c, uri, definition, autodestroy, console, reserve,
                                                  give);
        });
    // The slot's MAC keeps the lease of its last container until that
    // expires: only a later one is this domain's.
    std::int64_t earlier_lease_expiry = 0;
    auto restoring =
        connection->call([image = slot ? slot->image_path().string() : std::string(), uuid = uuid_,
                          console = st->console, bridge = nat_interface_name_, mac = definition.mac,
                          &earlier_lease_expiry](virConnectPtr c) {
            earlier_lease_expiry = detail::last_lease_expiry(c, bridge, mac);
            return detail::restore_domain_blocking(c, image, uuid, console);
        });
    try {
        if (slot) {
            auto restored = co_await std::move(restoring);
            st->domain = std::move(restored.domain);
            st->console_stream = std::move(restored.console);
            st->slot_claim = std::move(slot_claim);
            st->restored = true;
        } else {
            auto created = co_await std::move(creating);
            st->domain = std::move(created.domain);
            st->console_stream = std::move(created.console);
            st->reservation = std::move(created.reservation);
        }
    } catch (...) {
        st->watching.reset();
        throw; // nothing was created
    }
    st->running = true;
    st->mac = definition.mac;
    st->connection = connection;
    st->domain_type = domain_type;

    // From here on, any failure destroys the domain before it propagates.
    std::exception_ptr failure;
    try {
        if (opts.wait_available) {
            report(container_phase::waiting_for_address);
            detail::address_wait_settings settings{
                .mac = definition.mac,
                .status_file = detail::has_local_status_file(opts.driver_uri)
                                   ? options_.lease_directory / (nat_interface_name_ + ".status")
                                   : std::filesystem::path(),
                .poll_interval = options_.address_poll_interval,
                .budget = opts.address_timeout,
                .workers = rt.workers(),
                .completions = &rt.completions(),
                .ask_libvirt = [connection, uuid = uuid_, mac = definition.mac,
                                bridge = nat_interface_name_, after = earlier_lease_expiry,
                                restored = slot != nullptr]()
                    -> boost::asio::awaitable<std::optional<std::string>> {
                    // The network's leases first: what dnsmasq granted, even
                    // where the domain's own view (its interfaces' lease
                    // source, or a guest agent) is not available. That view
                    // cannot tell a restored domain's lease from the one its
                    // MAC had before.
                    auto asking =
                        connection->call([uuid, mac, bridge, after, restored](virConnectPtr c) {
                            if (auto ip = detail::network_lease_address(c, bridge, mac, after))
                                return ip;
                            return restored ? std::nullopt
                                            : detail::interface_address(c, uuid, mac);
                        });
                    co_return co_await std::move(asking);
                },
                .lease_expiring_after = earlier_lease_expiry,
            };
            auto waiting = detail::wait_for_address(std::move(settings), stopped);
            if (cpu_heavy_place && *cpu_heavy_place) {
                // Both in one group that ends when the address wait does (the
                // watcher only ever ends by cancellation), and that forwards
                // a cancellation of this start to both.
                namespace experimental = boost::asio::experimental;
                auto watching =
                    container_impl::release_when_cpu_light(connection, uuid_, *cpu_heavy_place);
                auto group = experimental::make_parallel_group(
                    boost::asio::co_spawn(executor, std::move(waiting), boost::asio::deferred),
                    boost::asio::co_spawn(executor, std::move(watching), boost::asio::deferred));
                auto both =
                    group.async_wait(experimental::wait_for_one(), boost::asio::use_awaitable);
                auto [order, address_failure, address, watch_failure] = co_await std::move(both);
                (void)order;
                (void)watch_failure;
                if (address_failure)
                    std::rethrow_exception(address_failure);
                st->ip = std::move(address);
            } else {
                st->ip = co_await std::move(waiting);
            }
            // Its filter lets only the reserved address through: any other
            // would leave it unreachable until a timeout says nothing useful.
            const auto& reserved = slot ? slot->reservation : st->reservation;
            if (reserved && !definition.traffic_filter.empty() && st->ip != reserved->ip)
                detail::throw_error(errc::reserved_address_not_leased,
                                    "container " + uuid_ + " was leased " + st->ip.value_or("") +
                                        ", not " + reserved->ip +
                                        ", the address reserved for it on network " +
                                        reserved->network);
            if (domain_type == "kvm")
                rt.record_kvm_runs(opts.driver_uri, true);
            report(container_phase::address_known);
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        // A cancelled coroutine would throw at the next co_await: clear it, and
        // let nothing cancel the cleanup itself.
        co_await boost::asio::this_coro::reset_cancellation_state();
        try {
            auto destroying = container_impl::destroy_domain(
                rt, connection, uuid_, detail::retain_domain(st->domain.get()));
            co_await std::move(destroying);
            forget_domain();
        } catch (...) {
            // Still there: keep it, so that stop_domain() or the destructor
            // tries again. The error that matters is the first one.
        }
        std::rethrow_exception(detail::with_guest_console(failure, get_console_log()));
    }
}

ANWEDDOL_DECL boost::asio::awaitable<void> container_instance::destroy_here() {
    auto destroying = container_impl::destroy_domain(get_runtime(), state_->connection, uuid_,
                                                     detail::retain_domain(state_->domain.get()));
    co_await std::move(destroying);
    forget_domain();
}

ANWEDDOL_DECL boost::asio::awaitable<void> container_instance::stop_here(stop_options opts) {
    if (!is_domain_running())
        detail::throw_error(errc::domain_not_running,
                            "container " + uuid_ + " has no running domain to stop");
    if (opts.mode == stop_mode::destroy) {
        co_await destroy_here();
        co_return;
    }
    auto st = state_;
    auto connection = st->connection;
    std::exception_ptr failure;
    if (connection) {
        auto executor = co_await boost::asio::this_coro::executor;
        auto stopped = std::make_shared<detail::stop_signal>(executor);
        auto watching_stop =
            connection->subscribe(uuid_, executor, [stopped](const domain_lifecycle_event& event) {
                stopped->on_event(event.event, event.detail, false);
            });
        try {
            auto asking = connection->call(
                [uuid = uuid_](virConnectPtr c) { detail::shutdown_domain_blocking(c, uuid); });
            co_await std::move(asking);
            auto waiting = detail::wait_until_stopped(
                stopped, connection->lifecycle_events(),
                [connection, uuid = uuid_]() -> boost::asio::awaitable<bool> {
                    auto polling = connection->call([uuid](virConnectPtr c) {
                        return detail::domain_active_blocking(c, uuid);
                    });
                    co_return co_await std::move(polling);
                },
                opts.shutdown_timeout);
            co_await std::move(waiting);
        } catch (...) {
            failure = std::current_exception();
        }
    }
    // Stopped, or timed out, failed or cancelled (or adopted, with no
    // connection to ask through): destroy what is left.
    co_await boost::asio::this_coro::reset_cancellation_state();
    co_await destroy_here();
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const boost::system::system_error& e) {
            if (e.code() != boost::asio::error::timed_out)
                throw; // timing out is what the destroy above is for
        }
    }
}

} // namespace anweddol

#endif
