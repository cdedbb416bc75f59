//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_LEASE_FILE_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_LEASE_FILE_HPP

#include <anweddol/detail/config.hpp>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// One DHCP lease of libvirt's dnsmasq, as its status file records it.
struct lease {
    std::string ip_address;
    std::string mac_address;
    /// Seconds since the epoch; 0 for a lease that never expires.
    std::int64_t expiry_time = 0;
};

/// libvirt's lease helper writes about 150 bytes per lease, so even a full
/// /16 stays far below this; anything bigger is not a status file.
inline constexpr std::size_t max_lease_file_size = 4 * 1024 * 1024;

/// The current lease of `mac_address` (compared case-insensitively) in the
/// text of a dnsmasq status file: a JSON array of objects with "ip-address",
/// "mac-address" and "expiry-time". Leases that expired before `now` (seconds
/// since the epoch) are ignored; of several, the one expiring last wins.
/// Returns std::nullopt when the MAC has no current lease. Throws
/// boost::system::system_error with errc::lease_file_malformed, saying what is
/// wrong, when the text is not such a file (an empty file has no leases).
std::optional<lease> find_lease(std::string_view status_json, std::string_view mac_address,
                                std::int64_t now);

/// Reads a status file. Returns std::nullopt when it does not exist (dnsmasq
/// writes it with the first lease); throws boost::system::system_error when it
/// cannot be read, or with errc::lease_file_malformed when it is larger than
/// max_lease_file_size.
std::optional<std::string> read_lease_file(const std::filesystem::path& path);

} // namespace anweddol::detail

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/lease_file.ipp>
#endif

#endif
