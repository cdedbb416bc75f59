//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_OPS_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_OPS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/detail/libvirt/host_probe.hpp>

#include <libvirt/libvirt.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

namespace anweddol::detail {

// The blocking libvirt work of a container, each run on a connection's lane.
// Domains are looked up by UUID on the connection at hand: after libvirtd
// restarted, handles from the old connection are dead.

/// Everything start_domain checks before it creates anything; returns the
/// domain type to use.
inline std::string preflight(virConnectPtr connection, const std::string& uri,
                             const std::string& uuid, const std::string& iso_path,
                             const std::string& bridge, const std::string& wanted_type) {
    struct stat status {};
    const auto system_error = [](int code, std::string what) {
        throw_error(boost::system::error_code(code, boost::system::system_category()),
                    std::move(what));
    };
    if (::stat(iso_path.c_str(), &status) != 0)
        system_error(errno, "cannot use the ISO file " + iso_path);
    if (S_ISDIR(status.st_mode))
        system_error(EISDIR, "the ISO path " + iso_path + " is a directory");
    if (::access(iso_path.c_str(), R_OK) != 0)
        system_error(errno, "cannot read the ISO file " + iso_path);

    if (domain_handle existing(virDomainLookupByUUIDString(connection, uuid.c_str())); existing)
        throw_error(errc::domain_already_running,
                    "libvirt at " + uri + " already has a domain with UUID " + uuid +
                        ": give this container another UUID, or stop that domain first");
    virResetLastError();

    if (!bridge_exists(connection, uri, bridge))
        throw_error(errc::invalid_argument,
                    "there is no bridge named '" + bridge + "' at " + uri +
                        ": start the libvirt network that owns it (virsh net-start default) or "
                        "set the container's NAT interface name to an existing one");
    return wanted_type.empty() ? automatic_domain_type(connection) : wanted_type;
}

/// A domain just created, with its console being read and its address
/// reserved.
struct created_domain {
    domain_handle domain;
    console_stream console;
    std::optional<dhcp_reservation> reservation;
};

/// Creates the transient domain `definition` describes and starts its guest
/// with its console already read, so that the log has the first line the
/// guest writes (`console` nullptr: none is read). With `reserve_address`,
/// the guest's address is reserved first (none free: a dynamic lease, as
/// without), and, with `filter_gets_address`, given to its traffic filter
/// instead of learned. `autodestroy`: libvirt destroys the domain when this
/// connection closes, which it does when the process dies, however it dies.
inline created_domain create_domain_blocking(virConnectPtr connection, const std::string& uri,
                                             domain_definition definition, bool autodestroy,
                                             std::shared_ptr<console_ring> console,
                                             bool reserve_address, bool filter_gets_address) {
    // The test driver's domains live in this process, and it takes neither
    // flag: they die with the process anyway, and have no console.
    const bool test_driver = uri.starts_with("test:");
    unsigned flags = 0;
    if (!test_driver)
        flags |= VIR_DOMAIN_START_PAUSED;
    if (!test_driver && autodestroy)
        flags |= VIR_DOMAIN_START_AUTODESTROY;
    created_domain created;
    if (reserve_address && !test_driver) {
        created.reservation =
            reserve_address_blocking(connection, definition.bridge, definition.mac);
        if (created.reservation && filter_gets_address)
            definition.reserved_ip = created.reservation->ip;
    }
    try {
        created.domain.reset(virDomainCreateXML(connection, domain_xml(definition).c_str(), flags));
        if (!created.domain)
            throw_last_libvirt_error("cannot create the container's domain");
    } catch (...) {
        const std::exception_ptr failure = std::current_exception(); // libvirt's error first
        // No domain: nothing uses the address.
        if (created.reservation)
            release_reservation_quietly(connection, *created.reservation);
        std::rethrow_exception(failure);
    }
    if (test_driver)
        return created;
    try {
        if (console) // nullptr: the container keeps no console log
            created.console =
                console_stream::open(connection, created.domain.get(), std::move(console));
        if (virDomainResume(created.domain.get()) < 0)
            throw_last_libvirt_error("cannot start the guest of the domain just created");
    } catch (...) {
        const std::exception_ptr failure = std::current_exception(); // before the cleanup's
        // The address goes only with the domain: the filter lets the guest use
        // it for as long as the domain runs.
        const bool destroyed = virDomainDestroy(created.domain.get()) == 0;
        virResetLastError();
        if (destroyed && created.reservation)
            release_reservation_quietly(connection, *created.reservation);
        std::rethrow_exception(failure);
    }
    return created;
}

/// The domain with `uuid`, or nullptr when libvirt has none (any other
/// failure throws).
inline domain_handle find_domain(virConnectPtr connection, const std::string& uuid) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!domain) {
        if (virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
            throw_last_libvirt_error("cannot look up domain " + uuid);
        virResetLastError();
    }
    return domain;
}

