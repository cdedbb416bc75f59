//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_DHCP_HOST_ENTRIES_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_DHCP_HOST_ENTRIES_HPP

// The decisions behind an address reservation (dhcp_reservation.hpp), with
// no I/O: what a libvirt network's XML says of its DHCP, which address is
// free, how an entry is named, and when one is stale.
//
// An entry's name is "anweddol-", 8 random hex digits and the Unix time it
// was made. dnsmasq answers DNS with it, reverse lookups included, to every
// guest of the bridge: so it says whose entry it is and since when, and
// nothing of the guest (not its MAC, which a tenant could put in a forged
// DHCPRELEASE or DHCPDECLINE). Which guest it is for is its mac attribute.

#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/random.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
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
    std::string name; ///< reservation_name()
    std::string ip;
};

inline constexpr std::string_view reservation_name_prefix = "anweddol-";

/// How long an entry whose MAC no domain has may be one whose domain is
/// being created (libvirt's own timeouts for starting QEMU are far shorter).
inline constexpr std::chrono::seconds reservation_grace{600};

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// "anweddol-1f2e3d4c-1765141234", made at that Unix time.
inline std::string reservation_name(std::int64_t made_at) {
    const auto token = random_array<4>();
    return std::string(reservation_name_prefix) + to_hex(token.data(), token.size()) + "-" +
           std::to_string(made_at);
}

/// When an entry named by reservation_name() was made; nullopt for any
/// other name.
inline std::optional<std::int64_t> reservation_made_at(std::string_view name) {
    if (!name.starts_with(reservation_name_prefix))
        return std::nullopt;
    name.remove_prefix(reservation_name_prefix.size());
    if (name.size() < 10 || name[8] != '-' ||
        !std::all_of(name.begin(), name.begin() + 8,
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
        return std::nullopt;
    const std::string_view time = name.substr(9);
    std::int64_t made_at = 0;
    const auto [rest, error] = std::from_chars(time.data(), time.data() + time.size(), made_at);
    if (time.front() == '-' || error != std::errc() || rest != time.data() + time.size())
        return std::nullopt;
    return made_at;
}

/// Whether two MACs are the same, whatever the case of their hex digits.
inline bool same_mac_address(std::string_view a, std::string_view b) {
    return std::ranges::equal(
        a, b, [](unsigned char x, unsigned char y) { return std::tolower(x) == std::tolower(y); });
}

/// Whether an entry can be removed by whoever finds it: it is anweddol's
/// (named so), no domain has its MAC, and it was made more than
/// reservation_grace ago, or ahead of `now` by as much (a clock since set
/// back): younger, its domain may be being created.
inline bool is_stale_reservation(std::string_view name, std::string_view mac,
                                 const std::vector<std::string>& domain_macs, std::int64_t now) {
    const auto made_at = reservation_made_at(name);
    if (!made_at || std::abs(now - *made_at) <= reservation_grace.count())
        return false;
    return std::none_of(domain_macs.begin(), domain_macs.end(),
                        [&](const std::string& m) { return same_mac_address(m, mac); });
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
/// <ip> element (host byte order, inclusive) and that element's index among
/// all <ip> elements (virNetworkUpdate's parentIndex), and every <host>
/// entry.
struct dhcp_scope {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;
    int ipv4_index = -1;
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
    int index = 0;
    for (std::size_t from = 0;; ++index) {
        const std::string_view ip = start_tag(network_xml, "ip", from);
        if (ip.empty())
            break;
        from = static_cast<std::size_t>(ip.data() - network_xml.data()) + ip.size();
        const auto family = attribute(ip, "family");
        const bool ipv4 = !family || *family == "ipv4";
        const bool first_ipv4 = ipv4 && scope.ipv4_index < 0;
        if (first_ipv4)
            scope.ipv4_index = index;
        if (ip.ends_with("/>"))
            continue;
        const auto end = network_xml.find("</ip>", from);
        const std::string_view body =
            network_xml.substr(from, end == std::string_view::npos ? end : end - from);
        for (std::size_t at = 0;;) {
            const std::string_view host = start_tag(body, "host", at);
            if (host.empty())
                break;
            at = static_cast<std::size_t>(host.data() - body.data()) + host.size();
            scope.hosts.push_back({attribute(host, "mac").value_or(""),
                                   attribute(host, "name").value_or(""),
                                   attribute(host, "ip").value_or("")});
        }
        for (std::size_t at = 0; first_ipv4;) {
            const std::string_view range = start_tag(body, "range", at);
            if (range.empty())
                break;
            at = static_cast<std::size_t>(range.data() - body.data()) + range.size();
            const auto first = parse_ipv4(attribute(range, "start").value_or(""));
            const auto last = parse_ipv4(attribute(range, "end").value_or(""));
            if (first && last && *first <= *last)
                scope.ranges.emplace_back(*first, *last);
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
    start %= size; // so that start + i cannot wrap
    for (std::uint64_t i = 0; i < size && found.size() < wanted; ++i) {
        const std::uint32_t address = address_at((start + i) % size);
        if (!taken.contains(address) &&
            std::find(found.begin(), found.end(), address) == found.end())
            found.push_back(address);
    }
    return found;
}

} // namespace anweddol::detail

#endif
