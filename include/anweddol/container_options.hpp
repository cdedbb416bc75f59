//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_OPTIONS_HPP
#define ANWEDDOL_CONTAINER_OPTIONS_HPP

// What one start or stop of a container takes, and the progress it reports.

#include <anweddol/detail/config.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>

namespace anweddol {

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

/// How one start_domain() call goes; the positional form's arguments, with
/// a duration for the address wait, and a progress hook of its own.
struct start_options {
    /// Wait until the domain has an address (get_ip()).
    bool wait_available = true;
    /// At most this long for the address; std::nullopt: no limit.
    std::optional<std::chrono::steady_clock::duration> address_timeout = std::chrono::seconds(20);
    std::string driver_uri = "qemu:///system";
    /// The domain type; empty: the container's options::domain_type.
    std::string domain_type;
    /// Called on the starting coroutine as each phase begins, instead of
    /// the container's options::on_progress; must not throw.
    std::function<void(const container_progress&)> on_progress;
};

/// How stop_domain() stops the domain.
enum class stop_mode {
    destroy,  ///< at once (virDomainDestroy), as the reference's default
    graceful, ///< an ACPI shutdown, destroyed after the shutdown timeout
};

struct stop_options {
    stop_mode mode = stop_mode::destroy;
    /// For stop_mode::graceful: destroy the domain after this long.
    std::chrono::steady_clock::duration shutdown_timeout = std::chrono::seconds(60);
};

namespace detail {
// A completion token, not one of the positional arguments it would be
// taken for (a captureless lambda converts to bool).
template <class T>
concept lone_token =
    !std::is_arithmetic_v<std::decay_t<T>> && !std::is_convertible_v<T, std::string> &&
    !std::is_same_v<std::decay_t<T>, start_options> &&
    !std::is_same_v<std::decay_t<T>, stop_options>;
} // namespace detail

} // namespace anweddol

#endif
