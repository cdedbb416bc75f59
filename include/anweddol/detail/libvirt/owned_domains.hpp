//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_OWNED_DOMAINS_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_OWNED_DOMAINS_HPP

// Finding the domains a process left running, by the owner in their
// <metadata>, and reading back what they are. Blocking: run on a lane.

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/handle.hpp>

#include <libvirt/libvirt.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace anweddol::detail {

/// The owner in a domain's anweddol <metadata>; nullopt for a domain
/// without one (not anweddol's), or one that went away meanwhile (`gone`
/// then says so).
inline std::optional<std::string> container_owner(virDomainPtr domain, bool* gone = nullptr) {
    char* element =
        virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_ELEMENT,
                             std::string(metadata_namespace).c_str(), VIR_DOMAIN_AFFECT_LIVE);
    if (!element) {
        const int code = virGetLastErrorCode();
        if (code != VIR_ERR_NO_DOMAIN_METADATA && code != VIR_ERR_NO_DOMAIN)
            throw_last_libvirt_error("cannot read the metadata of a domain");
        virResetLastError();
        if (gone)
            *gone = code == VIR_ERR_NO_DOMAIN;
        return std::nullopt;
    }
    const std::string text = element;
    std::free(element);
    // libvirt gives the element back as `<container owner="..."/>`.
    return attribute(start_tag(text, "container"), "owner");
}

struct owned_domains {
    std::vector<std::string> uuids; ///< running, and `owner`'s
    std::size_t others = 0;         ///< running, and not: left alone
};

/// The running domains whose <metadata> names `owner`.
inline owned_domains list_owned_domains(virConnectPtr connection, const std::string& owner) {
    virDomainPtr* domains = nullptr;
    const int count =
        virConnectListAllDomains(connection, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (count < 0)
        throw_last_libvirt_error("cannot list the running domains");
    owned_domains found;
    std::exception_ptr failure;
    for (int i = 0; i < count; ++i) {
        domain_handle domain(domains[i]); // frees each, whatever happens
        if (failure)
            continue;
        try {
            // A domain listed may be gone by now (one being destroyed): it
            // is neither ours to sweep nor anyone's left alone.
            bool gone = false;
            const auto domain_owner = container_owner(domain.get(), &gone);
            char uuid[VIR_UUID_STRING_BUFLEN] = {};
            if (gone)
                continue;
            if (domain_owner == owner && virDomainGetUUIDString(domain.get(), uuid) == 0)
                found.uuids.emplace_back(uuid);
            else
                ++found.others;
        } catch (...) {
            failure = std::current_exception();
        }
    }
    std::free(domains);
    if (failure)
        std::rethrow_exception(failure);
    return found;
}

/// The running domain with `uuid` and what its XML says; nullopt when
/// libvirt runs no such domain. Error: errc::invalid_argument when it is
/// not shaped like a container's.
struct running_domain {
    domain_handle domain;
    domain_description description;
};
inline std::optional<running_domain> find_running_domain(virConnectPtr connection,
                                                         const std::string& uuid) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!domain) {
        if (virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
            throw_last_libvirt_error("cannot look up domain " + uuid);
        virResetLastError();
        return std::nullopt;
    }
    const int active = virDomainIsActive(domain.get());
    if (active < 0)
        throw_last_libvirt_error("cannot ask whether domain " + uuid + " runs");
    if (active == 0)
        return std::nullopt;
    char* xml = virDomainGetXMLDesc(domain.get(), 0);
    if (!xml)
        throw_last_libvirt_error("cannot read the definition of domain " + uuid);
    auto description = describe_domain(xml);
    std::free(xml);
    if (!description)
        throw_error(errc::invalid_argument,
                    "domain " + uuid +
                        " is not shaped like a container (no NIC on a bridge with a MAC): "
                        "anweddol cannot adopt it");
    return running_domain{std::move(domain), std::move(*description)};
}

} // namespace anweddol::detail

#endif
