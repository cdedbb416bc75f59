//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SECRET_HPP
#define ANWEDDOL_DETAIL_SECRET_HPP

// anweddol::wipe and anweddol::secret, public names: defined here, below the
// public headers, for the detail code that holds and wipes credentials
// (credentials.hpp, ssh/login_params.hpp); <anweddol/secret.hpp> brings
// them in and says how to use them.

#include <openssl/crypto.h>

#include <cstddef>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace anweddol {

/// Overwrites every byte of `bytes` with zeros, in a way the optimizer may
/// not remove (OPENSSL_cleanse). Thread-safety: as any write to `bytes`.
inline void wipe(std::span<std::byte> bytes) noexcept {
    OPENSSL_cleanse(bytes.data(), bytes.size());
}

/// Overwrites every byte `s` holds, up to its capacity rather than its size
/// (a string that once held a longer value keeps its bytes there, and a
/// short one keeps them inside the std::string object itself), with zeros
/// the optimizer may not remove, then empties it. Its capacity stays, so
/// that a later value that fits reuses the wiped buffer.
inline void wipe(std::string& s) noexcept {
    OPENSSL_cleanse(s.data(), s.capacity());
    s.clear();
}

/// A password, token or key held in memory: its bytes are overwritten when
/// it is destroyed, cleared, assigned over, or moved from (a moved-from
/// std::string keeps a short value in its own object: a secret wipes that
/// too, in itself and in a std::string it is built from by move).
///
/// It never prints: no operator<< (`std::cout << s` does not compile) and no
/// conversion to a string; reveal() is the one, explicit, way to the bytes.
///
/// Copyable: a secret lives in option structs that are values (copied per
/// call, kept by the objects they configure), and each copy wipes itself as
/// the original does. Moving is cheaper and leaves no copy behind.
///
/// It converts implicitly from the string types, so that a field or
/// parameter that was a std::string before (`options.password = "..."`)
/// takes it as it did. A std::string passed by lvalue is copied, and that
/// copy stays the caller's to wipe; passed with std::move, its buffer is
/// taken over and what remains of it wiped.
///
/// Thread-safety: as std::string.
class secret {
public:
    secret() noexcept = default;
    /// Takes over `value`'s buffer and wipes what the move leaves in it.
    secret(std::string&& value) noexcept
        : value_(std::move(value)) {
        wipe(value);
    }
    secret(const std::string& value)
        : value_(value) {}
    secret(std::string_view value)
        : value_(value) {}
    secret(const char* value)
        : value_(value) {}

    secret(const secret& other)
        : value_(other.value_) {}
    secret(secret&& other) noexcept
        : value_(std::move(other.value_)) {
        wipe(other.value_);
    }
    secret& operator=(const secret& other) {
        if (this != &other)
            assign(other.reveal());
        return *this;
    }
    secret& operator=(secret&& other) noexcept {
        if (this != &other) {
            wipe(value_);
            value_ = std::move(other.value_);
            wipe(other.value_);
        }
        return *this;
    }
    ~secret() { wipe(value_); }

    /// Wipes the old value, then copies `value` in; a value that fits reuses
    /// the buffer, so that no reallocation leaves a copy behind. `value`
    /// must not view this secret's own bytes.
    void assign(std::string_view value) {
        wipe(value_);
        value_.assign(value);
    }

    /// The bytes, for as long as this secret is neither changed nor
    /// destroyed. Whatever the caller copies from them is the caller's to
    /// wipe.
    std::string_view reveal() const noexcept { return value_; }
    /// The bytes, NUL-terminated, for C APIs that take a password as a C
    /// string (libssh's ssh_userauth_password); as reveal().
    const char* reveal_c_str() const noexcept { return value_.c_str(); }

    std::size_t size() const noexcept { return value_.size(); }
    bool empty() const noexcept { return value_.empty(); }
    /// Wipes the value and leaves the secret empty.
    void clear() noexcept { wipe(value_); }

    /// Whether `candidate` holds the same bytes, in a time that depends on
    /// their length only, not on where they first differ (CRYPTO_memcmp):
    /// what checking a presented token needs. There is no operator==, whose
    /// usual implementations stop at the first difference.
    bool equals(std::string_view candidate) const noexcept {
        return candidate.size() == value_.size() &&
               (value_.empty() ||
                CRYPTO_memcmp(candidate.data(), value_.data(), value_.size()) == 0);
    }

    /// Deleted: a secret is never printed. Use reveal() where a protocol
    /// really needs the bytes.
    template <class CharT, class Traits>
    friend std::basic_ostream<CharT, Traits>& operator<<(std::basic_ostream<CharT, Traits>&,
                                                         const secret&) = delete;

private:
    std::string value_;
};

} // namespace anweddol

#endif
