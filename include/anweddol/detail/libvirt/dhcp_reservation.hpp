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
// Whose entry it is stays readable without any record of this process: its
// name is "anweddol-", the MAC's hex digits and the Unix time it was made.
// An entry so named whose MAC no domain of the hypervisor has, and older
// than reservation_grace (its domain may be being created), is stale (a
// process that died before it removed it), and any sweep removes it.

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/random.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::detail {

/// A reserved address: the network's <host> entry.
struct dhcp_reservation {
    std::string network; ///< the libvirt network's name
    std::string mac;
    std::string name; ///< reservation_name(mac)
    std::string ip;
};

inline constexpr std::string_view reservation_name_prefix = "anweddol-";

/// How long an entry whose MAC no domain has may be one whose domain is
/// being created (libvirt's own timeouts for starting QEMU are far shorter).
inline constexpr std::chrono::seconds reservation_grace{600};

/// "525400a1b2c3" for 52:54:00:A1:b2:c3.
inline std::string mac_digits(std::string_view mac) {
    std::string digits;
    for (const char c : mac)
        if (c != ':')
            digits += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    return digits;
}

/// "anweddol-525400a1b2c3-1765141234" for MAC 52:54:00:a1:b2:c3, made at
/// that Unix time: a valid host name, which says whose entry it is and
/// nothing else (dnsmasq answers DNS with it, to any guest of the bridge).
inline std::string reservation_name(std::string_view mac, std::int64_t made_at) {
    return std::string(reservation_name_prefix) + mac_digits(mac) + "-" + std::to_string(made_at);
}

/// What an entry's name says, when reservation_name() made it.
struct reservation_name_parts {
    std::string mac_digits;
    std::int64_t made_at = 0;
};

inline std::optional<reservation_name_parts> parse_reservation_name(std::string_view name) {
    if (!name.starts_with(reservation_name_prefix))
        return std::nullopt;
    name.remove_prefix(reservation_name_prefix.size());
    const auto dash = name.find('-');
    if (dash != 12)
        return std::nullopt;
    reservation_name_parts parts{std::string(name.substr(0, dash)), 0};
    if (!std::all_of(parts.mac_digits.begin(), parts.mac_digits.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
        return std::nullopt;
    const std::string_view time = name.substr(dash + 1);
    const auto [rest, error] =
        std::from_chars(time.data(), time.data() + time.size(), parts.made_at);
    if (time.empty() || error != std::errc() || rest != time.data() + time.size())
        return std::nullopt;
    return parts;
}

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline std::string host_entry_xml(const dhcp_reservation& r) {
    return "<host mac='" + xml_escape(r.mac) + "' name='" + xml_escape(r.name) + "' ip='" +
           xml_escape(r.ip) + "'/>";
}

/// A <host> entry of a network's DHCP section.
struct dhcp_host {
    std::string mac;
    std::string name;
    std::string ip;
};

/// What a network's XML says of its IPv4 DHCP: the ranges of its first IPv4
/// <ip> element (host byte order, inclusive), and every <host> entry.
struct dhcp_scope {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;
    std::vector<dhcp_host> hosts;
};

inline std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
    in_addr address{};
    if (inet_pton(AF_INET, text.c_str(), &address) != 1)
        return std::nullopt;
    return ntohl(address.s_addr);
}

inline std::string format_ipv4(std::uint32_t address) {
    const in_addr a{htonl(address)};
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, text, sizeof text);
    return text;
}

/// Reads libvirt's own network XML (not a general XML parser: see
/// domain_description.hpp).
inline dhcp_scope dhcp_scope_of(std::string_view network_xml) {
    dhcp_scope scope;
    bool ranges_read = false;
    for (std::size_t from = 0;;) {
        const std::string_view ip = start_tag(network_xml, "ip", from);
        if (ip.empty())
            break;
        from = static_cast<std::size_t>(ip.data() - network_xml.data()) + ip.size();
        if (ip.ends_with("/>"))
            continue;
        const auto end = network_xml.find("</ip>", from);
        const std::string_view body =
            network_xml.substr(from, end == std::string_view::npos ? end : end - from);
        const auto family = attribute(ip, "family");
        const bool ipv4 = !family || *family == "ipv4";
        for (std::size_t at = 0;;) {
            const std::string_view host = start_tag(body, "host", at);
            if (host.empty())
                break;
            at = static_cast<std::size_t>(host.data() - body.data()) + host.size();
            scope.hosts.push_back({attribute(host, "mac").value_or(""),
                                   attribute(host, "name").value_or(""),
                                   attribute(host, "ip").value_or("")});
        }
        if (ipv4 && !ranges_read) {
            ranges_read = true; // where virNetworkUpdate adds a host (parentIndex -1)
            for (std::size_t at = 0;;) {
                const std::string_view range = start_tag(body, "range", at);
                if (range.empty())
                    break;
                at = static_cast<std::size_t>(range.data() - body.data()) + range.size();
                const auto first = parse_ipv4(attribute(range, "start").value_or(""));
                const auto last = parse_ipv4(attribute(range, "end").value_or(""));
                if (first && last && *first <= *last)
                    scope.ranges.emplace_back(*first, *last);
            }
        }
        if (end == std::string_view::npos)
            break;
    }
    return scope;
}

/// Up to `wanted` addresses of the scope's ranges that no host entry and no
/// lease in `leased` holds, taken from a point `start` (any number) of the
/// ranges on, wrapping around: two processes reserving at once mostly try
/// different ones.
inline std::vector<std::uint32_t> free_addresses(const dhcp_scope& scope,
                                                 const std::set<std::uint32_t>& leased,
                                                 std::size_t wanted, std::uint64_t start) {
    std::set<std::uint32_t> taken = leased;
    for (const auto& host : scope.hosts)
        if (const auto ip = parse_ipv4(host.ip))
            taken.insert(*ip);
    std::uint64_t size = 0;
    for (const auto& [first, last] : scope.ranges)
        size += std::uint64_t{last} - first + 1;
    std::vector<std::uint32_t> found;
    if (size == 0)
        return found;
    const auto address_at = [&](std::uint64_t index) {
        for (const auto& [first, last] : scope.ranges) {
            const std::uint64_t length = std::uint64_t{last} - first + 1;
            if (index < length)
                return static_cast<std::uint32_t>(first + index);
            index -= length;
        }
        return std::uint32_t{0}; // unreachable: index < size
    };
    for (std::uint64_t i = 0; i < size && found.size() < wanted; ++i) {
        const std::uint32_t address = address_at((start + i) % size);
        if (!taken.contains(address) &&
            std::find(found.begin(), found.end(), address) == found.end())
            found.push_back(address);
    }
    return found;
}

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

inline bool update_host(virNetworkPtr network, virNetworkUpdateCommand command,
                        const dhcp_reservation& r) {
    const std::string xml = host_entry_xml(r);
    return virNetworkUpdate(network, command, VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, xml.c_str(),
                            VIR_NETWORK_UPDATE_AFFECT_LIVE) == 0;
}

} // namespace dhcp_reservation_impl

