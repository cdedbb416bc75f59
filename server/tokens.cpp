#include "tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace anweddol::server {

namespace {

void random_bytes(unsigned char* out, std::size_t size) {
    if (RAND_bytes(out, static_cast<int>(size)) != 1)
        throw std::runtime_error("OpenSSL's random generator failed (RAND_bytes); the server "
                                 "cannot make tokens: check that /dev/urandom is readable");
}

// base64url without padding of `size` random bytes, as Python's
// secrets.token_urlsafe(size).
secret random_base64url(std::size_t size) {
    std::vector<unsigned char> raw(size);
    random_bytes(raw.data(), raw.size());
    std::string encoded(4 * ((size + 2) / 3), '\0');
    const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()), raw.data(),
                                       static_cast<int>(raw.size()));
    OPENSSL_cleanse(raw.data(), raw.size());
    encoded.resize(static_cast<std::size_t>(length));
    while (!encoded.empty() && encoded.back() == '=')
        encoded.pop_back();
    for (char& c : encoded) {
        if (c == '+')
            c = '-';
        else if (c == '/')
            c = '_';
    }
    return secret(std::move(encoded));
}

// A number uniform over [0, bound), bound <= 2^32, without modulo bias:
// draws that fall in the incomplete last stretch of 2^32 are drawn again.
std::uint32_t uniform_below(std::uint32_t bound) {
    const std::uint64_t range = std::uint64_t{1} << 32;
    const std::uint64_t limit = range - range % bound;
    for (;;) {
        std::uint32_t draw = 0;
        random_bytes(reinterpret_cast<unsigned char*>(&draw), sizeof draw);
        if (draw < limit)
            return draw % bound;
    }
}

struct md_context_deleter {
    void operator()(EVP_MD_CTX* context) const noexcept { EVP_MD_CTX_free(context); }
};
using md_context = std::unique_ptr<EVP_MD_CTX, md_context_deleter>;

md_context sha256_context() {
    md_context context(EVP_MD_CTX_new());
    if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("OpenSSL could not start a SHA-256 digest");
    return context;
}

std::string finish_hex(EVP_MD_CTX* context) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(context, digest.data(), &size) != 1)
        throw std::runtime_error("OpenSSL could not finish a SHA-256 digest");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * size);
    for (unsigned int i = 0; i < size; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0xf];
    }
    return out;
}

} // namespace

secret generate_client_token() {
    return random_base64url(191);
}

secret generate_access_token() {
    return random_base64url(93);
}

std::string generate_container_username() {
    return "user_" + std::to_string(10000 + uniform_below(90000));
}

secret generate_container_password() {
    static constexpr std::string_view alphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string password(120, '\0');
    for (char& c : password)
        c = alphabet[uniform_below(static_cast<std::uint32_t>(alphabet.size()))];
    return secret(std::move(password));
}

std::string sha256_hex(std::string_view bytes) {
    auto context = sha256_context();
    if (EVP_DigestUpdate(context.get(), bytes.data(), bytes.size()) != 1)
        throw std::runtime_error("OpenSSL could not compute a SHA-256 digest");
    return finish_hex(context.get());
}

std::string file_sha256_hex(const std::filesystem::path& file) {
    // POSIX I/O rather than a stream: a stream reports a read error (a
    // directory, an I/O error on the disk) as an early end of file, which
    // would yield the hash of a truncated file.
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(),
                                "cannot open " + file.string() + " to hash it");
    const std::unique_ptr<const int, void (*)(const int*)> closer(
        &fd, [](const int* f) { ::close(*f); });
    auto context = sha256_context();
    std::vector<char> block(1 << 20);
    for (;;) {
        const ssize_t got = ::read(fd, block.data(), block.size());
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot read " + file.string() + " to hash it");
        if (got == 0)
            return finish_hex(context.get());
        if (EVP_DigestUpdate(context.get(), block.data(), static_cast<std::size_t>(got)) != 1)
            throw std::runtime_error("OpenSSL could not compute a SHA-256 digest");
    }
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace anweddol::server
