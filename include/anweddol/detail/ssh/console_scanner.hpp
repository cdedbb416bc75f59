//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONSOLE_SCANNER_HPP
#define ANWEDDOL_DETAIL_SSH_CONSOLE_SCANNER_HPP

// What a guest announces on its serial console during one boot, read from
// the console's bytes as they arrive: the first complete SSH host-key block
// (see console_fingerprints.hpp) and the first complete endpoint block that
// anweddol's guest prints right before it:
//
//   <any prefix>-----BEGIN ANWEDDOL ENDPOINT-----
//   password <20..128 of [A-Za-z0-9]>
//   features <words of [a-z0-9-], space-separated, possibly none>
//   <any prefix>-----END ANWEDDOL ENDPOINT-----
//
// Fed from the console stream itself, not from the log's ring, so that
// output that pushed a block out of the ring does not hide it. Only the
// first complete block of each kind counts: one printed later (injected by
// a process of the guest, or another boot's) changes nothing. Constant work
// per byte, and bounded memory: a line longer than max_line_bytes is
// dropped whole.

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh/console_fingerprints.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anweddol::detail {

/// The endpoint account's announcement: its per-boot password (wiped when
/// replaced or destroyed; never printed) and the features of its guest.
struct endpoint_announcement {
    std::string password;
    std::vector<std::string> features;

    endpoint_announcement() = default;
    endpoint_announcement(std::string password_, std::vector<std::string> features_) noexcept
        : password(std::move(password_))
        , features(std::move(features_)) {}
    endpoint_announcement(const endpoint_announcement&) = default;
    endpoint_announcement(endpoint_announcement&&) noexcept = default;
    endpoint_announcement& operator=(const endpoint_announcement& other) {
        if (this != &other) {
            cleanse(password); // the copy reuses this buffer when it fits
            password = other.password;
            features = other.features;
        }
        return *this;
    }
    endpoint_announcement& operator=(endpoint_announcement&& other) noexcept {
        if (this != &other) {
            cleanse(password);
            password = std::move(other.password);
            features = std::move(other.features);
        }
        return *this;
    }
    ~endpoint_announcement() { cleanse(password); }
};

/// What a console announced so far during one boot.
struct console_announcement {
    /// The SHA-256 keys of the first complete host-key block, in its order,
    /// each once; empty before it, or when it had no SHA-256 line.
    std::vector<console_host_key> host_keys;
    /// Whether that block ended.
    bool host_keys_complete = false;
    /// The first complete, well-formed endpoint block.
    std::optional<endpoint_announcement> endpoint;
    /// Whether a block of a kind not announced yet has begun and not ended:
    /// wait for more output before concluding that there is none.
    bool block_open = false;
    /// Whether no more output will come: the console ended (the domain
    /// stopped), could not be opened, or is not read at all.
    bool console_ended = false;
};

/// The sans-I/O reader of a console: fed its bytes in order, it keeps what
/// console_announcement describes and says what of them a log may show.
class console_scanner {
public:
    /// Longer lines are dropped whole: neither a key nor a password is that long.
    static constexpr std::size_t max_line_bytes = 4096;
    /// Keys kept per block; more are ignored.
    static constexpr std::size_t max_block_keys = 16;

    console_scanner() {
        // Never reallocated, so that no freed buffer keeps a password.
        line_.reserve(max_line_bytes);
        block_password_.reserve(console_fingerprints_detail::max_endpoint_password);
    }
    console_scanner(const console_scanner&) = delete;
    console_scanner& operator=(const console_scanner&) = delete;
    ~console_scanner() {
        cleanse(line_);
        cleanse(block_password_);
    }

    /// Takes the next console bytes. `to_log(std::string_view)` receives
    /// what a log may show of them: the bytes as they are, except inside an
    /// endpoint block, whose lines it receives whole once they end, each
    /// with its end-of-line byte, with the password line replaced (so a
    /// password split across calls never reaches the log). Returns whether
    /// the announcement (or whether a block is open) may have changed.
    template <class ToLog>
    bool feed(std::string_view bytes, ToLog&& to_log) {
        bool changed = false;
        std::size_t unshown = 0; // the first byte neither shown nor held
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            const bool holding = block_ == block::endpoint;
            if (!take(bytes[i]))
                continue;
            if (holding) {
                to_log(std::string_view(shown_line()));
                to_log(bytes.substr(i, 1));
                changed |= end_line();
                unshown = i + 1;
            } else {
                changed |= end_line();
                if (block_ == block::endpoint) { // this line began one: hold what follows
                    to_log(bytes.substr(unshown, i + 1 - unshown));
                    unshown = i + 1;
                }
            }
        }
        if (block_ != block::endpoint && unshown < bytes.size())
            to_log(bytes.substr(unshown));
        return changed;
    }

    /// The input ended (a whole text was fed): its last line counts even
    /// without an end of line. Returns what feed() returns.
    template <class ToLog>
    bool finish(ToLog&& to_log) {
        if (line_.empty() && !overlong_)
            return false;
        if (block_ == block::endpoint)
            to_log(std::string_view(shown_line()));
        return end_line();
    }

    /// What was announced so far (a copy: the password's is wiped with it).
    console_announcement announcement() const {
        console_announcement result;
        result.host_keys = host_keys_;
        result.host_keys_complete = host_keys_complete_;
        result.endpoint = endpoint_;
        result.block_open = (block_ == block::host_keys && !host_keys_complete_) ||
                            (block_ == block::endpoint && !endpoint_);
        return result;
    }

private:
    enum class block { none, host_keys, endpoint };
    enum class escape { none, started, csi, string };

    /// One byte into the current line, as a terminal shows it: CR, LF and
    /// CR LF end a line; ANSI escape sequences, other control characters
    /// and DEL are dropped; a tab is a space. True when `c` ends the line.
    bool take(char c) noexcept {
        const auto u = static_cast<unsigned char>(c);
        if (std::exchange(after_cr_, false) && c == '\n')
            return false; // CR LF: the CR ended the line
        switch (escape_) {
        case escape::started: // after ESC
            if (c == '[') {
                escape_ = escape::csi;
                return false;
            }
            if (c == ']' || c == 'P' || c == '_' || c == '^' || c == 'X') {
                escape_ = escape::string; // OSC, DCS, APC, PM, SOS: up to BEL or ESC '\'
                return false;
            }
            if (u >= 0x20 && u <= 0x2F)
                return false; // an intermediate byte: ESC ( B and the like
            escape_ = escape::none;
            if (u >= 0x30 && u <= 0x7E)
                return false; // the sequence's final byte
            break;            // not a sequence after all: c is text
        case escape::csi:     // ESC [ parameters, intermediates, final byte
            if (u >= 0x20 && u <= 0x3F)
                return false;
            escape_ = escape::none;
            if (u >= 0x40 && u <= 0x7E)
                return false;
            break; // malformed: c is text
        case escape::string:
            if (c == '\a') {
                escape_ = escape::none;
                return false;
            }
            if (c == '\x1b') {
                escape_ = escape::started; // ESC '\' ends it; '\' is a final byte
                return false;
            }
            if (c != '\n' && c != '\r')
                return false;
            escape_ = escape::none; // an unterminated string ends with its line
            break;
        case escape::none:
            break;
        }
        if (c == '\n' || c == '\r') {
            after_cr_ = c == '\r';
            return true;
        }
        if (c == '\x1b') {
            escape_ = escape::started;
        } else if ((u >= 0x20 && u != 0x7F) || c == '\t') {
            if (line_.size() == max_line_bytes)
                overlong_ = true;
            else if (!overlong_)
                line_.push_back(c == '\t' ? ' ' : c);
        }
        return false;
    }

    /// The current line ended: its meaning for the blocks, then its bytes
    /// wiped (it may have held a password). True when that changed what
    /// announcement() says.
    bool end_line() {
        bool changed = false;
        if (!overlong_)
            changed = on_line(trimmed_line());
        // Only its own bytes: the buffer never grows, and wiping all of it
        // at each line would cost max_line_bytes per line.
        OPENSSL_cleanse(line_.data(), line_.size());
        line_.clear();
        overlong_ = false;
        return changed;
    }

    std::string_view trimmed_line() const noexcept {
        std::string_view line = line_;
        while (!line.empty() && line.back() == ' ')
            line.remove_suffix(1);
        return line;
    }

    bool on_line(std::string_view line) {
        namespace cf = console_fingerprints_detail;
        if (cf::ends_with(line, cf::begin_marker))
            return begin(block::host_keys); // even inside another: that one was cut off
        if (cf::ends_with(line, cf::endpoint_begin_marker))
            return begin(block::endpoint);
        if (block_ == block::host_keys)
            return on_host_key_line(line);
        if (block_ == block::endpoint)
            return on_endpoint_line(line);
        return false;
    }

    bool begin(block kind) {
        abandon_block();
        // A later host-key block is not even followed. A later endpoint
        // block is, for its password line to be kept out of the log.
        block_ = kind == block::host_keys && host_keys_complete_ ? block::none : kind;
        return true;
    }

    void abandon_block() noexcept {
        block_ = block::none;
        block_keys_.clear();
        cleanse(block_password_);
        block_features_.reset();
        block_malformed_ = false;
    }

    bool on_host_key_line(std::string_view line) {
        namespace cf = console_fingerprints_detail;
        if (cf::ends_with(line, cf::end_marker)) {
            host_keys_ = std::move(block_keys_);
            host_keys_complete_ = true;
            abandon_block();
            return true;
        }
        if (block_keys_.size() == max_block_keys)
            return false;
        if (auto key = cf::parse_fingerprint_line(line)) {
            const bool seen =
                std::any_of(block_keys_.begin(), block_keys_.end(),
                            [&](const auto& k) { return k.fingerprint == key->fingerprint; });
            if (!seen)
                block_keys_.push_back(std::move(*key));
        }
        return false;
    }

    bool on_endpoint_line(std::string_view line) {
        namespace cf = console_fingerprints_detail;
        if (cf::ends_with(line, cf::endpoint_end_marker)) {
            if (!endpoint_ && !block_malformed_ && !block_password_.empty() && block_features_) {
                endpoint_.emplace(std::exchange(block_password_, std::string()),
                                  std::move(*block_features_));
                block_password_.reserve(cf::max_endpoint_password);
            }
            abandon_block();
            return true;
        }
        // Other lines (a kernel message interleaved) are skipped; a second
        // or malformed password or features line spoils the block.
        if (line.starts_with("password")) {
            const auto password = cf::parse_password_line(line);
            if (password && block_password_.empty())
                block_password_.assign(*password); // in place: the buffer is reserved
            else
                block_malformed_ = true;
        } else if (line.starts_with("features")) {
            auto features = cf::parse_features_line(line);
            if (features && !block_features_)
                block_features_ = std::move(features);
            else
                block_malformed_ = true;
        }
        return false;
    }

    /// What the log shows of a line inside an endpoint block.
    std::string shown_line() const {
        namespace cf = console_fingerprints_detail;
        if (overlong_)
            return "[anweddol: a line of over " + std::to_string(max_line_bytes) +
                   " bytes, hidden]";
        const std::string_view line = trimmed_line();
        if (line.empty() || cf::ends_with(line, cf::endpoint_begin_marker) ||
            cf::ends_with(line, cf::endpoint_end_marker) || cf::ends_with(line, cf::begin_marker) ||
            cf::parse_features_line(line))
            return std::string(line);
        if (line.starts_with("password"))
            return "password [redacted]";
        return "[anweddol: a line of the endpoint block, hidden]";
    }

    std::string line_;
    bool overlong_ = false;
    bool after_cr_ = false;
    escape escape_ = escape::none;

    block block_ = block::none;
    std::vector<console_host_key> block_keys_;
    std::string block_password_;
    std::optional<std::vector<std::string>> block_features_;
    bool block_malformed_ = false;

    std::vector<console_host_key> host_keys_;
    bool host_keys_complete_ = false;
    std::optional<endpoint_announcement> endpoint_;
};

/// What a console's bytes announce, read at once: for a whole text (a test,
/// a log). The last line counts even without an end of line.
inline console_announcement scan_console(std::string_view console) {
    console_scanner scanner;
    const auto ignore = [](std::string_view) {
    };
    scanner.feed(console, ignore);
    scanner.finish(ignore);
    return scanner.announcement();
}

/// The fingerprints alone, for endpoint_shell_options::host_key_fingerprints.
inline std::vector<std::string> fingerprints_of(const std::vector<console_host_key>& keys) {
    std::vector<std::string> fingerprints;
    fingerprints.reserve(keys.size());
    for (const auto& key : keys)
        fingerprints.push_back(key.fingerprint);
    return fingerprints;
}

} // namespace anweddol::detail

#endif
