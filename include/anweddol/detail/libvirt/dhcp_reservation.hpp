//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_DHCP_RESERVATION_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_DHCP_RESERVATION_HPP

// A container's address, reserved on its libvirt network before its domain
// is created: a <host mac ip name/> entry in the network's DHCP section
// (virNetworkUpdate, live only). dnsmasq answers a reserved MAC at once,
// where it offers a dynamic address only after pinging it for 3 s to be
// sure nobody uses it (dnsmasq's PING_WAIT); and the guest's traffic filter
// is given the address, instead of learning it from the DHCP reply and
// only then letting the guest's traffic through. Under software emulation
// (benchmarks/provision) the boot to the address went from 12.0-12.9 s to
// 6.2-7.1 s, and the address to SSH from about 3 s to under 0.5 s.
//
// A filter given the address lets the guest use it for as long as the
// domain runs, lease or no lease: so the entry, which alone keeps dnsmasq
// and the next reservation from giving the address to another guest, is
// removed only once the domain is known to be gone. An entry a process left
// behind (it died first) is removed by any sweep once no domain has its MAC
// and it is older than reservation_grace; the sweep reads the domains as
// the connection's access rules show them, and judges ages by the clock of
// the process that sweeps.

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/dhcp_host_entries.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace anweddol::detail {

namespace dhcp_reservation_impl {

struct network_deleter {
    void operator()(virNetworkPtr network) const noexcept { virNetworkFree(network); }
};
using network_handle = std::unique_ptr<virNetwork, network_deleter>;

/// The active libvirt network whose bridge is `bridge`; null when none (or
/// the driver has no networks, as test:///).
inline network_handle network_of_bridge(virConnectPtr connection, const std::string& bridge) {
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    network_handle found;
    for (int i = 0; i < count; ++i) {
        char* name = found ? nullptr : virNetworkGetBridgeName(networks[i]);
        if (name && bridge == name)
            found.reset(networks[i]);
        else
            virNetworkFree(networks[i]);
        std::free(name);
    }
    std::free(networks);
    virResetLastError();
    return found;
}

inline std::optional<std::string> network_xml(virNetworkPtr network) {
    char* xml = virNetworkGetXMLDesc(network, 0);
    if (!xml) {
        virResetLastError();
        return std::nullopt;
    }
    std::string text = xml;
    std::free(xml);
    return text;
}

inline std::set<std::uint32_t> leased_addresses(virNetworkPtr network) {
    std::set<std::uint32_t> leased;
    virNetworkDHCPLeasePtr* leases = nullptr;
    const int count = virNetworkGetDHCPLeases(network, nullptr, &leases, 0);
    for (int i = 0; i < count; ++i) {
        if (leases[i]->type == VIR_IP_ADDR_TYPE_IPV4 && leases[i]->ipaddr)
            if (const auto ip = parse_ipv4(leases[i]->ipaddr))
                leased.insert(*ip);
        virNetworkDHCPLeaseFree(leases[i]);
    }
    std::free(leases);
    virResetLastError();
    return leased;
}

inline bool update_host(virNetworkPtr network, virNetworkUpdateCommand command, int ip_index,
                        const dhcp_reservation& r) {
    const std::string xml = host_entry_xml(r);
    return virNetworkUpdate(network, command, VIR_NETWORK_SECTION_IP_DHCP_HOST, ip_index,
                            xml.c_str(), VIR_NETWORK_UPDATE_AFFECT_LIVE) == 0;
}

/// The MACs of every domain's interfaces; nullopt when a domain that still
/// runs could not be read.
inline std::optional<std::vector<std::string>> domain_macs(virConnectPtr connection) {
    virDomainPtr* domains = nullptr;
    const int count = virConnectListAllDomains(connection, &domains, 0);
    if (count < 0) {
        virResetLastError();
        return std::nullopt;
    }
    std::vector<std::string> macs;
    bool all_read = true;
    for (int i = 0; i < count; ++i) {
        if (char* xml = virDomainGetXMLDesc(domains[i], 0)) {
            const std::string_view text = xml;
            for (std::size_t at = 0;;) {
                const std::string_view tag = start_tag(text, "mac", at);
                if (tag.empty())
                    break;
                at = static_cast<std::size_t>(tag.data() - text.data()) + tag.size();
                if (auto address = attribute(tag, "address"))
                    macs.push_back(std::move(*address));
            }
            std::free(xml);
        } else if (virDomainIsActive(domains[i]) == 1) {
            all_read = false;
        }
        virDomainFree(domains[i]);
    }
    std::free(domains);
    virResetLastError();
    if (!all_read)
        return std::nullopt;
    return macs;
}

} // namespace dhcp_reservation_impl

/// Reserves an address for `mac` on the network of `bridge`. nullopt when
/// the bridge has no libvirt network with an IPv4 DHCP range, the range has
/// no address free, or the network refuses updates: the guest then asks for
/// a dynamic lease, as without a reservation, only slower. Another process
/// reserving at once cannot take the same address: libvirt refuses an entry
/// whose MAC, name or address another entry has, and the next is tried.
inline std::optional<dhcp_reservation> reserve_address_blocking(virConnectPtr connection,
                                                                const std::string& bridge,
                                                                const std::string& mac) {
    using namespace dhcp_reservation_impl;
    const auto network = network_of_bridge(connection, bridge);
    if (!network)
        return std::nullopt;
    const auto xml = network_xml(network.get());
    if (!xml)
        return std::nullopt;
    const auto scope = dhcp_scope_of(*xml);
    const auto leased = leased_addresses(network.get());
    std::uint64_t start = 0;
    for (const unsigned char byte : random_array<8>())
        start = (start << 8) | byte;
    constexpr std::size_t attempts = 8;
    for (const std::uint32_t address : free_addresses(scope, leased, attempts, start)) {
        dhcp_reservation r{virNetworkGetName(network.get()), mac, reservation_name(unix_now()),
                           format_ipv4(address)};
        if (update_host(network.get(), VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, scope.ipv4_index, r))
            return r;
        const bool taken = virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID;
        virResetLastError();
        if (!taken)
            return std::nullopt; // the network takes no updates (access rules, say)
    }
    return std::nullopt;
}

/// The reservation of `mac` on the network of `bridge`, if it has one (for
/// a domain adopted from an earlier process).
inline std::optional<dhcp_reservation> find_reservation_blocking(virConnectPtr connection,
                                                                 const std::string& bridge,
                                                                 const std::string& mac) {
    using namespace dhcp_reservation_impl;
    const auto network = network_of_bridge(connection, bridge);
    const auto xml = network ? network_xml(network.get()) : std::nullopt;
    if (!xml)
        return std::nullopt;
    for (const auto& host : dhcp_scope_of(*xml).hosts)
        if (reservation_made_at(host.name) && same_mac_address(host.mac, mac))
            return dhcp_reservation{virNetworkGetName(network.get()), host.mac, host.name, host.ip};
    return std::nullopt;
}

/// Makes sure `r` is on its network (a snapshot slot's, kept between its
/// containers: a sweep may have taken it as stale, a network restart
/// dropped it): adds it again where it is missing. false when it is missing
/// and cannot be added (its address went to another entry meanwhile).
inline bool keep_reservation_blocking(virConnectPtr connection, const std::string& bridge,
                                      const dhcp_reservation& r) {
    using namespace dhcp_reservation_impl;
    if (const auto present = find_reservation_blocking(connection, bridge, r.mac))
        return present->ip == r.ip;
    const auto network = network_of_bridge(connection, bridge);
    const auto xml = network ? network_xml(network.get()) : std::nullopt;
    if (!xml)
        return false;
    const bool added = update_host(network.get(), VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                                   dhcp_scope_of(*xml).ipv4_index, r);
    virResetLastError();
    return added;
}

/// Removes the entry; one already gone (a sweep took it, the network
/// restarted) is not an error.
inline void release_reservation_blocking(virConnectPtr connection, const dhcp_reservation& r) {
    using namespace dhcp_reservation_impl;
    network_handle network(virNetworkLookupByName(connection, r.network.c_str()));
    if (!network) {
        virResetLastError(); // the network is gone, and its entries with it
        return;
    }
    // parentIndex -1: the entry is looked for wherever it is.
    if (update_host(network.get(), VIR_NETWORK_UPDATE_COMMAND_DELETE, -1, r))
        return;
    // libvirt says VIR_ERR_OPERATION_INVALID for an entry it does not have.
    if (virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID)
        throw_last_libvirt_error("cannot release address " + r.ip + " of " + r.mac +
                                 " on network " + r.network);
    virResetLastError();
}

/// Releases `r` after its domain is gone; a failure leaves it to a sweep.
/// Returns whether it was released.
inline bool release_reservation_quietly(virConnectPtr connection,
                                        const dhcp_reservation& r) noexcept {
    try {
        release_reservation_blocking(connection, r);
        return true;
    } catch (...) {
        return false;
    }
}

/// Removes, from every active network, the entries is_stale_reservation()
/// says may go; returns them. None when the domains could not all be read.
inline std::vector<dhcp_reservation> release_stale_reservations_blocking(virConnectPtr connection) {
    using namespace dhcp_reservation_impl;
    // The entries first, the domains after: an entry made meanwhile belongs
    // to a domain that exists by the time the domains are listed (or is
    // younger than the grace anyway).
    std::vector<dhcp_reservation> candidates;
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    for (int i = 0; i < count; ++i) {
        if (const auto xml = network_xml(networks[i]))
            for (auto& host : dhcp_scope_of(*xml).hosts)
                if (reservation_made_at(host.name))
                    candidates.push_back({virNetworkGetName(networks[i]), std::move(host.mac),
                                          std::move(host.name), std::move(host.ip)});
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    virResetLastError();
    if (candidates.empty())
        return {};
    const auto macs = domain_macs(connection);
    if (!macs)
        return {};
    const std::int64_t now = unix_now();
    std::vector<dhcp_reservation> released;
    for (auto& r : candidates)
        if (is_stale_reservation(r.name, r.mac, *macs, now) &&
            release_reservation_quietly(connection, r))
            released.push_back(std::move(r));
    return released;
}

} // namespace anweddol::detail

#endif
