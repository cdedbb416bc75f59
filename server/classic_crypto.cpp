#include "classic_crypto.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace anweddol::server::classic {

namespace {

// OpenSSL's queued error, emptied, for a message that says what failed.
std::string openssl_reason() {
    std::string reason;
    while (const unsigned long code = ERR_get_error()) {
        char text[256];
        ERR_error_string_n(code, text, sizeof text);
        if (!reason.empty())
            reason += "; ";
        reason += text;
    }
    return reason.empty() ? "no detail from OpenSSL" : reason;
}

[[noreturn]] void fail(const std::string& what) {
    throw crypto_error(what + " (" + openssl_reason() + ")");
}

using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using cipher_ctx_ptr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

std::shared_ptr<EVP_PKEY> own(EVP_PKEY* pkey) {
    return {pkey, EVP_PKEY_free};
}

std::string bio_contents(BIO* bio) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(size));
}

// Checks the key is RSA of an acceptable size; `what` names it for errors.
void check_rsa(EVP_PKEY* pkey, const std::string& what) {
    if (!EVP_PKEY_is_a(pkey, "RSA"))
        throw crypto_error(
            what + " is not an RSA key (it is " +
            (EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "of an unknown type") +
            "); the Anweddol protocol uses RSA");
    const int bits = EVP_PKEY_get_bits(pkey);
    if (bits < static_cast<int>(min_rsa_bits) || bits > static_cast<int>(max_rsa_bits))
        throw crypto_error(what + " is RSA-" + std::to_string(bits) + "; accepted sizes are " +
                           std::to_string(min_rsa_bits) + " to " + std::to_string(max_rsa_bits) +
                           " bits");
}

// Reads a whole key file, refusing anything larger than a key file can be.
std::string read_key_file(const std::filesystem::path& path) {
    constexpr std::uintmax_t max_key_file = 1 << 20;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
        throw crypto_error("cannot read the RSA key file " + path.string() + ": " + ec.message());
    if (size > max_key_file)
        throw crypto_error("the RSA key file " + path.string() + " is " + std::to_string(size) +
                           " bytes, too large for a PEM key; check the configured path");
    std::ifstream in(path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    if (!in && !in.eof())
        throw crypto_error("cannot read the RSA key file " + path.string());
    return text;
}

// A passphrase callback that refuses: OpenSSL would otherwise prompt on the
// terminal for an encrypted key.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

void write_all(int fd, std::string_view data, const std::filesystem::path& path) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw crypto_error("cannot write " + path.string() + ": " + std::strerror(errno));
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Creates `path` with `mode` and writes `data`; `exclusive` refuses an
// existing file (O_EXCL), and the mode given to open() is the file's from its
// first instant (the umask can only remove bits). A failed write removes it.
void write_new_file(const std::filesystem::path& path, std::string_view data, mode_t mode,
                    bool exclusive) {
    if (path.has_parent_path()) {
        std::error_code ec;
        std::filesystem::create_directories(path.parent_path(), ec);
        if (ec)
            throw crypto_error("cannot create the directory " + path.parent_path().string() +
                               " for the RSA key: " + ec.message());
    }
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC);
    const int fd = ::open(path.c_str(), flags, mode);
    if (fd < 0)
        throw crypto_error("cannot create the RSA key file " + path.string() + ": " +
                           std::strerror(errno) +
                           (errno == EEXIST ? " (it appeared meanwhile; start again)" : ""));
    try {
        write_all(fd, data, path);
        if (::fsync(fd) != 0)
            throw crypto_error("cannot sync " + path.string() + ": " + std::strerror(errno));
    } catch (...) {
        ::close(fd);
        ::unlink(path.c_str());
        throw;
    }
    ::close(fd);
}

} // namespace

rsa_key::rsa_key(std::shared_ptr<EVP_PKEY> pkey, bool has_private)
    : pkey_(std::move(pkey))
    , has_private_(has_private) {
    bio_ptr bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1)
        fail("cannot write the RSA public key as PEM");
    public_pem_ = bio_contents(bio.get());
    modulus_bytes_ = static_cast<std::size_t>(EVP_PKEY_get_size(pkey_.get()));
}

rsa_key rsa_key::generate(unsigned bits) {
    if (bits < min_rsa_bits || bits > max_rsa_bits)
        throw crypto_error("cannot generate RSA-" + std::to_string(bits) + ": accepted sizes are " +
                           std::to_string(min_rsa_bits) + " to " + std::to_string(max_rsa_bits));
    EVP_PKEY* pkey = EVP_RSA_gen(bits);
    if (!pkey)
        fail("cannot generate an RSA-" + std::to_string(bits) + " key");
    return rsa_key(own(pkey), true);
}

rsa_key rsa_key::load_private(const std::filesystem::path& private_path) {
    std::string text = read_key_file(private_path);
    bio_ptr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
    EVP_PKEY* pkey =
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
    wipe(text);
    if (!pkey)
        fail("the RSA private key file " + private_path.string() +
             " is not an unencrypted PEM private key; fix or remove it (a new key is then "
             "generated)");
    auto owned = own(pkey);
    check_rsa(pkey, "the private key in " + private_path.string());
    return rsa_key(std::move(owned), true);
}

rsa_key rsa_key::load_or_create(const std::filesystem::path& private_path,
                                const std::filesystem::path& public_path, unsigned bits) {
    std::error_code ec;
    if (!std::filesystem::exists(private_path, ec)) {
        if (ec)
            throw crypto_error("cannot check the RSA private key file " + private_path.string() +
                               ": " + ec.message());
        rsa_key key = generate(bits);
        key.save(private_path, public_path);
        return key;
    }
    rsa_key key = load_private(private_path);
    if (!std::filesystem::exists(public_path, ec)) {
        write_new_file(public_path, key.public_pem(), 0644, false);
        return key;
    }
    const rsa_key stored = from_public_pem(read_key_file(public_path));
    if (!key.same_public_key(stored))
        throw crypto_error("the RSA public key file " + public_path.string() +
                           " does not match the private key " + private_path.string() +
                           "; remove the public key file so that it is written again");
    return key;
}

