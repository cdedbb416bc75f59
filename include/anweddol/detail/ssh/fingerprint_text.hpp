//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_FINGERPRINT_TEXT_HPP
#define ANWEDDOL_DETAIL_SSH_FINGERPRINT_TEXT_HPP

#include <optional>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// Characters of unpadded base64 in a SHA-256 fingerprint: 32 bytes.
inline constexpr std::size_t sha256_base64_length = 43;

inline bool is_base64_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/// Whether `text` is the base64 of exactly 32 bytes, unpadded and canonical:
/// 43 characters whose last carries 4 bits of the hash and 2 zero bits.
/// Anything else cannot be a SHA-256 hash, so cannot match a key.
inline bool is_sha256_base64(std::string_view text) noexcept {
    if (text.size() != sha256_base64_length)
        return false;
    for (char c : text)
        if (!is_base64_char(c))
            return false;
    constexpr std::string_view low_bits_zero = "AEIMQUYcgkosw048";
    return low_bits_zero.find(text.back()) != std::string_view::npos;
}

/// "SHA256:<43 base64 characters>", the form OpenSSH and libssh print,
/// from what a user may write: with or without the "SHA256:" prefix, with
/// or without the '=' padding. Empty for anything else (an MD5
/// "aa:bb:..." fingerprint, a truncated one, a typo that breaks base64).
inline std::optional<std::string> normalize_sha256_fingerprint(std::string_view text) {
    constexpr std::string_view prefix = "SHA256:";
    if (text.substr(0, prefix.size()) == prefix)
        text.remove_prefix(prefix.size());
    if (text.size() == sha256_base64_length + 1 && text.back() == '=')
        text.remove_suffix(1);
    if (!is_sha256_base64(text))
        return std::nullopt;
    return std::string(prefix) + std::string(text);
}

} // namespace anweddol::detail

#endif
