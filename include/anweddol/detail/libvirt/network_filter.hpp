//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_NETWORK_FILTER_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_NETWORK_FILTER_HPP

// The traffic filter that keeps a container from impersonating or reaching
// the other containers of its bridge, and the check of what a host can
// apply. Blocking libvirt calls: run on a connection's worker.
//
// libvirt's `clean-traffic` drops spoofed MAC, IP and ARP, but lets a
// guest's IPv4 out to any destination. On a NAT network libvirt's firewall
// accepts forwarding from the bridge back onto it (its LIBVIRT_FWX chain),
// so a guest with root can route a packet for another guest through the
// gateway and get past port isolation. The filter made here adds, in a
// chain of its own, a drop of the guest's IPv4 to its own subnet except the
// gateway itself (DHCP renewals, DNS). It is one filter per bridge, with
// the network's addresses written in, defined on the host the first time a
// container starts there and again only if its network's addresses change.

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/errc.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/network_isolation.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <openssl/evp.h>

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

namespace anweddol::detail {

/// An IPv4 network as a libvirt network's <ip> element gives it.
struct ipv4_network {
    std::string gateway; ///< the bridge's own address, such as 192.168.122.1
    std::string address; ///< the network's, such as 192.168.122.0
    unsigned prefix = 0; ///< such as 24
};

/// The IPv4 network of a libvirt network's XML: its first <ip> element
/// without family='ipv6', with `netmask` or `prefix`. nullopt when none.
inline std::optional<ipv4_network> ipv4_network_of(std::string_view network_xml) {
    for (std::size_t from = 0;;) {
        const std::string_view tag = start_tag(network_xml, "ip", from);
        if (tag.empty())
            return std::nullopt;
        from = static_cast<std::size_t>(tag.data() - network_xml.data()) + tag.size();
        const auto family = attribute(tag, "family");
        const auto address = attribute(tag, "address");
        if ((family && *family != "ipv4") || !address)
            continue;
        in_addr gateway{};
        if (inet_pton(AF_INET, address->c_str(), &gateway) != 1)
            continue;
        unsigned prefix = 0;
        if (const auto netmask = attribute(tag, "netmask")) {
            in_addr mask{};
            if (inet_pton(AF_INET, netmask->c_str(), &mask) != 1)
                continue;
            const std::uint32_t bits = ntohl(mask.s_addr);
            prefix = static_cast<unsigned>(__builtin_popcount(bits));
            if (prefix != 32 && bits != ~((std::uint32_t{1} << (32 - prefix)) - 1))
                continue; // not a contiguous mask
        } else if (const auto length = attribute(tag, "prefix")) {
            prefix = static_cast<unsigned>(std::atoi(length->c_str()));
            if (prefix == 0 || prefix > 32 || *length != std::to_string(prefix))
                continue;
        } else {
            continue;
        }
        const std::uint32_t mask =
            prefix == 32 ? ~std::uint32_t{0} : ~((std::uint32_t{1} << (32 - prefix)) - 1);
        in_addr network{htonl(ntohl(gateway.s_addr) & mask)};
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &network, text, sizeof text);
        return ipv4_network{*address, text, prefix};
    }
}

/// The names of a bridge's filters: the one a container's interface
/// references, and the chain it adds to clean-traffic.
inline std::string tenant_filter_name(const std::string& bridge) {
    return "anweddol-tenant-" + bridge;
}
inline std::string routing_filter_name(const std::string& bridge) {
    return "anweddol-guest-routing-" + bridge;
}

/// A UUID for filter `name`, the same on every host and at every start: a
/// filter defined again with the same UUID is updated, whereas a fresh one
/// would clash with the definition a concurrent start just made.
inline std::string filter_uuid(const std::string& name) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned size = 0;
    EVP_Digest(name.data(), name.size(), digest.data(), &size, EVP_sha256(), nullptr);
    digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50); // a name-based UUID
    digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);
    char text[37];
    std::snprintf(text, sizeof text,
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", digest[0],
                  digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
                  digest[8], digest[9], digest[10], digest[11], digest[12], digest[13], digest[14],
                  digest[15]);
    return text;
}

/// The XML of the chain that drops a guest's IPv4 to the rest of `network`.
/// Its chain is jumped to after clean-traffic's anti-spoofing ones (-700)
/// and before its blanket accept of outgoing IPv4 (-650). `return` for the
/// gateway hands the packet back to the root chain, which checks the rest.
inline std::string routing_filter_xml(const std::string& bridge, const ipv4_network& network) {
    const std::string name = routing_filter_name(bridge);
    return "<filter name='" + xml_escape(name) +
           "' chain='ipv4-anwdl' priority='-690'>\n"
           "  <uuid>" +
           filter_uuid(name) +
           "</uuid>\n"
           "  <rule action='return' direction='out' priority='100'>\n"
           "    <ip dstipaddr='" +
           xml_escape(network.gateway) +
           "'/>\n"
           "  </rule>\n"
           "  <rule action='drop' direction='out' priority='200'>\n"
           "    <ip dstipaddr='" +
           xml_escape(network.address) + "' dstipmask='" + std::to_string(network.prefix) +
           "'/>\n"
           "  </rule>\n"
           "</filter>\n";
}

/// The XML of the filter a container's interface references.
inline std::string tenant_filter_xml(const std::string& bridge) {
    const std::string name = tenant_filter_name(bridge);
    return "<filter name='" + xml_escape(name) +
           "' chain='root'>\n"
           "  <uuid>" +
           filter_uuid(name) +
           "</uuid>\n"
           "  <filterref filter='clean-traffic'/>\n"
           "  <filterref filter='" +
           xml_escape(routing_filter_name(bridge)) +
           "'/>\n"
           "</filter>\n";
}

