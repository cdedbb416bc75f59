#include "ip_filter.hpp"

#include <algorithm>

namespace anweddol::server {

bool ip_allowed(const ip_filter_settings& filter, const boost::asio::ip::address& peer) {
    namespace ip = boost::asio::ip;
    if (!filter.enabled)
        return true;
    ip::address address = peer;
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = ip::make_address_v4(ip::v4_mapped, address.to_v6());
    const auto listed = [&](const std::vector<ip::address>& list) {
        return std::find(list.begin(), list.end(), address) != list.end();
    };
    if (filter.denied_any && !filter.allowed_any && !listed(filter.allowed_ips))
        return false;
    return !listed(filter.denied_ips);
}

} // namespace anweddol::server
