//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONSOLE_FINGERPRINTS_HPP
#define ANWEDDOL_DETAIL_SSH_CONSOLE_FINGERPRINTS_HPP

// The SSH host key fingerprints a guest prints on its serial console, in
// cloud-init's format (tools/write-ssh-key-fingerprints, piped through
// `logger -s -t ec2`):
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
// The console is untrusted bytes: kernel messages interleaved, CR LF or bare
// CR, ANSI escape sequences, NULs, a block still arriving, earlier boots'
// blocks. Anything that is not exactly a SHA-256 fingerprint line is
// skipped; a key missed that way can only make the pin stricter.

#include <anweddol/detail/ssh/fingerprint_text.hpp>

#include <algorithm>
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

/// What a console says about its host keys so far.
struct console_fingerprints {
    /// The SHA-256 fingerprints of the last complete block, in its order,
    /// each once. Empty when there is no complete block, or when the block
    /// has no SHA-256 line (an old ssh-keygen prints MD5).
    std::vector<console_host_key> keys;
    /// Whether a complete block (BEGIN ... END) was seen.
    bool complete = false;
    /// Whether a block began after the last complete one and has not ended:
    /// a block still arriving, or a later boot's. Its keys are not in
    /// `keys`; wait for more console output before trusting `keys`.
    bool block_open = false;
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

/// Splits console bytes into lines as a terminal would show them: CR, LF
/// and CR LF end a line; ANSI escape sequences, other control characters
/// and DEL are dropped; a tab is a space. Calls `on_line` with each line,
/// trailing blanks removed, and the last (unterminated) one too.
template <class OnLine>
void for_each_console_line(std::string_view text, OnLine on_line) {
    std::string line;
    enum class state { text, escape, csi, string } at = state::text;
    const auto finish = [&] {
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        on_line(std::string_view(line));
        line.clear();
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const auto u = static_cast<unsigned char>(c);
        switch (at) {
        case state::escape: // after ESC
            if (c == '[') {
                at = state::csi;
                continue;
            }
            if (c == ']' || c == 'P' || c == '_' || c == '^' || c == 'X') {
                at = state::string; // OSC, DCS, APC, PM, SOS: up to BEL or ESC '\'
                continue;
            }
            if (u >= 0x20 && u <= 0x2F)
                continue; // an intermediate byte: ESC ( B and the like
            at = state::text;
            if (u >= 0x30 && u <= 0x7E)
                continue; // the sequence's final byte
            break;        // not a sequence after all: handle c as text
        case state::csi:  // ESC [ parameters, intermediates, final byte
            if (u >= 0x20 && u <= 0x3F)
                continue;
            at = state::text;
            if (u >= 0x40 && u <= 0x7E)
                continue;
            break; // malformed: handle c as text
        case state::string:
            if (c == '\a') {
                at = state::text;
                continue;
            }
            if (c == '\x1b') {
                at = state::escape; // ESC '\' ends it; the '\' is a final byte
                continue;
            }
            if (c != '\n' && c != '\r')
                continue;
            at = state::text; // an unterminated string ends with its line
            break;
        case state::text:
            break;
        }
        if (c == '\n' || c == '\r') {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
                ++i;
            finish();
        } else if (c == '\x1b') {
            at = state::escape;
        } else if (c == '\t') {
            line.push_back(' ');
        } else if (u >= 0x20 && u != 0x7F) {
            line.push_back(c);
        }
    }
    finish();
}

} // namespace console_fingerprints_detail

/// The host key fingerprints in console output, from the last complete
/// block (see console_fingerprints). Only SHA-256 fingerprints count.
/// Linear in the size of `console`; never throws for any content.
inline console_fingerprints parse_console_fingerprints(std::string_view console) {
    namespace cf = console_fingerprints_detail;
    console_fingerprints result;
    std::vector<console_host_key> current;
    bool in_block = false;
    cf::for_each_console_line(console, [&](std::string_view line) {
        if (cf::ends_with(line, cf::begin_marker)) {
            // A new block, even inside another: that one was cut off (the
            // guest rebooted while printing it).
            in_block = true;
            current.clear();
        } else if (cf::ends_with(line, cf::end_marker)) {
            if (in_block) {
                result.keys = std::move(current);
                result.complete = true;
                current.clear();
            }
            in_block = false;
        } else if (in_block) {
            if (auto key = cf::parse_fingerprint_line(line)) {
                const bool seen = std::any_of(current.begin(), current.end(), [&](const auto& k) {
                    return k.fingerprint == key->fingerprint;
                });
                if (!seen)
                    current.push_back(std::move(*key));
            }
        }
    });
    result.block_open = in_block;
    return result;
}

/// The fingerprints alone, for endpoint_shell_options::host_key_fingerprints.
inline std::vector<std::string> fingerprints_of(const console_fingerprints& scan) {
    std::vector<std::string> fingerprints;
    fingerprints.reserve(scan.keys.size());
    for (const auto& key : scan.keys)
        fingerprints.push_back(key.fingerprint);
    return fingerprints;
}

} // namespace anweddol::detail

#endif
