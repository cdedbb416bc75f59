//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_HOST_PROBE_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_HOST_PROBE_HPP

#include <anweddol/detail/libvirt/call.hpp>

#include <libvirt/libvirt.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>

namespace anweddol::detail {

// What a container needs to know of the host its hypervisor runs on. The
// functions that take a virConnectPtr block: they run on a connection's lane.

/// A URI of a hypervisor on this host, whose bridges this process can see.
inline bool is_local_uri(std::string_view uri) {
    return uri.find(":///") != std::string_view::npos && !uri.starts_with("test:");
}

/// Where dnsmasq's status file can be watched: a local hypervisor, or the
/// test driver (whose tests write the file themselves).
inline bool has_local_status_file(std::string_view uri) {
    return is_local_uri(uri) || uri.starts_with("test:");
}

inline std::string host_name() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0)
        return "unknown-host";
    return name;
}

/// What placement needs to know of a hypervisor host.
struct host_resources {
    /// virNodeGetFreeMemory; std::nullopt where the driver cannot say
    /// (test:/// described by a file).
    std::optional<std::uint64_t> free_memory_mib;
    unsigned cpus = 0; ///< virNodeGetInfo's active CPUs
};

inline host_resources read_host_resources(virConnectPtr connection, const std::string& uri) {
    host_resources resources;
    virNodeInfo info{};
    if (virNodeGetInfo(connection, &info) < 0)
        throw_last_libvirt_error("cannot read the CPUs of " + uri + " (virNodeGetInfo)");
    resources.cpus = info.cpus;
    // 0 is also its error value: only a recorded error makes it one.
    virResetLastError();
    const unsigned long long bytes = virNodeGetFreeMemory(connection);
    if (bytes != 0 || virGetLastError() == nullptr)
        resources.free_memory_mib = bytes / (1024 * 1024);
    virResetLastError();
    return resources;
}

/// The domain type to use where the caller chose none: kvm where the host
/// has it, software emulation otherwise, or the driver's own type.
inline std::string automatic_domain_type(virConnectPtr connection) {
    char* capabilities = virConnectGetCapabilities(connection);
    if (!capabilities)
        throw_last_libvirt_error("cannot read the hypervisor's capabilities");
    const std::string text = capabilities;
    std::free(capabilities);
    for (const char* type : {"kvm", "qemu"})
        if (text.find(std::string("<domain type='") + type + "'") != std::string::npos)
            return type;
    const std::string marker = "<domain type='";
    if (const auto at = text.find(marker); at != std::string::npos) {
        const auto start = at + marker.size();
        return text.substr(start, text.find('\'', start) - start);
    }
    return "qemu";
}

/// An active libvirt network's bridge, or (for a local hypervisor) any
/// interface of this host with that name.
inline bool bridge_exists(virConnectPtr connection, const std::string& uri,
                          const std::string& bridge) {
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    if (count < 0)
        virResetLastError();
    bool found = false;
    for (int i = 0; i < count; ++i) {
        if (char* name = virNetworkGetBridgeName(networks[i])) {
            found = found || bridge == name;
            std::free(name);
        } else {
            virResetLastError();
        }
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    if (!found && is_local_uri(uri)) {
        std::error_code ignored;
        found = std::filesystem::exists("/sys/class/net/" + bridge, ignored);
    }
    return found;
}

} // namespace anweddol::detail

#endif
