//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_INSTANCE_HPP
#define ANWEDDOL_CONTAINER_INSTANCE_HPP

#include <anweddol/detail/config.hpp>
#include <anweddol/boot_admission.hpp>
#include <anweddol/detail/libvirt_handle.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <libvirt/libvirt.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace anweddol {

class endpoint_shell_instance;

/// Where a container's start_domain() is, for progress displays and timings.
enum class container_phase {
    waiting_for_boot_slot, ///< queued in the boot admission
    creating_domain,       ///< libvirt defines and starts the domain
    waiting_for_address,   ///< the guest boots and asks for a DHCP lease
    address_known,         ///< get_ip() has the address: start_domain is done
};

/// A step of a container's start, reported when it begins.
struct container_progress {
    std::string uuid;
    container_phase phase;
    std::chrono::steady_clock::time_point at;
};

/// A throwaway virtual machine booted from a live ISO: libvirt creates it
/// transient (nothing of it persists after it stops), dnsmasq leases it an
/// address on the NAT bridge, and an endpoint shell administers it over SSH.
///
/// Use it from its executor only (a strand, or one io_context thread):
/// getters and setters are not synchronised. Its libvirt calls run on the
/// connection's worker threads; nothing here blocks the calling thread.
/// Destroying it destroys its running domain in the background.
class container_instance {
public:
    /// anweddol's own settings, beyond the reference's.
    struct options {
        /// The domain type; empty: "kvm" where the host has it, "qemu" (software
        /// emulation) otherwise, or what the driver offers (test:///: "test").
        std::string domain_type;
        /// Where libvirt's dnsmasq keeps <bridge>.status. Watched with inotify
        /// while a local domain waits for its address.
        std::filesystem::path lease_directory = "/var/lib/libvirt/dnsmasq";
        /// How often to ask libvirt for the address (virDomainInterfaceAddresses,
        /// LEASE then AGENT): the only way where no status file exists. 0: never
        /// ask, rely on the status file alone.
        std::chrono::milliseconds address_poll_interval{1000};
        /// stop_domain(false) destroys the domain after this long.
        std::chrono::seconds shutdown_timeout{60};
        /// Recorded in the domain's <metadata>, so that orphans can be told
        /// apart; empty: this host's name.
        std::string owner;
        /// Where boots queue for a place; nullptr: no admission control.
        boot_admission* admission = &boot_admission::global();
        /// Called on the starting coroutine as each phase of start_domain()
        /// begins; must not throw.
        std::function<void(const container_progress&)> on_progress;
    };

    /// A container of `memory` MiB (at least 512) and `vcpus` virtual CPUs (at
    /// least 1) on the bridge `nat_interface_name`. An empty UUID means a fresh
    /// random one. Throws boost::system::system_error: errc::invalid_memory,
    /// errc::invalid_vcpus, or errc::invalid_argument for a malformed UUID or
    /// bridge name.
    explicit container_instance(boost::asio::any_io_executor ex, std::string iso_path = {},
                                std::string container_uuid = {}, unsigned memory = 2048,
                                unsigned vcpus = 2, std::string nat_interface_name = "virbr0");
    container_instance(const container_instance&) = delete;
    container_instance& operator=(const container_instance&) = delete;
    ~container_instance();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// Whether the domain runs, as far as its lifecycle events say: false
    /// once it stopped, was destroyed or crashed.
    bool is_domain_running() const noexcept;
    const std::string& get_nat_interface_name() const noexcept { return nat_interface_name_; }
    /// The domain, or nullptr when there is none; owned by the container.
    virDomainPtr get_domain_descriptor() const noexcept;
    const std::string& get_uuid() const noexcept { return uuid_; }
    const std::string& get_iso_file_path() const noexcept { return iso_path_; }
    /// The domain's MAC, chosen before it booted. Error: errc::domain_not_created.
    std::optional<std::string> get_mac() const;
    /// The domain's address once leased, std::nullopt before.
    /// Error: errc::domain_not_created.
    std::optional<std::string> get_ip() const;
    unsigned get_memory() const noexcept { return memory_; }
    unsigned get_vcpus() const noexcept { return vcpus_; }
    const options& get_options() const noexcept { return options_; }

