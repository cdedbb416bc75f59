// The cryptography of the Anweddol classic TCP protocol, on OpenSSL 3's EVP
// interface: the server's RSA key pair (persistent in PEM files, or one-time
// in memory), a peer's RSA public key, RSA-OAEP (SHA-256, MGF1-SHA-256, no
// label) and AES-256-CBC with PKCS#7 padding, as the reference's
// core/crypto.py uses them. Failures throw `crypto_error` naming the file or
// the input at fault.
#ifndef ANWEDDOL_SERVER_CLASSIC_CRYPTO_HPP
#define ANWEDDOL_SERVER_CLASSIC_CRYPTO_HPP

#include <openssl/types.h>

#include <anweddol/secret.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::server::classic {

class crypto_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

using bytes = std::vector<std::uint8_t>;

// The RSA moduli accepted from peers and from key files: the reference's
// keys are 4096 bits; below 2048 is weak, above 16384 costs a peer's CPU.
inline constexpr unsigned min_rsa_bits = 2048;
inline constexpr unsigned max_rsa_bits = 16384;
inline constexpr unsigned default_rsa_bits = 4096;

// An RSA key: ours (with its private half) or a peer's (public only).
// Immutable after construction; its const members may be called from several
// threads at once (each call has its own EVP_PKEY_CTX).
class rsa_key {
public:
    // A fresh key pair in memory: the reference's one-time keys
    // (`enable_onetime_rsa_keys`). RSA-4096 takes seconds: call it before
    // serving, or off the io_context's threads.
    static rsa_key generate(unsigned bits = default_rsa_bits);

    // The persistent key: loads `private_path` (unencrypted PEM, PKCS#8 or
    // PKCS#1) when it exists, else generates a key and saves it there (mode
    // 0600, created exclusively, so never readable by others even briefly) and
    // its public half to `public_path` (0644). A missing `public_path` is
    // written from the private key; an existing one must hold the same key,
    // since clients fingerprint what the server sends.
    static rsa_key load_or_create(const std::filesystem::path& private_path,
                                  const std::filesystem::path& public_path,
                                  unsigned bits = default_rsa_bits);

    // Loads a private key file; throws when it is missing, unreadable,
    // encrypted, not RSA, or of a size outside [min_rsa_bits, max_rsa_bits].
    static rsa_key load_private(const std::filesystem::path& private_path);

    // A peer's SubjectPublicKeyInfo PEM; throws when it is not PEM, not RSA,
    // or of a size outside [min_rsa_bits, max_rsa_bits].
    static rsa_key from_public_pem(std::string_view pem);

    // Writes the private key to `private_path` (exclusive create, 0600; the
    // file is removed again if writing fails) and the public PEM to
    // `public_path`. Parent directories are created.
    void save(const std::filesystem::path& private_path,
              const std::filesystem::path& public_path) const;

    // The public key as SubjectPublicKeyInfo PEM, byte for byte what the
    // Python cryptography library writes and what goes on the wire.
    const std::string& public_pem() const noexcept { return public_pem_; }
    std::size_t modulus_bytes() const noexcept { return modulus_bytes_; }
    bool has_private() const noexcept { return has_private_; }
    bool same_public_key(const rsa_key& other) const;

    // RSA-OAEP with SHA-256 and MGF1-SHA-256, no label.
    bytes encrypt(std::span<const std::uint8_t> plaintext) const;
    // Throws crypto_error when the block does not decrypt (wrong key, wrong
    // padding, wrong size) or the key has no private half.
    bytes decrypt(std::span<const std::uint8_t> ciphertext) const;

private:
    rsa_key(std::shared_ptr<EVP_PKEY> pkey, bool has_private);

    std::shared_ptr<EVP_PKEY> pkey_; // shared: the key is immutable
    std::string public_pem_;
    std::size_t modulus_bytes_ = 0;
    bool has_private_ = false;
};

// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// The server key's fingerprint as the client's --check-server-rsa-fingerprint
// prints it: SHA-256 of the public PEM, in upper-case groups of 4 hex digits.
std::string fingerprint(const rsa_key& key);

// An AES-256-CBC key and IV, wiped when destroyed.
struct aes_key {
    std::array<std::uint8_t, 32> key{};
    std::array<std::uint8_t, 16> iv{};
    aes_key() = default;
    aes_key(const aes_key&) = default;
    aes_key& operator=(const aes_key&) = default;
    ~aes_key();
};

// AES-256-CBC with PKCS#7 padding under (key, iv).
bytes aes_encrypt(const aes_key& k, std::span<const std::uint8_t> plaintext);
// Throws crypto_error when `ciphertext` is not a positive multiple of 16
// bytes or its padding is wrong.
bytes aes_decrypt(const aes_key& k, std::span<const std::uint8_t> ciphertext);

// Bytes from OpenSSL's CSPRNG; throws when it fails.
void random_bytes(std::span<std::uint8_t> out);

// Wipes a buffer that held a secret (OPENSSL_cleanse); strings go to the
// library's anweddol::wipe, which wipes up to their capacity.
void wipe(std::span<std::uint8_t> secret) noexcept;
using anweddol::wipe;

} // namespace anweddol::server::classic

#endif
