// Which domains a libvirt driver has, by UUID, for the tests that check that
// nothing was left behind.
#ifndef ANWEDDOL_TESTS_UNIT_LIBVIRT_DOMAINS_HPP
#define ANWEDDOL_TESTS_UNIT_LIBVIRT_DOMAINS_HPP

#include "test_context.hpp"

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <libvirt/libvirt.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace anweddol::test {

/// The UUIDs of the domains libvirt at `uri` runs, or, with `running_only`
/// false, of every domain it knows.
inline std::set<std::string> domain_uuids(std::string uri, bool running_only = true) {
    const unsigned flags = running_only ? VIR_CONNECT_LIST_DOMAINS_ACTIVE : 0;
    return run_coroutine(
        [](std::string uri, unsigned flags) -> boost::asio::awaitable<std::set<std::string>> {
            auto connection = co_await hypervisor_connection::open(uri);
            // Built outside the co_await: GCC 12 destroys a capturing temporary
            // there twice.
            auto listing = connection->call([flags](virConnectPtr c) {
                virDomainPtr* domains = nullptr;
                const int count = virConnectListAllDomains(c, &domains, flags);
                if (count < 0)
                    detail::throw_last_libvirt_error("listing domains");
                std::set<std::string> uuids;
                for (int i = 0; i < count; ++i) {
                    char uuid[VIR_UUID_STRING_BUFLEN] = {};
                    virDomainGetUUIDString(domains[i], uuid);
                    uuids.insert(uuid);
                    virDomainFree(domains[i]);
                }
                std::free(domains);
                return uuids;
            });
            co_return co_await std::move(listing);
        }(std::move(uri), flags));
}

/// The DHCP <host> entries of the active network on `bridge` at `uri`.
inline std::vector<detail::dhcp_host> dhcp_host_entries(std::string uri,
                                                        std::string bridge = "virbr0") {
    return run_coroutine(
        [](std::string uri,
           std::string bridge) -> boost::asio::awaitable<std::vector<detail::dhcp_host>> {
            auto connection = co_await hypervisor_connection::open(uri);
            auto reading = connection->call([bridge](virConnectPtr c) {
                const auto network = detail::dhcp_reservation_impl::network_of_bridge(c, bridge);
                if (!network)
                    throw std::runtime_error("no active network on " + bridge);
                const auto xml = detail::dhcp_reservation_impl::network_xml(network.get());
                return detail::dhcp_scope_of(xml.value()).hosts;
            });
            co_return co_await std::move(reading);
        }(std::move(uri), std::move(bridge)));
}

/// The address of anweddol's reservation for `mac` among `entries`, if any.
inline std::optional<std::string> reserved_for(const std::vector<detail::dhcp_host>& entries,
                                               const std::string& mac) {
    for (const auto& host : entries)
        if (detail::reservation_made_at(host.name) && detail::same_mac_address(host.mac, mac))
            return host.ip;
    return std::nullopt;
}

/// Whether `entries` has one named `name`.
inline bool has_entry_named(const std::vector<detail::dhcp_host>& entries,
                            const std::string& name) {
    return std::any_of(entries.begin(), entries.end(),
                       [&](const detail::dhcp_host& host) { return host.name == name; });
}

/// Adds (`add`) or removes a DHCP <host> entry on the active network on
/// `bridge` at `uri`, as an operator (or a process that died) would.
inline void update_dhcp_host(std::string uri, std::string entry_xml, bool add,
                             std::string bridge = "virbr0") {
    run_coroutine([](std::string uri, std::string bridge, std::string xml,
                     bool add) -> boost::asio::awaitable<bool> {
        auto connection = co_await hypervisor_connection::open(uri);
        auto updating = connection->call([bridge, xml, add](virConnectPtr c) {
            const auto network = detail::dhcp_reservation_impl::network_of_bridge(c, bridge);
            if (!network)
                throw std::runtime_error("no active network on " + bridge);
            if (virNetworkUpdate(network.get(),
                                 add ? VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
                                     : VIR_NETWORK_UPDATE_COMMAND_DELETE,
                                 VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, xml.c_str(),
                                 VIR_NETWORK_UPDATE_AFFECT_LIVE) < 0)
                detail::throw_last_libvirt_error("updating the network's DHCP hosts");
        });
        co_await std::move(updating);
        co_return true;
    }(std::move(uri), std::move(bridge), std::move(entry_xml), add));
}

} // namespace anweddol::test

#endif
