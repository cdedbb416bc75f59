//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_CREDENTIALS_HPP
#define ANWEDDOL_DETAIL_CREDENTIALS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/random.hpp>

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

/// Overwrites a string's whole buffer, not just its size, with
/// OPENSSL_cleanse (which the optimizer may not remove), then empties it.
inline void cleanse(std::string& s) noexcept {
    if (s.capacity() > 0)
        OPENSSL_cleanse(s.data(), s.capacity());
    s.clear();
}

/// A password held by anweddol: wiped when replaced or destroyed. Copies out
/// through value() are the caller's to look after.
class secret_string {
public:
    secret_string() = default;
    explicit secret_string(std::string value) noexcept
        : value_(std::move(value)) {}
    secret_string(const secret_string& other)
        : value_(other.value_) {}
    secret_string& operator=(const secret_string& other) {
        if (this != &other)
            assign(other.value_);
        return *this;
    }
    ~secret_string() { cleanse(value_); }

    /// Wipes the old value; reuses its buffer when the new one fits, so that
    /// no reallocation leaves an unwiped copy behind.
    void assign(std::string_view value) {
        cleanse(value_);
        value_.assign(value);
    }
    void assign(std::string&& value) noexcept {
        cleanse(value_);
        value_ = std::move(value);
    }

    const std::string& value() const noexcept { return value_; }
    bool empty() const noexcept { return value_.empty(); }

private:
    std::string value_;
};

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

/// `length` characters uniform in [A-Za-z0-9]: bytes of 248 and above are
/// dropped (248 = 4 * 62), so `byte % 62` has no modulo bias. Written into a
/// buffer reserved once, and the random bytes are wiped.
inline std::string generate_password(std::size_t length) {
    if (length == 0 || length > max_password_length)
        throw_error(errc::invalid_argument,
                    "password length must be 1 to " + std::to_string(max_password_length));
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static_assert(256 - 256 % alphabet.size() == 248);
    std::string password;
    password.reserve(length);
    std::array<unsigned char, 64> bytes;
    while (password.size() < length) {
        random_bytes(bytes);
        for (unsigned char byte : bytes)
            if (byte < 248 && password.size() < length)
                password += alphabet[byte % alphabet.size()];
    }
    OPENSSL_cleanse(bytes.data(), bytes.size());
    return password;
}

} // namespace anweddol::detail

#endif
