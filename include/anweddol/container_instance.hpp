//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_INSTANCE_HPP
#define ANWEDDOL_CONTAINER_INSTANCE_HPP

#include <anweddol/boot_admission.hpp>
#include <anweddol/container_options.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/network_isolation.hpp>
#include <anweddol/snapshot_slot.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>

#include <libvirt/libvirt.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

namespace anweddol {

class endpoint_shell_instance;
namespace detail {
struct console_access;
}

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
        /// How often, at most, to ask libvirt for the address: the network's
        /// DHCP leases (virNetworkGetDHCPLeases) for the container's MAC, then
        /// virDomainInterfaceAddresses (LEASE, then AGENT). The only way for a
        /// remote hypervisor, whose status file is not on this host: the first
        /// questions come faster (250 ms, doubling up to this). 0: never ask,
        /// rely on the status file alone.
        std::chrono::milliseconds address_poll_interval{1000};
        /// stop_domain(false) destroys the domain after this long.
        std::chrono::seconds shutdown_timeout{60};
        /// libvirt destroys the domain when the connection that created it
        /// closes: when this process exits, even by SIGKILL, no domain
        /// outlives it (VIR_DOMAIN_START_AUTODESTROY). Turn it off for
        /// containers that must outlive a restart of this process, and
        /// find them again with sweep_containers(). A restart of libvirtd
        /// itself keeps the domains running, but libvirt forgets that they
        /// were to die with their connection (see the README).
        bool autodestroy = true;
        /// How much of the guest's serial console the container keeps (the
        /// last bytes), for get_console_log() and the diagnostics of a
        /// failed start. 0: the console is not read.
        std::size_t console_log_bytes = 8192;
        /// Recorded in the domain's <metadata>, so that orphans can be told
        /// apart; empty: this host's name.
        std::string owner;
        /// Where boots queue for a place; nullptr: the io_context's own,
        /// `runtime::of(executor).admission()`.
        boot_admission* admission = nullptr;
        /// Boot without waiting for a place at all.
        bool bypass_admission = false;
        /// Called on the starting coroutine as each phase of start_domain()
        /// begins, unless the call's start_options has a hook; must not throw.
        std::function<void(const container_progress&)> on_progress;
        /// How the guest is cut off from the other guests of its bridge: by
        /// default it can neither reach them nor impersonate them or the
        /// gateway (see network_isolation_options). What a start applied is
        /// get_network_isolation().
        network_isolation_options isolation;
        /// Reserve the guest's address on its libvirt network before the
        /// guest runs (a <host> entry in the network's DHCP section, live
        /// only, removed when the domain goes): dnsmasq then answers its
        /// first DHCP request at once, where it pings a dynamic address for
        /// 3 s before offering it. Where the bridge has no libvirt network,
        /// no address is free or the network takes no updates, the guest
        /// gets a dynamic lease, as with this off. What was reserved is
        /// get_reserved_address().
        bool reserve_address = true;
        /// Restore the container from this snapshot slot instead of booting
        /// it (see snapshot_slot): construct the container with the slot's
        /// UUID. Its first start boots the slot and saves it at the
        /// barrier, then restores; later ones restore at once.
        /// was_restored() says which a start did. nullptr: a cold boot.
        std::shared_ptr<anweddol::snapshot_slot> slot;
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
    /// Whether the last start restored the domain from a snapshot slot
    /// (options::slot) rather than booting it.
    bool was_restored() const noexcept { return state_->restored; }
    const std::string& get_iso_file_path() const noexcept { return iso_path_; }
    /// The domain's MAC, chosen before it booted. Error: errc::domain_not_created.
    std::optional<std::string> get_mac() const;
    /// The domain's address once leased, std::nullopt before.
    /// Error: errc::domain_not_created.
    std::optional<std::string> get_ip() const;
    /// The address reserved for the guest on its network before it booted
    /// (options::reserve_address); std::nullopt when none was.
    std::optional<std::string> get_reserved_address() const;
    /// What the guest wrote on its serial console (the last
    /// options::console_log_bytes bytes, as text): its boot log. Kept after
    /// the domain stopped, until the next start. Empty where the hypervisor
    /// has no consoles (test:///). The password line of an endpoint block
    /// (the endpoint account's per-boot password) reads "password [redacted]".
    std::string get_console_log() const;
    /// The type the domain was started with ("kvm", "qemu", "test"); empty
    /// before the first start.
    const std::string& get_domain_type() const noexcept { return state_->domain_type; }
    /// Why that type: the caller's choice, or how the automatic choice went
    /// ("automatic: KVM guests pause on this host, so software emulation").
    const std::string& get_domain_type_choice() const noexcept {
        return state_->domain_type_choice;
    }
    /// What the last start applied of options::isolation, and what the host
    /// could not give where that was allowed (if_available); all false
    /// before the first start.
    const network_isolation& get_network_isolation() const noexcept { return state_->isolation; }
    unsigned get_memory() const noexcept { return memory_; }
    unsigned get_vcpus() const noexcept { return vcpus_; }
    const options& get_options() const noexcept { return options_; }

