//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_SWEEP_IPP
#define ANWEDDOL_IMPL_CONTAINER_SWEEP_IPP

#include <anweddol/container_sweep.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/detail/libvirt/owned_domains.hpp>

namespace anweddol::detail {

ANWEDDOL_DECL boost::asio::awaitable<sweep_result> sweep_here(boost::asio::any_io_executor executor,
                                                              sweep_options options) {
    // Awaitables with captures are built outside their co_await: GCC 12.
    auto opening = hypervisor_connection::open(options.driver_uri);
    auto connection = co_await std::move(opening);
    auto listing = connection->call(
        [owner = options.owner](virConnectPtr c) { return list_owned_domains(c, owner); });
    const owned_domains found = co_await std::move(listing);

    sweep_result result;
    result.left_alone = found.others;
    options.container_options.owner = options.owner;
    for (const std::string& uuid : found.uuids) {
        if (options.action == sweep_action::adopt) {
            auto container =
                std::make_shared<container_instance>(executor, std::string(), uuid, 512, 1);
            container->set_options(options.container_options);
            auto adopting = container->adopt_domain(options.driver_uri);
            try {
                co_await std::move(adopting);
                result.adopted.push_back(std::move(container));
                continue;
            } catch (const boost::system::system_error& e) {
                if (e.code() == errc::domain_not_running)
                    continue; // it stopped since it was listed
                if (e.code() != errc::invalid_argument)
                    throw;
                // Tagged as ours, but nothing a container can stand for: it
                // is destroyed like the rest.
            }
        }
        // Its reservation goes with it, however young.
        auto destroying = connection->call(
            [uuid](virConnectPtr c) { return destroy_domain_and_reservation_blocking(c, uuid); });
        auto outcome = co_await std::move(destroying);
        result.destroyed.push_back(uuid);
        if (outcome.released)
            result.released_addresses.push_back(std::move(outcome.released->ip));
    }
    // Those of domains gone before (their process died first).
    if (!options.driver_uri.starts_with("test:")) {
        auto releasing = connection->call(
            [](virConnectPtr c) { return release_stale_reservations_blocking(c); });
        auto released = co_await std::move(releasing);
        for (auto& reservation : released)
            result.released_addresses.push_back(std::move(reservation.ip));
    }
    co_return result;
}

} // namespace anweddol::detail

#endif
