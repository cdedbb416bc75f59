//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_VIRTUALIZATION_INTERFACE_IPP
#define ANWEDDOL_IMPL_VIRTUALIZATION_INTERFACE_IPP

#include <anweddol/error.hpp>
#include <anweddol/virtualization_interface.hpp>

#include <boost/system/system_error.hpp>

namespace anweddol {

ANWEDDOL_DECL virtualization_interface::~virtualization_interface() {
    // As the reference does: the stored containers' domains stop with the
    // interface, even where someone else still holds a container.
    for (auto& [uuid, container] : containers_)
        container->destroy_in_background();
}

ANWEDDOL_DECL std::vector<std::string> virtualization_interface::list_stored_containers() const {
    std::vector<std::string> uuids;
    uuids.reserve(containers_.size());
    for (const auto& [uuid, container] : containers_)
        uuids.push_back(uuid);
    return uuids;
}

ANWEDDOL_DECL std::shared_ptr<container_instance>
virtualization_interface::create_container(std::string iso_path, bool store) {
    auto container = std::make_shared<container_instance>(executor_, std::move(iso_path));
    if (store)
        add_stored_container(container);
    return container;
}

ANWEDDOL_DECL std::shared_ptr<container_instance>
virtualization_interface::get_stored_container(std::string_view uuid) const {
    const auto found = containers_.find(uuid);
    return found == containers_.end() ? nullptr : found->second;
}

ANWEDDOL_DECL void
virtualization_interface::add_stored_container(std::shared_ptr<container_instance> container) {
    if (!container)
        detail::throw_error(errc::invalid_argument, "cannot store a null container");
    const std::string& uuid = container->get_uuid();
    if (containers_.contains(uuid))
        detail::throw_error(errc::container_already_stored,
                            "a container with UUID " + uuid + " is already stored");
    containers_.emplace(uuid, std::move(container));
}

ANWEDDOL_DECL void virtualization_interface::delete_stored_container(std::string_view uuid) {
    if (const auto found = containers_.find(uuid); found != containers_.end())
        containers_.erase(found);
}

} // namespace anweddol

#endif