    /// Adopts `domain` (takes a reference of its own), taken to be running;
    /// nullptr forgets the current one without stopping it (nor releasing
    /// its address reservation).
    void set_domain_descriptor(virDomainPtr domain);
    void set_iso_file_path(std::string iso_path) { iso_path_ = std::move(iso_path); }
    /// Error: errc::invalid_memory below 512 MiB; the old value stays.
    void set_memory(unsigned memory);
    /// Error: errc::invalid_vcpus for 0; the old value stays.
    void set_vcpus(unsigned vcpus);
    /// Error: errc::invalid_argument when it cannot be a network interface name.
    void set_nat_interface_name(std::string nat_interface_name);
    void set_options(options opts) { options_ = std::move(opts); }

    // Every async operation below takes a completion token last (default:
    // `co_await` returns the result and throws error_with_diagnostics) and
    // completes with `(error_code)` or `(error_code, result)`; the forms
    // with `diagnostics&` fill it before completing. They run on the
    // awaiting coroutine's executor (the container's executor for other
    // tokens); use one container from one thread at a time.

    /// async: the lower-case hex SHA-256 of the ISO file, computed on a worker
    /// in constant memory. Errors: errc::iso_path_not_set; the file's
    /// system error when it cannot be read. Cancelling it before the worker
    /// starts completes with operation_aborted.
    template <class CompletionToken = default_completion_token>
    auto make_iso_file_checksum(CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, checksum_here(), nullptr,
                                          std::forward<CompletionToken>(token));
    }

    /// async: boots the domain from the ISO and, with `wait_available`, waits
    /// until it has an address (get_ip()), for at most `wait_max_tryout`
    /// seconds (-1: no limit). The reference's form of start_domain(start_options).
    template <class CompletionToken = default_completion_token>
    auto start_domain(bool wait_available = true, int wait_max_tryout = 20,
                      std::string driver_uri = "qemu:///system", CompletionToken&& token = {}) {
        return detail::initiate_coroutine(
            executor_, start_positional(wait_available, wait_max_tryout, std::move(driver_uri)),
            nullptr, std::forward<CompletionToken>(token));
    }
    template <detail::lone_token CompletionToken>
    auto start_domain(CompletionToken&& token) {
        return start_domain(start_options{}, std::forward<CompletionToken>(token));
    }

    /// async: boots the domain as `opts` says.
    ///
    /// Checks everything before touching libvirt: errc::domain_already_running
    /// (this container, or a domain of libvirt with its UUID),
    /// errc::iso_path_not_set, a missing or unreadable ISO (its errno),
    /// errc::invalid_argument for a bridge that does not exist or a negative
    /// timeout. Then waits its turn in the boot admission, creates the domain
    /// transient and watches for the lease. Errors afterwards:
    /// errc::ip_wait_timeout (equal to std::errc::timed_out);
    /// errc::domain_not_running when the domain stopped while waiting,
    /// errc::domain_crashed when it crashed or panicked, errc::domain_paused
    /// when it paused on its own (an I/O error, KVM's emulation failure),
    /// each at once, with the reason; errc::lease_file_malformed; libvirt's
    /// errors, with its message in the diagnostics. The diagnostics of a
    /// failure after the domain was created carry the guest's console log.
    /// Any failure or cancellation after the domain was created destroys it
    /// before the operation completes: nothing is left behind.
    ///
    /// With no domain type given, a host whose KVM guests pause (it has
    /// /dev/kvm, but cannot run them) is noticed at the first such boot,
    /// which starts again with qemu; get_domain_type_choice() says so.
    template <class CompletionToken = default_completion_token>
    auto start_domain(start_options opts, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, start_here(std::move(opts)), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <class CompletionToken = default_completion_token>
    auto start_domain(start_options opts, diagnostics& diag, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, start_here(std::move(opts)), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async: takes over the running domain of libvirt at `driver_uri`
    /// whose UUID is this container's, such as one a process that was
    /// restarted left behind (see sweep_containers(), which finds them by
    /// owner). Its MAC, address (when it has a lease), memory, vCPUs, ISO
    /// path and bridge are read from libvirt; from then on the container
    /// watches, stops and destroys it as its own, and reads its console
    /// from now on. Errors: errc::domain_already_running when this container
    /// has a domain; errc::domain_not_running when libvirt runs none with
    /// this UUID; errc::invalid_argument when that domain is not shaped like
    /// a container; libvirt's errors.
    template <class CompletionToken = default_completion_token>
    auto adopt_domain(std::string driver_uri = "qemu:///system", CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, adopt_here(std::move(driver_uri)), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <detail::lone_token CompletionToken>
    auto adopt_domain(CompletionToken&& token) {
        return adopt_domain("qemu:///system", std::forward<CompletionToken>(token));
    }

    /// async: destroys the domain (`destroy`), or shuts it down gracefully
    /// within options::shutdown_timeout. The reference's form of
    /// stop_domain(stop_options).
    template <class CompletionToken = default_completion_token>
    auto stop_domain(bool destroy = true, CompletionToken&& token = {}) {
        stop_options opts{destroy ? stop_mode::destroy : stop_mode::graceful,
                          options_.shutdown_timeout};
        return stop_domain(std::move(opts), std::forward<CompletionToken>(token));
    }
    template <detail::lone_token CompletionToken>
    auto stop_domain(CompletionToken&& token) {
        return stop_domain(stop_options{}, std::forward<CompletionToken>(token));
    }

    /// async: destroys the domain, or asks the guest to shut down (ACPI) and
    /// waits for it to stop, destroying it after `opts.shutdown_timeout`.
    /// Every libvirt call goes through the connection's lanes, looking the
    /// domain up by UUID (so it also works after libvirtd restarted). Error:
    /// errc::domain_not_running. Cancelling a graceful stop destroys the
    /// domain at once; a destroy, once started, is not cancelled.
    template <class CompletionToken = default_completion_token>
    auto stop_domain(stop_options opts, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, stop_here(opts), nullptr,
                                          std::forward<CompletionToken>(token));
    }
    template <class CompletionToken = default_completion_token>
    auto stop_domain(stop_options opts, diagnostics& diag, CompletionToken&& token = {}) {
        return detail::initiate_coroutine(executor_, stop_here(opts), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async: an endpoint shell on the container's address, opened unless
    /// `open_shell` is false; completes with
    /// `(error_code, std::shared_ptr<endpoint_shell_instance>)`. Error:
    /// errc::domain_not_running when the domain has no address yet; the
    /// shell's errors (then no shell is returned, and none stays open).
    template <class CompletionToken = default_completion_token>
    auto create_endpoint_shell(std::string user = "endpoint", std::string password = "endpoint",
                               std::uint16_t port = 22, bool open_shell = true,
                               CompletionToken&& token = {}) {
        return detail::initiate_coroutine(
            executor_, shell_here(std::move(user), std::move(password), port, open_shell), nullptr,
            std::forward<CompletionToken>(token));
    }
    template <detail::lone_token CompletionToken>
    auto create_endpoint_shell(CompletionToken&& token) {
        return create_endpoint_shell("endpoint", "endpoint", 22, true,
                                     std::forward<CompletionToken>(token));
    }

private:
    friend class virtualization_interface; // stops stored domains when it goes
    friend struct detail::console_access;  // what the console announced, for provisioning

    // What lifecycle events change: shared with the event handler, which may
    // run after the container is gone.
    struct domain_state {
        // Declared first, destroyed last: the domain's handle must not drop
        // the last reference to libvirt's connection on the io thread.
        std::shared_ptr<hypervisor_connection> connection;
        detail::domain_handle domain;
        bool running = false;
        std::optional<std::string> mac;
        std::optional<std::string> ip;
        hypervisor_connection::subscription watching;
        // The console log outlives the domain: a failed start reports it.
        std::shared_ptr<detail::console_ring> console;
        detail::console_stream console_stream;
        std::string domain_type;
        std::string domain_type_choice;
        network_isolation isolation;
        std::string traffic_filter; // the nwfilter the next boot references
        std::string dhcp_server;    // and the one DHCP server it learns from
        // The guest's address, reserved on its network before it booted;
        // released once the domain is gone.
        std::optional<detail::dhcp_reservation> reservation;
        // The hold on the snapshot slot the domain was restored from; goes
        // once the domain is gone.
        std::shared_ptr<void> slot_claim;
        bool restored = false;
    };

    boost::asio::awaitable<std::string> checksum_here();
    boost::asio::awaitable<void> start_positional(bool wait_available, int wait_max_tryout,
                                                  std::string driver_uri);
    boost::asio::awaitable<void> start_here(start_options opts);
    // `cpu_heavy_place`, when given, is the boot's admission place, to give
    // back once the guest is no longer CPU-heavy.
    // With `slot_claim`, restores the domain from options_.slot's image.
    boost::asio::awaitable<void> boot_here(std::shared_ptr<hypervisor_connection> connection,
                                           const start_options& opts, std::string domain_type,
                                           boot_admission::ticket* cpu_heavy_place,
                                           std::shared_ptr<void> slot_claim = nullptr);
    // A start from options_.slot: boots and saves the slot where its image
    // does not fit this start, then restores it.
    boost::asio::awaitable<void> restore_here(std::shared_ptr<hypervisor_connection> connection,
                                              const start_options& opts, std::string domain_type,
                                              std::shared_ptr<void> slot_claim);
    boost::asio::awaitable<void> save_slot_here(std::shared_ptr<hypervisor_connection> connection,
                                                const start_options& opts, std::string domain_type);
    boost::asio::awaitable<void> stop_here(stop_options opts);
    boost::asio::awaitable<void> adopt_here(std::string driver_uri);
    // Keeps `running` and the address in step with the domain's lifecycle.
    // With `from_start`, ignores what comes before the domain's STARTED (a
    // restored domain's UUID is its slot's, and so were earlier domains').
    void watch_lifecycle(const std::shared_ptr<hypervisor_connection>& connection,
                         bool from_start = false);
    boost::asio::awaitable<void> destroy_here();
    boost::asio::awaitable<std::shared_ptr<endpoint_shell_instance>>
    shell_here(std::string user, std::string password, std::uint16_t port, bool open_shell);

    void forget_domain();
    void destroy_in_background() noexcept;
    // Removes the address reservation, on a worker thread, if there is one.
    void release_reservation_in_background() noexcept;
    anweddol::runtime& get_runtime() const;

    boost::asio::any_io_executor executor_;
    std::string iso_path_;
    std::string uuid_;
    unsigned memory_;
    unsigned vcpus_;
    std::string nat_interface_name_;
    options options_;
    std::shared_ptr<domain_state> state_ = std::make_shared<domain_state>();
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/container_instance.ipp>
#endif

#endif