/// Reserves an address for `mac` on the network of `bridge`. nullopt when
/// the bridge has no libvirt network with an IPv4 DHCP range, the range has
/// no address free, or the network refuses updates: the guest then asks for
/// a dynamic lease, as without a reservation, only slower. Another process reserving at once cannot
/// take the same address: libvirt refuses an entry whose MAC, name or address another entry has,
/// and the next address is tried.
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
    const auto leased = leased_addresses(network.get());
    const auto start = random_array<8>();
    std::uint64_t offset = 0;
    for (const unsigned char byte : start)
        offset = (offset << 8) | byte;
    constexpr std::size_t attempts = 8;
    for (const std::uint32_t address :
         free_addresses(dhcp_scope_of(*xml), leased, attempts, offset)) {
        dhcp_reservation r{virNetworkGetName(network.get()), mac, reservation_name(mac, unix_now()),
                           format_ipv4(address)};
        if (update_host(network.get(), VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, r))
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
    const std::string digits = mac_digits(mac);
    for (const auto& host : dhcp_scope_of(*xml).hosts)
        if (const auto parts = parse_reservation_name(host.name);
            parts && parts->mac_digits == digits && mac_digits(host.mac) == digits)
            return dhcp_reservation{virNetworkGetName(network.get()), host.mac, host.name, host.ip};
    return std::nullopt;
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
    if (update_host(network.get(), VIR_NETWORK_UPDATE_COMMAND_DELETE, r))
        return;
    // libvirt says VIR_ERR_OPERATION_INVALID for an entry it does not have.
    if (virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID)
        throw_last_libvirt_error("cannot release address " + r.ip + " of " + r.mac +
                                 " on network " + r.network);
    virResetLastError();
}

/// Removes, from every active network, the entries named as anweddol's
/// whose MAC no domain has (running or not), made more than
/// reservation_grace ago (or ahead, by a clock since set back); returns them.
inline std::vector<dhcp_reservation> release_stale_reservations_blocking(virConnectPtr connection) {
    using namespace dhcp_reservation_impl;
    // The entries first, the domains after: an entry made meanwhile belongs
    // to a domain that exists by the time the domains are listed.
    std::vector<dhcp_reservation> candidates;
    const std::int64_t now = unix_now();
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    for (int i = 0; i < count; ++i) {
        if (const auto xml = network_xml(networks[i]))
            for (auto& host : dhcp_scope_of(*xml).hosts) {
                const auto parts = parse_reservation_name(host.name);
                if (parts && parts->mac_digits == mac_digits(host.mac) &&
                    std::abs(now - parts->made_at) > reservation_grace.count())
                    candidates.push_back({virNetworkGetName(networks[i]), std::move(host.mac),
                                          std::move(host.name), std::move(host.ip)});
            }
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    virResetLastError();
    if (candidates.empty())
        return {};

    std::set<std::string> macs;
    virDomainPtr* domains = nullptr;
    const int domain_count = virConnectListAllDomains(connection, &domains, 0);
    if (domain_count < 0)
        throw_last_libvirt_error("cannot list the domains, to tell stale address reservations");
    bool all_read = true;
    for (int i = 0; i < domain_count; ++i) {
        char* xml = virDomainGetXMLDesc(domains[i], 0);
        // Unreadable and still there: its MACs are unknown, so no entry is
        // known to be stale.
        if (!xml && virDomainIsActive(domains[i]) == 1)
            all_read = false;
        if (xml) {
            const std::string_view text = xml;
            for (std::size_t at = 0;;) {
                const std::string_view tag = start_tag(text, "mac", at);
                if (tag.empty())
                    break;
                at = static_cast<std::size_t>(tag.data() - text.data()) + tag.size();
                if (const auto address = attribute(tag, "address"))
                    macs.insert(mac_digits(*address));
            }
            std::free(xml);
        }
        virDomainFree(domains[i]);
    }
    std::free(domains);
    virResetLastError();

    std::vector<dhcp_reservation> released;
    if (!all_read)
        return released;
    for (auto& r : candidates) {
        if (macs.contains(mac_digits(r.mac)))
            continue;
        release_reservation_blocking(connection, r);
        released.push_back(std::move(r));
    }
    return released;
}

} // namespace anweddol::detail

#endif