/// What a start applies, and the filter its interface references. The
/// filter learns the guest's address from DHCP replies of the gateway only
/// (DHCPSERVER): otherwise a guest could have a server of its own, reached
/// through the NAT, answer its DHCP request with another guest's address,
/// and the filter would let it claim that address too.
struct isolation_plan {
    network_isolation applied;
    std::string filter;      ///< empty: none
    std::string dhcp_server; ///< the only DHCP server the filter learns addresses from
};

namespace network_filter_detail {

/// libvirt's last error message on this thread, reset.
inline std::string last_libvirt_message() {
    const virError* error = virGetLastError();
    std::string message = error && error->message ? error->message : "no error message";
    virResetLastError();
    return message;
}

/// The XML of the active libvirt network whose bridge is `bridge`; nullopt
/// when no network owns it.
inline std::optional<std::string> network_xml_of_bridge(virConnectPtr connection,
                                                        const std::string& bridge) {
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    std::optional<std::string> found;
    for (int i = 0; i < count; ++i) {
        char* name = virNetworkGetBridgeName(networks[i]);
        if (!found && name && bridge == name) {
            if (char* xml = virNetworkGetXMLDesc(networks[i], 0)) {
                found = xml;
                std::free(xml);
            }
        }
        std::free(name);
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    virResetLastError();
    return found;
}

/// Defines filter `name` from `xml` unless the host's definition already
/// has `must_contain`; an error message, or empty on success.
inline std::string ensure_filter(virConnectPtr connection, const std::string& name,
                                 const std::string& xml, const std::string& must_contain) {
    if (virNWFilterPtr existing = virNWFilterLookupByName(connection, name.c_str())) {
        char* current = virNWFilterGetXMLDesc(existing, 0);
        const bool same =
            current && std::string_view(current).find(must_contain) != std::string_view::npos;
        std::free(current);
        virNWFilterFree(existing);
        if (same)
            return {};
    }
    virResetLastError();
    virNWFilterPtr defined = virNWFilterDefineXML(connection, xml.c_str());
    if (!defined)
        return "cannot define network filter '" + name + "': " + last_libvirt_message();
    virNWFilterFree(defined);
    return {};
}

/// Why the traffic filter cannot be applied on this host; empty when it
/// was made ready (the filters defined). `filter` gets its name.
inline std::string prepare_traffic_filter(virConnectPtr connection, const std::string& uri,
                                          const std::string& bridge, isolation_plan& plan) {
    if (virNWFilterPtr clean = virNWFilterLookupByName(connection, "clean-traffic")) {
        virNWFilterFree(clean);
    } else {
        return "libvirt at " + uri + " has no network filter 'clean-traffic' (" +
               last_libvirt_message() +
               "): install and run libvirt's nwfilter driver with its filters (Debian: "
               "libvirt-daemon-config-nwfilter) and ebtables on that host";
    }
    const auto xml = network_xml_of_bridge(connection, bridge);
    const auto network = xml ? ipv4_network_of(*xml) : std::nullopt;
    if (!network)
        return "bridge '" + bridge + "' at " + uri +
               (xml ? " belongs to a libvirt network without an IPv4 address"
                    : " belongs to no active libvirt network") +
               ", so anweddol cannot tell its guests' subnet from the gateway";
    const std::string routing = routing_filter_name(bridge);
    const std::string drop_rule =
        "dstipaddr='" + network->address + "' dstipmask='" + std::to_string(network->prefix) + "'";
    std::string failure =
        ensure_filter(connection, routing, routing_filter_xml(bridge, *network), drop_rule);
    if (failure.empty())
        failure = ensure_filter(connection, tenant_filter_name(bridge), tenant_filter_xml(bridge),
                                "filter='" + routing + "'");
    if (failure.empty()) {
        plan.filter = tenant_filter_name(bridge);
        plan.dhcp_server = network->gateway;
    }
    return failure;
}

} // namespace network_filter_detail

/// Decides, on the host behind `connection`, what a container's start
/// applies of `wanted`, defining the traffic filter there if it must.
/// Throws errc::network_isolation_unavailable for a protection `required`
/// that the host cannot give, naming what it lacks and how to proceed.
/// libvirt's test driver has no network: nothing to filter there, which
/// the downgrades say.
inline isolation_plan plan_network_isolation(virConnectPtr connection, const std::string& uri,
                                             const std::string& bridge,
                                             const network_isolation_options& wanted) {
    isolation_plan plan;
    plan.applied.ports_isolated = wanted.isolate_ports;
    if (wanted.traffic_filter == isolation_requirement::off)
        return plan;
    std::string lacking;
    if (uri.starts_with("test:"))
        lacking = "libvirt's test driver at " + uri + " has no network to filter";
    else
        lacking = network_filter_detail::prepare_traffic_filter(connection, uri, bridge, plan);
    if (lacking.empty()) {
        plan.applied.traffic_filtered = true;
    } else if (wanted.traffic_filter == isolation_requirement::required &&
               !uri.starts_with("test:")) {
        throw_error(errc::network_isolation_unavailable,
                    "cannot isolate the container's traffic: " + lacking +
                        "; or set container_instance::options::isolation.traffic_filter to "
                        "if_available (starts without the filter, and says so) or off");
    } else {
        plan.applied.downgrades = "no traffic filter: " + lacking;
    }
    return plan;
}

} // namespace anweddol::detail

#endif
