//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_NETWORK_ISOLATION_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_NETWORK_ISOLATION_HPP

// anweddol::isolation_requirement, network_isolation_options and
// network_isolation, public names: defined here, below the public headers,
// for the detail code that applies them (network_filter.hpp);
// <anweddol/network_isolation.hpp> brings them in.

#include <string>

namespace anweddol {

/// How strongly a protection is wanted.
enum class isolation_requirement {
    /// Applied, or the start fails with errc::network_isolation_unavailable
    /// saying what the host lacks.
    required,
    /// Applied where the host can; otherwise the container starts without
    /// it and says so in network_isolation::downgrades.
    if_available,
    /// Not applied.
    off,
};

/// What a container's domain is to be given.
struct network_isolation_options {
    /// `<port isolated='yes'/>` on the guest's interface: the bridge forwards
    /// nothing from one isolated port to another, so a guest cannot reach
    /// another guest of the bridge at layer 2 (no ARP, no TCP, no ping),
    /// while it still reaches the bridge's own address (DHCP, DNS, the NAT
    /// gateway). libvirt 6.1 or later, on a Linux bridge.
    bool isolate_ports = true;
    /// libvirt's `clean-traffic` network filter on the interface: frames
    /// with another MAC address, packets with another source address than
    /// the one the guest leased (learned from DHCP), and forged ARP are
    /// dropped, so a guest cannot impersonate another or the gateway.
    /// Also drops the guest's IPv4 packets to the rest of its own subnet
    /// sent through the gateway, which port isolation alone lets libvirt's
    /// NAT network route back onto the bridge. Needs libvirt's nwfilter
    /// driver and its `clean-traffic` filter (Debian:
    /// libvirt-daemon-config-nwfilter) and ebtables on the hypervisor host.
    isolation_requirement traffic_filter = isolation_requirement::required;
};

/// What a container's last start applied.
struct network_isolation {
    bool ports_isolated = false;   ///< `<port isolated='yes'/>` was set
    bool traffic_filtered = false; ///< the traffic filter was applied
    /// Empty when everything asked for was applied; otherwise, for each
    /// protection asked for as if_available that the host could not give,
    /// what it lacks ("no traffic filter: libvirt at qemu:///system has no
    /// nwfilter 'clean-traffic' (...)").
    std::string downgrades;
};

} // namespace anweddol

#endif