    /// Adopts `domain` (takes a reference of its own), taken to be running;
    /// nullptr forgets the current one without stopping it.
    void set_domain_descriptor(virDomainPtr domain);
    void set_iso_file_path(std::string iso_path) { iso_path_ = std::move(iso_path); }
    /// Error: errc::invalid_memory below 512 MiB; the old value stays.
    void set_memory(unsigned memory);
    /// Error: errc::invalid_vcpus for 0; the old value stays.
    void set_vcpus(unsigned vcpus);
    /// Error: errc::invalid_argument when it cannot be a network interface name.
    void set_nat_interface_name(std::string nat_interface_name);
    void set_options(options opts) { options_ = std::move(opts); }

    /// async: the lower-case hex SHA-256 of the ISO file, computed on a worker
    /// in constant memory. Errors: errc::iso_path_not_set; the file's
    /// system error when it cannot be read.
    boost::asio::awaitable<std::string> make_iso_file_checksum();

    /// async: boots the domain from the ISO and, with `wait_available`, waits
    /// until it has an address (get_ip()), for at most `wait_max_tryout`
    /// seconds (-1: no limit).
    ///
    /// Checks everything before touching libvirt: errc::domain_already_running
    /// (this container, or a domain of libvirt with its UUID),
    /// errc::iso_path_not_set, a missing or unreadable ISO (its errno),
    /// errc::invalid_argument for a bridge that does not exist. Then waits its
    /// turn in the boot admission, creates the domain transient and watches
    /// for the lease. Errors afterwards: errc::ip_wait_timeout;
    /// errc::domain_not_running when the domain stopped or crashed while
    /// waiting; errc::lease_file_malformed; libvirt's errors. Any failure or
    /// cancellation after the domain was created destroys it before the error
    /// propagates: nothing is left behind.
    boost::asio::awaitable<void> start_domain(bool wait_available = true, int wait_max_tryout = 20,
                                              std::string driver_uri = "qemu:///system");

    /// async: destroys the domain (`destroy`), or asks the guest to shut down
    /// (ACPI) and waits for it to stop, destroying it after
    /// options::shutdown_timeout. Error: errc::domain_not_running. Cancelling
    /// a graceful stop destroys the domain at once.
    boost::asio::awaitable<void> stop_domain(bool destroy = true);

    /// async: an endpoint shell on the container's address, opened unless
    /// `open_shell` is false. Error: errc::domain_not_running when the domain
    /// has no address yet; the shell's errors.
    boost::asio::awaitable<std::shared_ptr<endpoint_shell_instance>>
    create_endpoint_shell(std::string user = "endpoint", std::string password = "endpoint",
                          std::uint16_t port = 22, bool open_shell = true);

private:
    friend class virtualization_interface; // stops stored domains when it goes

    // What lifecycle events change: shared with the event handler, which may
    // run after the container is gone.
    struct runtime {
        // Declared first, destroyed last: the domain's handle must not drop
        // the last reference to libvirt's connection on the io thread.
        std::shared_ptr<hypervisor_connection> connection;
        detail::domain_handle domain;
        bool running = false;
        std::optional<std::string> mac;
        std::optional<std::string> ip;
        hypervisor_connection::subscription watching;
    };

    void forget_domain();
    void report(container_phase phase) const;
    void destroy_in_background() noexcept;

    boost::asio::any_io_executor executor_;
    std::string iso_path_;
    std::string uuid_;
    unsigned memory_;
    unsigned vcpus_;
    std::string nat_interface_name_;
    options options_;
    std::shared_ptr<runtime> runtime_ = std::make_shared<runtime>();
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/container_instance.ipp>
#endif

#endif
