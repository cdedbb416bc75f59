//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_CREDENTIALS_HPP
#define ANWEDDOL_DETAIL_CREDENTIALS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/random.hpp>
#include <anweddol/detail/secret.hpp>

#include <openssl/crypto.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace anweddol::detail {

/// The longest client password generate_client_ssh_credentials() makes; the
/// container's setup script refuses longer ones too.
inline constexpr std::size_t max_password_length = 4096;

/// The library's older spelling of anweddol::wipe.
inline void cleanse(std::string& s) noexcept {
    wipe(s);
}

/// `user_NNNNN`, NNNNN uniform in [10000, 90000], by rejection sampling.
inline std::string generate_username() {
    constexpr std::uint32_t span = 90000 - 10000 + 1;
    constexpr std::uint32_t limit = UINT32_MAX - UINT32_MAX % span; // multiples of span below
    std::array<unsigned char, 4> bytes;
    while (true) {
        random_bytes(bytes);
        const std::uint32_t n = std::uint32_t{bytes[0]} << 24 | std::uint32_t{bytes[1]} << 16 |
                                std::uint32_t{bytes[2]} << 8 | bytes[3];
        if (n < limit)
            return "user_" + std::to_string(10000 + n % span);
    }
}

/// Replaces `password` with `length` characters uniform in [A-Za-z0-9]:
/// bytes of 248 and above are dropped (248 = 4 * 62), so `byte % 62` has no
/// modulo bias. Written in place, into a buffer reserved once (the old value
/// wiped first), and the random bytes are wiped: a password returned by
/// value would leave its bytes behind in the moved-from temporary when it is
/// short enough to live inside the std::string object.
inline void generate_password(std::string& password, std::size_t length) {
    if (length == 0 || length > max_password_length)
        throw_error(errc::invalid_argument,
                    "password length must be 1 to " + std::to_string(max_password_length));
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static_assert(256 - 256 % alphabet.size() == 248);
    wipe(password);
    password.reserve(length);
    std::array<unsigned char, 64> bytes;
    while (password.size() < length) {
        random_bytes(bytes);
        for (unsigned char byte : bytes)
            if (byte < 248 && password.size() < length)
                password += alphabet[byte % alphabet.size()];
    }
    OPENSSL_cleanse(bytes.data(), bytes.size());
}

/// The same, as a new string: a caller that moves it on should use the
/// form above, which writes where the password is to stay.
inline std::string generate_password(std::size_t length) {
    std::string password;
    generate_password(password, length);
    return password;
}

} // namespace anweddol::detail

#endif
