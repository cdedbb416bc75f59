//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_DOMAIN_IDENTITY_HPP
#define ANWEDDOL_DETAIL_DOMAIN_IDENTITY_HPP

#include <anweddol/detail/random.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace anweddol::detail {

// A container's UUID names its domain and its MAC finds its lease, so both
// come from OpenSSL's CSPRNG: a guessable or colliding one would let one
// container be mistaken for another.

/// A random (version 4, RFC 4122 variant) UUID in lower-case canonical text.
inline std::string random_uuid() {
    auto bytes = random_array<16>();
    bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);
    bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);
    std::string text;
    text.reserve(36);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text += '-';
        append_hex(text, bytes[i]);
    }
    return text;
}

/// Whether `text` is a UUID in canonical 8-4-4-4-12 hexadecimal form.
inline bool is_canonical_uuid(std::string_view text) noexcept {
    if (text.size() != 36)
        return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

/// A random MAC in QEMU's locally administered 52:54:00 range.
inline std::string random_mac() {
    const auto tail = random_array<3>();
    std::string mac = "52:54:00";
    for (unsigned char byte : tail) {
        mac += ':';
        append_hex(mac, byte);
    }
    return mac;
}

} // namespace anweddol::detail

#endif
