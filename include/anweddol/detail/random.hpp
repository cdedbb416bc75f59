//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_RANDOM_HPP
#define ANWEDDOL_DETAIL_RANDOM_HPP

#include <boost/system/errc.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <string>

namespace anweddol::detail {

// The one place anweddol draws randomness and spells bytes in hex. Every
// random value it makes (UUIDs, MACs, usernames, passwords) must be
// unguessable, so all of them come from OpenSSL's CSPRNG, never <random>.

/// Fills `size` bytes at `data` from OpenSSL's CSPRNG; throws
/// resource_unavailable_try_again if it has no entropy.
inline void random_bytes(unsigned char* data, std::size_t size) {
    while (size > 0) {
        const std::size_t chunk = std::min<std::size_t>(size, std::numeric_limits<int>::max());
        if (RAND_bytes(data, static_cast<int>(chunk)) != 1)
            throw boost::system::system_error(
                make_error_code(boost::system::errc::resource_unavailable_try_again),
                "OpenSSL's RAND_bytes failed: the random generator has no entropy");
        data += chunk;
        size -= chunk;
    }
}

template <std::size_t N>
void random_bytes(std::array<unsigned char, N>& out) {
    random_bytes(out.data(), N);
}

template <std::size_t N>
std::array<unsigned char, N> random_array() {
    std::array<unsigned char, N> bytes{};
    random_bytes(bytes);
    return bytes;
}

/// Appends `byte` as two lower-case hex digits.
inline void append_hex(std::string& out, unsigned char byte) {
    static constexpr char digits[] = "0123456789abcdef";
    out += digits[byte >> 4];
    out += digits[byte & 0x0f];
}

/// `size` bytes as lower-case hex.
inline std::string to_hex(const unsigned char* data, std::size_t size) {
    std::string text;
    text.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i)
        append_hex(text, data[i]);
    return text;
}

} // namespace anweddol::detail

#endif
