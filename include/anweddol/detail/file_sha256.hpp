//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_FILE_SHA256_HPP
#define ANWEDDOL_DETAIL_FILE_SHA256_HPP

#include <anweddol/detail/random.hpp>

#include <boost/system/system_error.hpp>

#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace anweddol::detail {

/// The lower-case hex SHA-256 of a file, read in 1 MiB pieces through
/// OpenSSL's EVP interface: constant memory whatever the ISO's size. Blocks:
/// run it on a worker. Throws boost::system::system_error when the file
/// cannot be read, naming it.
inline std::string file_sha256(const std::string& path) {
    const auto fail = [&](const char* what) {
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          std::string(what) + " " + path);
    };
    struct fd_closer {
        int fd;
        ~fd_closer() { ::close(fd); }
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open");
    fd_closer closer{fd};

    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                    &EVP_MD_CTX_free);
    if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("OpenSSL cannot start a SHA-256 digest");
    std::unique_ptr<unsigned char[]> buffer(new unsigned char[1 << 20]);
    for (;;) {
        const ssize_t length = ::read(fd, buffer.get(), 1 << 20);
        if (length < 0) {
            if (errno == EINTR)
                continue;
            fail("cannot read");
        }
        if (length == 0)
            break;
        if (EVP_DigestUpdate(context.get(), buffer.get(), static_cast<std::size_t>(length)) != 1)
            throw std::runtime_error("OpenSSL's SHA-256 digest failed");
    }
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(context.get(), digest.data(), &size) != 1)
        throw std::runtime_error("OpenSSL's SHA-256 digest failed");
    return to_hex(digest.data(), size);
}

} // namespace anweddol::detail

#endif
