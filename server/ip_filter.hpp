// The reference's IP filter (`ip_filter:` in config.yaml), applied to a
// client's address before its request is read (classic) or served (REST).
#ifndef ANWEDDOL_SERVER_IP_FILTER_HPP
#define ANWEDDOL_SERVER_IP_FILTER_HPP

#include "configuration.hpp"

#include <boost/asio/ip/address.hpp>

namespace anweddol::server {

// Whether `peer` may talk to the server, as the reference's
// process.py _handle_ip_filter decides:
// - a disabled filter lets everyone in;
// - when "any" is denied, only the allowed addresses get in ("any" allowed:
//   everyone);
// - then an address on the denied list is refused, even when it is on the
//   allowed list too;
// - anyone else gets in: the allowed list only matters when "any" is denied.
// An IPv4 peer seen through a dual-stack socket (::ffff:a.b.c.d) is the IPv4
// address a.b.c.d, as configuration lists hold it.
bool ip_allowed(const ip_filter_settings& filter, const boost::asio::ip::address& peer);

} // namespace anweddol::server

#endif
