//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ERRC_HPP
#define ANWEDDOL_DETAIL_ERRC_HPP

#include <anweddol/detail/config.hpp>

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace anweddol {

/// The errors anweddol reports itself, as `boost::system::error_code`s in
/// `anweddol::error_category()`. Errors that libvirt or libssh report travel
/// in categories of their own, with the daemon's or peer's message.
enum class errc : int {
    domain_not_created = 1,       ///< The container has no domain yet: start it first.
    domain_not_running,           ///< The operation needs a running domain.
    domain_already_running,       ///< The container's domain is already running.
    iso_path_not_set,             ///< No ISO file path was set on the container.
    invalid_memory,               ///< Memory below the 512 MiB minimum.
    invalid_vcpus,                ///< Zero virtual CPUs.
    invalid_argument,             ///< An argument is malformed; the message says which.
    container_already_stored,     ///< A container with this UUID is already stored.
    ip_wait_timeout,              ///< The container got no address within the budget.
    shell_not_open,               ///< The endpoint shell is not open.
    shell_already_open,           ///< The endpoint shell is already open.
    endpoint_credentials_not_set, ///< No endpoint credentials to log in with.
    client_credentials_not_set,   ///< No client credentials to hand over.
    administration_failed,        ///< The container's setup script failed.
    lease_file_malformed,         ///< dnsmasq's lease status file is not what it should be.
    authentication_failed,        ///< The SSH server refused the username or password.
    host_key_mismatch,            ///< The SSH server's host key is not the expected one.
    output_limit_exceeded,        ///< A remote command printed more than its output cap.
    unexpected_error,   ///< Something other than a system_error was thrown; see the diagnostics.
    foreign_event_loop, ///< The program registered a libvirt event loop of its own.
    domain_paused,      ///< The guest paused on its own while starting (an I/O or emulation error).
    domain_crashed,     ///< The guest crashed or its kernel panicked while starting.
    over_capacity,      ///< No place for another container now; the diagnostics say which limit.
    pool_closed,        ///< The container pool was shut down or destroyed.
    host_down,          ///< The container's hypervisor host went down; the message names it.
    no_host_available,  ///< No hypervisor host of the pool can take the container now.
    /// The host cannot apply the network isolation asked for as required;
    /// the message says what it lacks.
    network_isolation_unavailable,
    console_host_keys_missing, ///< The guest announced no SSH host keys on its console, and they
                               ///< were required.
    /// The guest was leased another address than the one reserved for it,
    /// the only one its traffic filter lets through; the message says both.
    reserved_address_not_leased,
    /// The container's snapshot slot holds another container's domain:
    /// one slot restores one container at a time.
    snapshot_slot_busy,
    /// A snapshot slot's first boot never reached the barrier: its ISO does
    /// not implement it (the message says what its console showed instead).
    snapshot_barrier_missing,
};

/// The category of `anweddol::errc`; its name is "anweddol". Its timeouts
/// (errc::ip_wait_timeout) compare equal to `std::errc::timed_out`, and
/// errc::over_capacity to `std::errc::resource_unavailable_try_again`.
ANWEDDOL_DECL const boost::system::error_category& error_category() noexcept;

/// The category of libvirt's error codes (`virErrorNumber`, such as
/// VIR_ERR_NO_DOMAIN); its name is "libvirt". libvirt's own message for the
/// failed call travels in the diagnostics beside the code.
ANWEDDOL_DECL const boost::system::error_category& libvirt_category() noexcept;

/// The category of libssh's session error codes (SSH_REQUEST_DENIED,
/// SSH_FATAL); its name is "libssh". libssh's own message (ssh_get_error)
/// travels in the diagnostics beside the code.
ANWEDDOL_DECL const boost::system::error_category& libssh_category() noexcept;

/// Makes `errc` values usable wherever an `error_code` is expected.
inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

} // namespace anweddol

template <>
struct boost::system::is_error_code_enum<anweddol::errc> : std::true_type {};

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/error.ipp>
#endif

#endif
