//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_CONTAINER_CHECKS_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_CONTAINER_CHECKS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/domain_identity.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace anweddol::detail {

// A container's settings are checked when they are set, so that a bad one
// fails where it was given, with nothing changed.

/// What Linux accepts as an interface name, without the characters that
/// would be trouble in a path or a shell: 1 to 15 of [A-Za-z0-9_.-].
inline bool is_interface_name(std::string_view name) {
    return !name.empty() && name.size() <= 15 && name != "." && name != ".." &&
           std::ranges::all_of(name, [](unsigned char c) {
               return std::isalnum(c) || c == '_' || c == '.' || c == '-';
           });
}

/// The UUID in lower case; a fresh random one for an empty string.
inline std::string normalized_uuid(std::string uuid) {
    if (uuid.empty())
        return random_uuid();
    if (!is_canonical_uuid(uuid))
        throw_error(errc::invalid_argument,
                    "container UUID '" + uuid + "' is not a UUID in 8-4-4-4-12 hexadecimal form");
    std::ranges::transform(uuid, uuid.begin(), [](unsigned char c) { return std::tolower(c); });
    return uuid;
}

inline void check_memory(unsigned memory) {
    if (memory < 512)
        throw_error(errc::invalid_memory, "memory of " + std::to_string(memory) +
                                              " MiB is below the 512 MiB a container needs");
}

inline void check_vcpus(unsigned vcpus) {
    if (vcpus == 0)
        throw_error(errc::invalid_vcpus, "a container needs at least 1 virtual CPU");
}

inline void check_interface_name(const std::string& name) {
    if (!is_interface_name(name))
        throw_error(errc::invalid_argument, "'" + name +
                                                "' cannot be a network interface name (1 to 15 of "
                                                "A-Z a-z 0-9 _ . -)");
}

} // namespace anweddol::detail

#endif
