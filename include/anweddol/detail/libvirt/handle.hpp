//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_HANDLE_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_HANDLE_HPP

#include <libvirt/libvirt.h>

#include <memory>

namespace anweddol::detail {

// libvirt objects are reference counted: these own one reference each and
// drop it with virConnectClose / virDomainFree. Copy one with retain_*, which
// takes a reference of its own (virConnectRef / virDomainRef), so a call in
// flight on a worker thread keeps its object alive whatever the owner does.

struct connect_deleter {
    void operator()(virConnectPtr connection) const noexcept { virConnectClose(connection); }
};
struct domain_deleter {
    void operator()(virDomainPtr domain) const noexcept { virDomainFree(domain); }
};

using connect_handle = std::unique_ptr<virConnect, connect_deleter>;
using domain_handle = std::unique_ptr<virDomain, domain_deleter>;

/// A new reference to `connection` (which may be null).
inline connect_handle retain_connect(virConnectPtr connection) noexcept {
    if (connection)
        virConnectRef(connection);
    return connect_handle(connection);
}

/// A new reference to `domain` (which may be null).
inline domain_handle retain_domain(virDomainPtr domain) noexcept {
    if (domain)
        virDomainRef(domain);
    return domain_handle(domain);
}

} // namespace anweddol::detail

#endif
