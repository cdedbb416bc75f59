//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_SNAPSHOT_SLOT_HPP
#define ANWEDDOL_SNAPSHOT_SLOT_HPP

#include <anweddol/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace anweddol {

class container_instance;

/// A saved guest that containers are restored from instead of booted: a
/// restore costs about a second where a boot under software emulation
/// costs about eight.
///
/// A slot has a fixed UUID, MAC and reserved address, since a restored
/// domain keeps the saved one's. The first container started with the slot
/// (container_instance::options::snapshot_slot) boots it cold, marked as a
/// slot: its guest stops at the barrier before anything that must differ
/// between containers exists (host keys, the endpoint's secret, RNG output,
/// the clock, the network), and the slot saves it there. That container,
/// and every later one, is then restored from the image, and its guest let
/// past the barrier with fresh entropy and the time: no two containers of a
/// slot share host keys, RNG output or secrets, and none sees what an
/// earlier tenant did (each restores the image taken before any tenant).
/// The guest's ISO must implement the barrier (the test ISO does: see its
/// rcS); one that does not fails the first start with
/// errc::snapshot_barrier_missing.
///
/// One container at a time: a slot is busy from its container's start
/// until that container's domain is gone (errc::snapshot_slot_busy). A
/// container is restored again from the image whenever it starts; the slot
/// boots and saves again when its container's ISO (by SHA-256), memory,
/// vCPUs, bridge or domain type changed.
///
/// A restored domain cannot be made to die with its libvirt connection as
/// a booted one can (virDomainRestoreFlags has no autodestroy): its
/// container destroys it when it goes, and if this process dies first,
/// sweep_containers() finds it by its owner, as it finds a container
/// started without autodestroy.
///
/// The image lives on the hypervisor's host, so slots need a local
/// hypervisor (qemu:///system or qemu:///session). Destroying the slot
/// removes its image and its address reservation. Use it from its
/// executor only.
class snapshot_slot {
public:
    struct options {
        /// Where the saved image goes (libvirtd writes it as root): a
        /// file of about the guest's used memory (120 MB for the test ISO's
        /// 512 MiB guest, raw). Its compression is libvirtd's
        /// `save_image_format` in qemu.conf (libvirt 9.0 takes no format per
        /// call).
        std::filesystem::path image_directory = "/var/lib/libvirt/qemu/save";
        /// How long the first boot may take to reach the barrier.
        std::chrono::seconds barrier_timeout{300};
    };

    /// A slot with a fresh UUID and MAC; nothing happens on the hypervisor
    /// until its first container starts. Throws errc::invalid_argument for
    /// a relative image directory.
    explicit snapshot_slot(boost::asio::any_io_executor ex, options opts);
    explicit snapshot_slot(boost::asio::any_io_executor ex)
        : snapshot_slot(std::move(ex), options{}) {}
    snapshot_slot(const snapshot_slot&) = delete;
    snapshot_slot& operator=(const snapshot_slot&) = delete;
    /// Removes the image and the address reservation, in the background.
    /// A container still running from the slot keeps running (its domain
    /// needs neither); its address goes back to the network.
    ~snapshot_slot();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }
    /// The UUID every container of the slot has: construct them with it.
    const std::string& get_uuid() const noexcept;
    const std::string& get_mac() const noexcept;
    /// Where the image is, once saved.
    std::filesystem::path get_image_path() const;
    /// Whether the slot has an image to restore.
    bool is_saved() const noexcept;
    /// Whether a container holds the slot.
    bool is_in_use() const noexcept;
    /// The address reserved for the slot's MAC, once its first boot made it.
    std::optional<std::string> get_reserved_address() const;
    /// What the bridge's spanning tree costs each restore (its new port
    /// waits twice the forward delay before it forwards), read at the
    /// first boot; empty when it costs nothing or cannot be read here.
    std::string get_network_note() const;

private:
    friend class container_instance;
    struct state;

    boost::asio::any_io_executor executor_;
    std::shared_ptr<state> state_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/snapshot_slot.ipp>
#endif

#endif