/// Destroys the domain with `uuid`, looked up on `connection`, or `fallback`
/// where there is no connection (an adopted domain). A domain already gone
/// is not an error. Returns whether this call destroyed it.
inline bool destroy_domain_blocking(virConnectPtr connection, const std::string& uuid,
                                    virDomainPtr fallback) {
    domain_handle domain = connection ? find_domain(connection, uuid) : retain_domain(fallback);
    if (!domain)
        return false;
    if (virDomainDestroy(domain.get()) < 0) {
        if (virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID ||
            virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
            virResetLastError(); // not running any more
            return false;
        }
        throw_last_libvirt_error("cannot destroy domain " + uuid);
    }
    return true;
}

/// What destroy_domain_and_reservation_blocking() did.
struct destroyed_domain {
    bool destroyed = false; ///< it ran, and this call destroyed it
    /// Its address reservation, released (one that cannot be released is
    /// left to a sweep, and not here).
    std::optional<dhcp_reservation> released;
};

/// Destroys domain `uuid` as destroy_domain_blocking() does, and then, the
/// domain gone, releases its address reservation, however young.
inline destroyed_domain destroy_domain_and_reservation_blocking(virConnectPtr connection,
                                                                const std::string& uuid) {
    std::optional<dhcp_reservation> reservation;
    if (domain_handle domain = find_domain(connection, uuid))
        if (char* xml = virDomainGetXMLDesc(domain.get(), 0)) {
            const auto description = describe_domain(xml);
            std::free(xml);
            if (description)
                reservation =
                    find_reservation_blocking(connection, description->bridge, description->mac);
        }
    virResetLastError();
    destroyed_domain outcome;
    outcome.destroyed = destroy_domain_blocking(connection, uuid, nullptr); // throws if it runs on
    if (reservation && release_reservation_quietly(connection, *reservation))
        outcome.released = std::move(reservation);
    return outcome;
}

/// Asks the guest to shut down (an ACPI power button press).
inline void shutdown_domain_blocking(virConnectPtr connection, const std::string& uuid) {
    domain_handle domain = find_domain(connection, uuid);
    if (!domain)
        return; // gone already: its STOPPED event, or the next poll, says so
    if (virDomainShutdown(domain.get()) < 0)
        throw_last_libvirt_error("cannot ask the guest of domain " + uuid + " to shut down");
}

/// Whether the domain still runs.
inline bool domain_active_blocking(virConnectPtr connection, const std::string& uuid) {
    domain_handle domain = find_domain(connection, uuid);
    if (!domain)
        return false;
    const int active = virDomainIsActive(domain.get());
    if (active < 0)
        throw_last_libvirt_error("cannot ask whether domain " + uuid + " runs");
    return active == 1;
}