rsa_key rsa_key::from_public_pem(std::string_view pem) {
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    EVP_PKEY* pkey =
        bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
    if (!pkey)
        fail("the peer's public key is not a SubjectPublicKeyInfo PEM");
    auto owned = own(pkey);
    check_rsa(pkey, "the peer's public key");
    return rsa_key(std::move(owned), false);
}

void rsa_key::save(const std::filesystem::path& private_path,
                   const std::filesystem::path& public_path) const {
    if (!has_private_)
        throw crypto_error("cannot save " + private_path.string() +
                           ": the key has no private half");
    bio_ptr bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr,
                                         nullptr) != 1)
        fail("cannot write the RSA private key as PEM");
    std::string pem = bio_contents(bio.get());
    try {
        write_new_file(private_path, pem, 0600, true);
    } catch (...) {
        wipe(pem);
        throw;
    }
    wipe(pem);
    write_new_file(public_path, public_pem_, 0644, false);
}

bool rsa_key::same_public_key(const rsa_key& other) const {
    return EVP_PKEY_eq(pkey_.get(), other.pkey_.get()) == 1;
}

namespace {

pkey_ctx_ptr oaep_context(EVP_PKEY* pkey, bool encrypting) {
    pkey_ctx_ptr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr), EVP_PKEY_CTX_free);
    if (!ctx ||
        (encrypting ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1)
        fail("cannot set up RSA-OAEP-SHA256");
    return ctx;
}

} // namespace

bytes rsa_key::encrypt(std::span<const std::uint8_t> plaintext) const {
    auto ctx = oaep_context(pkey_.get(), true);
    std::size_t size = 0;
    if (EVP_PKEY_encrypt(ctx.get(), nullptr, &size, plaintext.data(), plaintext.size()) != 1)
        fail("RSA-OAEP cannot encrypt " + std::to_string(plaintext.size()) + " bytes");
    bytes out(size);
    if (EVP_PKEY_encrypt(ctx.get(), out.data(), &size, plaintext.data(), plaintext.size()) != 1)
        fail("RSA-OAEP encryption failed");
    out.resize(size);
    return out;
}

bytes rsa_key::decrypt(std::span<const std::uint8_t> ciphertext) const {
    if (!has_private_)
        throw crypto_error("cannot decrypt with a public key only");
    auto ctx = oaep_context(pkey_.get(), false);
    std::size_t size = 0;
    if (EVP_PKEY_decrypt(ctx.get(), nullptr, &size, ciphertext.data(), ciphertext.size()) != 1)
        fail("the RSA-OAEP block does not decrypt");
    bytes out(size);
    if (EVP_PKEY_decrypt(ctx.get(), out.data(), &size, ciphertext.data(), ciphertext.size()) != 1) {
        wipe(out);
        fail("the RSA-OAEP block does not decrypt under the server's key");
    }
    out.resize(size);
    return out;
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1)
        fail("SHA-256 failed");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0xF];
    }
    return out;
}

std::string fingerprint(const rsa_key& key) {
    const std::string digest = sha256_hex(key.public_pem());
    std::string out;
    for (std::size_t i = 0; i < digest.size(); ++i) {
        if (i != 0 && i % 4 == 0)
            out += ' ';
        out += static_cast<char>(digest[i] >= 'a' ? digest[i] - 'a' + 'A' : digest[i]);
    }
    return out;
}

aes_key::~aes_key() {
    OPENSSL_cleanse(key.data(), key.size());
    OPENSSL_cleanse(iv.data(), iv.size());
}

namespace {

bytes aes_run(const aes_key& k, std::span<const std::uint8_t> in, bool encrypting) {
    cipher_ctx_ptr ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, k.key.data(), k.iv.data(),
                                  encrypting ? 1 : 0) != 1)
        fail("cannot set up AES-256-CBC");
    bytes out(in.size() + 16);
    int written = 0;
    int final_written = 0;
    if (EVP_CipherUpdate(ctx.get(), out.data(), &written, in.data(), static_cast<int>(in.size())) !=
            1 ||
        EVP_CipherFinal_ex(ctx.get(), out.data() + written, &final_written) != 1) {
        wipe(out);
        ERR_clear_error();
        throw crypto_error(encrypting ? "AES-256-CBC encryption failed"
                                      : "the AES-256-CBC message has a wrong padding (wrong key "
                                        "or IV, or a corrupted message)");
    }
    out.resize(static_cast<std::size_t>(written + final_written));
    return out;
}

} // namespace

bytes aes_encrypt(const aes_key& k, std::span<const std::uint8_t> plaintext) {
    return aes_run(k, plaintext, true);
}

bytes aes_decrypt(const aes_key& k, std::span<const std::uint8_t> ciphertext) {
    if (ciphertext.empty() || ciphertext.size() % 16 != 0)
        throw crypto_error("an AES-256-CBC message is a positive multiple of 16 bytes, not " +
                           std::to_string(ciphertext.size()));
    return aes_run(k, ciphertext, false);
}

void random_bytes(std::span<std::uint8_t> out) {
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1)
        fail("the random generator failed");
}

void wipe(std::span<std::uint8_t> secret) noexcept {
    OPENSSL_cleanse(secret.data(), secret.size());
}

} // namespace anweddol::server::classic
