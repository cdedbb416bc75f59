// Which domains a libvirt driver has, by UUID, for the tests that check that
// nothing was left behind.
#ifndef ANWEDDOL_TESTS_UNIT_LIBVIRT_DOMAINS_HPP
#define ANWEDDOL_TESTS_UNIT_LIBVIRT_DOMAINS_HPP

#include "test_context.hpp"

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <libvirt/libvirt.h>

#include <cstdlib>
#include <set>
#include <string>

namespace anweddol::test {

/// The UUIDs of the domains libvirt at `uri` runs, or, with `running_only`
/// false, of every domain it knows.
inline std::set<std::string> domain_uuids(std::string uri, bool running_only = true) {
    const unsigned flags = running_only ? VIR_CONNECT_LIST_DOMAINS_ACTIVE : 0;
    return run_coroutine(
        [](std::string uri, unsigned flags) -> boost::asio::awaitable<std::set<std::string>> {
            auto connection = co_await hypervisor_connection::open(uri);
            // Built outside the co_await: GCC 12 destroys a capturing temporary
            // there twice.
            auto listing = connection->call([flags](virConnectPtr c) {
                virDomainPtr* domains = nullptr;
                const int count = virConnectListAllDomains(c, &domains, flags);
                if (count < 0)
                    detail::throw_last_libvirt_error("listing domains");
                std::set<std::string> uuids;
                for (int i = 0; i < count; ++i) {
                    char uuid[VIR_UUID_STRING_BUFLEN] = {};
                    virDomainGetUUIDString(domains[i], uuid);
                    uuids.insert(uuid);
                    virDomainFree(domains[i]);
                }
                std::free(domains);
                return uuids;
            });
            co_return co_await std::move(listing);
        }(std::move(uri), flags));
}

} // namespace anweddol::test

#endif