/// The CPU domain `uuid` has used since it started (for QEMU, the whole
/// process's), or nothing when it is gone or libvirt cannot say.
inline std::optional<std::chrono::nanoseconds> domain_cpu_time(virConnectPtr connection,
                                                               const std::string& uuid) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    virDomainInfo info{};
    if (!domain || virDomainGetInfo(domain.get(), &info) < 0) {
        virResetLastError();
        return std::nullopt;
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(info.cpuTime));
}

/// The IPv4 address leased to `mac` by the DHCP server of the libvirt
/// network on `bridge` (virNetworkGetDHCPLeases): what dnsmasq granted, read
/// through libvirt, for a hypervisor whose status file is not on this host.
/// Only a lease expiring after `expiring_after` (seconds since the epoch)
/// counts.
inline std::optional<std::string> network_lease_address(virConnectPtr connection,
                                                        const std::string& bridge,
                                                        const std::string& mac,
                                                        std::int64_t expiring_after = 0) {
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    if (count < 0) {
        virResetLastError(); // no network driver: the domain's view may still say
        return std::nullopt;
    }
    std::optional<std::string> found;
    for (int i = 0; i < count; ++i) {
        char* name = found ? nullptr : virNetworkGetBridgeName(networks[i]);
        if (name && bridge == name) {
            virNetworkDHCPLeasePtr* leases = nullptr;
            const int leased = virNetworkGetDHCPLeases(networks[i], mac.c_str(), &leases, 0);
            for (int j = 0; j < leased; ++j) {
                if (!found && leases[j]->type == VIR_IP_ADDR_TYPE_IPV4 && leases[j]->ipaddr &&
                    leases[j]->expirytime > expiring_after)
                    found = leases[j]->ipaddr;
                virNetworkDHCPLeaseFree(leases[j]);
            }
            std::free(leases);
        }
        std::free(name);
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    virResetLastError();
    return found;
}

/// When the lease of `mac` on the network of `bridge` that expires last
/// does; 0 when it has none.
inline std::int64_t last_lease_expiry(virConnectPtr connection, const std::string& bridge,
                                      const std::string& mac) {
    std::int64_t last = 0;
    const auto network = dhcp_reservation_impl::network_of_bridge(connection, bridge);
    if (!network)
        return last;
    virNetworkDHCPLeasePtr* leases = nullptr;
    const int leased = virNetworkGetDHCPLeases(network.get(), mac.c_str(), &leases, 0);
    for (int i = 0; i < leased; ++i) {
        last = std::max<std::int64_t>(last, leases[i]->expirytime);
        virNetworkDHCPLeaseFree(leases[i]);
    }
    std::free(leases);
    virResetLastError();
    return last;
}

/// The first IPv4 address of domain `uuid`'s NIC with `mac`, as libvirt
/// knows it from its own lease records, or from a guest agent.
inline std::optional<std::string>
interface_address(virConnectPtr connection, const std::string& uuid, const std::string& mac) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!domain) {
        virResetLastError();
        return std::nullopt; // gone: its STOPPED event says so
    }
    for (const unsigned source :
         {VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT}) {
        virDomainInterfacePtr* interfaces = nullptr;
        const int count = virDomainInterfaceAddresses(domain.get(), &interfaces, source, 0);
        if (count < 0) {
            virResetLastError(); // no agent, or the source does not apply here
            continue;
        }
        std::optional<std::string> found;
        for (int i = 0; i < count; ++i) {
            const virDomainInterfacePtr nic = interfaces[i];
            if (!found && nic->hwaddr && strcasecmp(nic->hwaddr, mac.c_str()) == 0)
                for (unsigned j = 0; j < nic->naddrs && !found; ++j)
                    if (nic->addrs[j].type == VIR_IP_ADDR_TYPE_IPV4 && nic->addrs[j].addr)
                        found = nic->addrs[j].addr;
            virDomainInterfaceFree(nic);
        }
        std::free(interfaces);
        if (found)
            return found;
    }
    return std::nullopt;
}

} // namespace anweddol::detail

#endif
