//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_SNAPSHOT_IMAGE_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_SNAPSHOT_IMAGE_HPP

// A snapshot slot's saved image: the blocking libvirt calls that save a
// guest stopped at its barrier and restore it, and the barrier's protocol.
//
// The barrier (the test ISO's rcS implements it): a guest whose SMBIOS
// family is `anweddol-slot` stops its boot before anything that must differ
// between containers exists (RNG output, clock, host keys, the endpoint's
// secret, the network, sshd), writes `ANWEDDOL BARRIER` on its console and
// waits for a line there. The host saves it while it waits. After each
// restore the host sends `ANWEDDOL-RESUME <64 bytes of fresh entropy in
// hex> <unix time>`: the guest credits the entropy and reseeds its CRNG at
// once, sets its clock, then makes its host keys and secret, takes its
// reserved address and starts sshd, as a cold boot does.

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/detail/random.hpp>

#include <libvirt/libvirt.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// What a slot's guest writes on its console once it waits at the barrier.
inline constexpr std::string_view barrier_announcement = "ANWEDDOL BARRIER";

/// What the slot's first boot shows on its console: whether it reached the
/// barrier, or showed that it never will (a guest that does not implement it
/// goes on to make its host keys and secret).
enum class barrier_sign { none, reached, missing };
inline barrier_sign read_barrier_sign(std::string_view console) {
    if (console.find(barrier_announcement) != std::string_view::npos)
        return barrier_sign::reached;
    if (console.find("-----BEGIN ANWEDDOL ENDPOINT-----") != std::string_view::npos ||
        console.find("-----BEGIN SSH HOST KEY") != std::string_view::npos)
        return barrier_sign::missing;
    return barrier_sign::none;
}

/// The line that lets a restored guest past its barrier.
inline std::string resume_line(std::string_view entropy_hex, std::int64_t unix_seconds) {
    return "ANWEDDOL-RESUME " + std::string(entropy_hex) + " " + std::to_string(unix_seconds) +
           "\n";
}

/// What a snapshot slot's image was saved from: a start that asks for
/// anything else boots the slot again.
struct slot_image_inputs {
    std::string iso_path;
    std::string iso_sha256;
    std::uintmax_t iso_size = 0;
    std::filesystem::file_time_type iso_modified;
    unsigned memory = 0;
    unsigned vcpus = 0;
    std::string bridge;
    std::string domain_type;
    std::string driver_uri;
    // The saved domain's XML comes back with it: its isolation and owner
    // are the image's, whatever a later start planned.
    bool isolated_port = false;
    std::string traffic_filter;
    std::string dhcp_server;
    std::string owner;
};

/// Saves running domain `uuid` to `path` on its host; the domain stops.
inline void save_domain_blocking(virConnectPtr connection, const std::string& uuid,
                                 const std::string& path) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!domain)
        throw_last_libvirt_error("cannot find the snapshot slot's domain " + uuid + " to save it");
    if (virDomainSaveFlags(domain.get(), path.c_str(), nullptr, 0) < 0)
        throw_last_libvirt_error("cannot save the snapshot slot's domain " + uuid + " to " + path);
}

/// A domain restored from a slot's image, with its console read.
struct restored_domain {
    domain_handle domain;
    console_stream console;
};

/// Restores the image at `path` (domain `uuid`), paused, opens its console
/// into `ring`, runs its guest and lets it past its barrier with fresh
/// entropy and the time. Any failure after the restore destroys the domain.
inline restored_domain restore_domain_blocking(virConnectPtr connection, const std::string& path,
                                               const std::string& uuid,
                                               std::shared_ptr<console_ring> ring) {
    if (virDomainRestoreFlags(connection, path.c_str(), nullptr, VIR_DOMAIN_SAVE_PAUSED) < 0)
        throw_last_libvirt_error("cannot restore the snapshot slot's image " + path);
    restored_domain restored;
    restored.domain.reset(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!restored.domain)
        throw_last_libvirt_error("cannot find domain " + uuid + " just restored from " + path);
    try {
        if (!ring) // the barrier's line needs the console, logged or not
            ring = std::make_shared<console_ring>(256);
        restored.console = console_stream::open(connection, restored.domain.get(), ring);
        if (virDomainResume(restored.domain.get()) < 0)
            throw_last_libvirt_error("cannot run the guest just restored from " + path);
        unsigned char entropy[64];
        random_bytes(entropy, sizeof entropy);
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        restored.console.send(
            resume_line(to_hex(entropy, sizeof entropy),
                        std::chrono::duration_cast<std::chrono::seconds>(now).count()));
    } catch (...) {
        const std::exception_ptr failure = std::current_exception();
        virDomainDestroy(restored.domain.get());
        virResetLastError();
        std::rethrow_exception(failure);
    }
    return restored;
}

/// A bridge's spanning tree setting, as far as this host can tell.
struct bridge_stp {
    bool on = false;
    /// The forward delay: a new port listens and learns for twice this
    /// before it forwards (with STP on).
    std::chrono::milliseconds forward_delay{0};
};

/// `bridge`'s STP on a local host (sysfs); std::nullopt where this host
/// cannot read it (a remote hypervisor, or no such bridge here).
inline std::optional<bridge_stp> read_local_bridge_stp(const std::string& bridge) {
    const std::string base = "/sys/class/net/" + bridge + "/bridge/";
    std::ifstream state(base + "stp_state"), delay(base + "forward_delay");
    long stp = 0, centiseconds = 0;
    if (!(state >> stp) || !(delay >> centiseconds))
        return std::nullopt;
    // forward_delay is in USER_HZ (centiseconds).
    return bridge_stp{stp != 0, std::chrono::milliseconds(centiseconds * 10)};
}

/// What STP on `bridge` costs a restored container, for logs and results;
/// empty when it costs nothing.
inline std::string stp_cost_note(const std::string& bridge, const bridge_stp& stp) {
    if (!stp.on || stp.forward_delay.count() == 0)
        return {};
    const auto wait = 2 * stp.forward_delay;
    return "bridge " + bridge + " has STP on: each restored container's new port listens and " +
           "learns for " + std::to_string(wait.count()) +
           " ms before it forwards, which its first DHCP request and SSH wait for; turn STP off " +
           "on a bridge with no other bridge attached (<bridge stp='off' delay='0'/> in its " +
           "libvirt network)";
}

} // namespace anweddol::detail

#endif
