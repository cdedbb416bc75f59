//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_LEASE_FILE_IPP
#define ANWEDDOL_IMPL_LEASE_FILE_IPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/libvirt/lease_file.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <limits>

#include <fcntl.h>
#include <unistd.h>

namespace anweddol::detail {

namespace lease_file_impl {

[[noreturn]] inline void malformed(const std::string& why) {
    throw boost::system::system_error(errc::lease_file_malformed, why);
}

ANWEDDOL_DECL bool same_mac(std::string_view a, std::string_view b) {
    return std::ranges::equal(
        a, b, [](unsigned char x, unsigned char y) { return std::tolower(x) == std::tolower(y); });
}

ANWEDDOL_DECL std::int64_t expiry_of(const boost::json::value& value, std::size_t index) {
    if (const auto* number = value.if_int64())
        return *number;
    if (const auto* number = value.if_uint64();
        number && *number <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(*number);
    malformed("lease " + std::to_string(index) + ": \"expiry-time\" is not an integer");
}

} // namespace lease_file_impl

ANWEDDOL_DECL std::optional<lease> find_lease(std::string_view status_json,
                                              std::string_view mac_address, std::int64_t now) {
    using namespace lease_file_impl;
    if (status_json.size() > max_lease_file_size)
        malformed("status file is larger than " + std::to_string(max_lease_file_size) + " bytes");
    if (status_json.find_first_not_of(" \t\r\n") == std::string_view::npos)
        return std::nullopt;

    boost::system::error_code ec;
    boost::json::value document = boost::json::parse(status_json, ec);
    if (ec)
        malformed("status file is not JSON: " + ec.message());
    const auto* entries = document.if_array();
    if (!entries)
        malformed("status file is not a JSON array");

    std::optional<lease> newest;
    for (std::size_t index = 0; index < entries->size(); ++index) {
        const auto* entry = (*entries)[index].if_object();
        if (!entry)
            malformed("lease " + std::to_string(index) + " is not a JSON object");
        const auto* mac = entry->if_contains("mac-address");
        const auto* ip = entry->if_contains("ip-address");
        const auto* expiry = entry->if_contains("expiry-time");
        if (!mac || !mac->is_string() || !ip || !ip->is_string() || !expiry)
            malformed("lease " + std::to_string(index) +
                      " lacks a string \"mac-address\", a string \"ip-address\" or an "
                      "\"expiry-time\"");
        const std::int64_t expiry_time = expiry_of(*expiry, index);
        if (!same_mac(mac->get_string(), mac_address))
            continue;
        const bool expired = expiry_time != 0 && expiry_time < now;
        if (expired)
            continue;
        const bool lasts_longer = !newest || expiry_time == 0 ||
                                  (newest->expiry_time != 0 && expiry_time > newest->expiry_time);
        if (lasts_longer)
            newest =
                lease{std::string(ip->get_string()), std::string(mac->get_string()), expiry_time};
    }
    return newest;
}

ANWEDDOL_DECL std::optional<std::string> read_lease_file(const std::filesystem::path& path) {
    using namespace lease_file_impl;
    auto fail = [&](const char* what) -> void {
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          std::string(what) + " lease status file " +
                                              path.string());
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return std::nullopt;
        fail("cannot open");
    }
    // Grown as it is read: a status file is a few hundred bytes, and it is
    // read again each time dnsmasq replaces it. One byte more than the limit
    // tells an oversized file from a full one.
    std::string text;
    std::array<char, 16 * 1024> chunk;
    std::size_t size = 0;
    while (size <= max_lease_file_size) {
        const ::ssize_t n = ::read(fd, chunk.data(), chunk.size());
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            const int error = errno;
            ::close(fd);
            errno = error;
            fail("cannot read");
        }
        text.append(chunk.data(), static_cast<std::size_t>(n));
        size += static_cast<std::size_t>(n);
    }
    ::close(fd);
    if (size > max_lease_file_size)
        malformed(path.string() + " is larger than " + std::to_string(max_lease_file_size) +
                  " bytes");
    return text;
}

} // namespace anweddol::detail

#endif
