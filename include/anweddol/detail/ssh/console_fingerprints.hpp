//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONSOLE_FINGERPRINTS_HPP
#define ANWEDDOL_DETAIL_SSH_CONSOLE_FINGERPRINTS_HPP

// The lines of what a guest announces on its serial console, one line at a
// time (detail/ssh/console_scanner.hpp turns the console's bytes into
// lines): above all the SSH host key fingerprints, in cloud-init's format
// (tools/write-ssh-key-fingerprints, piped through `logger -s -t ec2`):
//
//   <14>Nov 29 16:52:57 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
//   <14>Nov 29 16:52:57 ec2: 256 SHA256:<43 base64> root@host (ED25519)
//   <14>Nov 29 16:52:57 ec2: -----END SSH HOST KEY FINGERPRINTS-----
//
// Each line is `ssh-keygen -l` output behind a prefix that depends on the
// logger and on what relays it to the console (nothing, "ec2: ", a syslog
// header, "[  12.3] cloud-init[612]: "), so markers are found at the end of
// a line and fingerprints by their own shape, whatever precedes them.
//
// The console is untrusted: anything that is not exactly a SHA-256
// fingerprint line is skipped; a key missed that way can only make the pin
// stricter.

#include <anweddol/detail/ssh/fingerprint_text.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::detail {

/// One host key as the console announced it.
struct console_host_key {
    std::string type;        ///< as ssh-keygen prints it: "ED25519", "ECDSA", "RSA", ...
    std::string fingerprint; ///< "SHA256:<43 base64 characters>"

    friend bool operator==(const console_host_key&, const console_host_key&) = default;
};

namespace console_fingerprints_detail {

inline constexpr std::string_view begin_marker = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
inline constexpr std::string_view end_marker = "-----END SSH HOST KEY FINGERPRINTS-----";

inline bool ends_with(std::string_view text, std::string_view suffix) noexcept {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

inline bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

/// Whether `type` can be a key type as ssh-keygen -l prints it
/// ("ED25519", "ECDSA-SK", "RSA").
inline bool is_key_type(std::string_view type) noexcept {
    if (type.empty() || type.size() > 32)
        return false;
    return std::all_of(type.begin(), type.end(),
                       [](char c) { return (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-'; });
}

/// A line of `ssh-keygen -l`: "<bits> SHA256:<hash> <comment> (<TYPE>)",
/// behind any prefix. Empty for anything else.
inline std::optional<console_host_key> parse_fingerprint_line(std::string_view line) {
    constexpr std::string_view tag = "SHA256:";
    // The type is the line's last word, in parentheses.
    if (line.empty() || line.back() != ')')
        return std::nullopt;
    const std::size_t open = line.rfind('(');
    if (open == std::string_view::npos || open == 0 || line[open - 1] != ' ')
        return std::nullopt;
    const std::string_view type = line.substr(open + 1, line.size() - open - 2);
    if (!is_key_type(type))
        return std::nullopt;
    for (std::size_t at = line.find(tag); at != std::string_view::npos && at < open;
         at = line.find(tag, at + 1)) {
        // Before it: a space, the key's size in bits, and a space or the
        // start of the line.
        std::size_t digits = at;
        if (digits == 0 || line[digits - 1] != ' ')
            continue;
        --digits;
        std::size_t first_digit = digits;
        while (first_digit > 0 && is_digit(line[first_digit - 1]))
            --first_digit;
        if (first_digit == digits || digits - first_digit > 5)
            continue;
        if (first_digit > 0 && line[first_digit - 1] != ' ')
            continue;
        // The hash, then a space and the comment (ssh-keygen prints "no
        // comment" for none).
        std::size_t hash = at + tag.size();
        std::size_t end = hash;
        while (end < line.size() && is_base64_char(line[end]))
            ++end;
        const std::string_view base64 = line.substr(hash, end - hash);
        if (end < line.size() && line[end] == '=')
            ++end;
        if (!is_sha256_base64(base64) || end + 1 >= open || line[end] != ' ')
            continue;
        return console_host_key{std::string(type), std::string(tag) + std::string(base64)};
    }
    return std::nullopt;
}

/// The endpoint block anweddol's guest prints right before its host-key
/// block (see console_scanner), with the same kind of prefix allowed before
/// its markers but none before its lines.
inline constexpr std::string_view endpoint_begin_marker = "-----BEGIN ANWEDDOL ENDPOINT-----";
inline constexpr std::string_view endpoint_end_marker = "-----END ANWEDDOL ENDPOINT-----";
inline constexpr std::size_t min_endpoint_password = 20;
inline constexpr std::size_t max_endpoint_password = 128;
inline constexpr std::size_t max_endpoint_features = 64;

inline bool is_alphanumeric(char c) noexcept {
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/// "password <20..128 of [A-Za-z0-9]>": the password, or nothing.
inline std::optional<std::string_view> parse_password_line(std::string_view line) noexcept {
    constexpr std::string_view tag = "password ";
    if (!line.starts_with(tag))
        return std::nullopt;
    const std::string_view password = line.substr(tag.size());
    if (password.size() < min_endpoint_password || password.size() > max_endpoint_password ||
        !std::all_of(password.begin(), password.end(), is_alphanumeric))
        return std::nullopt;
    return password;
}

/// "features" and space-separated words of [a-z0-9-] (possibly none): the
/// words, or nothing.
inline std::optional<std::vector<std::string>> parse_features_line(std::string_view line) {
    constexpr std::string_view tag = "features";
    if (!line.starts_with(tag) || (line.size() > tag.size() && line[tag.size()] != ' '))
        return std::nullopt;
    std::vector<std::string> features;
    std::string_view rest = line.substr(tag.size());
    while (!rest.empty()) {
        const std::size_t word = rest.find_first_not_of(' ');
        if (word == std::string_view::npos)
            break;
        rest.remove_prefix(word);
        const std::string_view feature = rest.substr(0, rest.find(' '));
        rest.remove_prefix(feature.size());
        const bool well_formed = std::all_of(feature.begin(), feature.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-';
        });
        if (!well_formed || features.size() == max_endpoint_features)
            return std::nullopt;
        features.emplace_back(feature);
    }
    return features;
}

} // namespace console_fingerprints_detail

} // namespace anweddol::detail

#endif
