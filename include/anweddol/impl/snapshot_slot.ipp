//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_SNAPSHOT_SLOT_IPP
#define ANWEDDOL_IMPL_SNAPSHOT_SLOT_IPP

#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/libvirt/dhcp_reservation.hpp>
#include <anweddol/impl/snapshot_slot_state.hpp>
#include <anweddol/snapshot_slot.hpp>

#include <system_error>

namespace anweddol {

ANWEDDOL_DECL snapshot_slot::snapshot_slot(boost::asio::any_io_executor ex, options opts)
    : executor_(std::move(ex)) {
    if (!opts.image_directory.is_absolute())
        detail::throw_error(errc::invalid_argument,
                            "snapshot_slot::options::image_directory must be absolute (libvirtd "
                            "writes the image, from its own directory), not " +
                                opts.image_directory.string());
    if (opts.barrier_timeout.count() <= 0)
        detail::throw_error(errc::invalid_argument,
                            "snapshot_slot::options::barrier_timeout must be positive");
    state_ = std::make_shared<state>(runtime::of(executor_), std::move(opts), detail::random_uuid(),
                                     detail::random_mac());
}

ANWEDDOL_DECL snapshot_slot::~snapshot_slot() {
    state_->abandon();
}

ANWEDDOL_DECL const std::string& snapshot_slot::get_uuid() const noexcept {
    return state_->uuid;
}

ANWEDDOL_DECL const std::string& snapshot_slot::get_mac() const noexcept {
    return state_->mac;
}

ANWEDDOL_DECL std::filesystem::path snapshot_slot::get_image_path() const {
    return state_->image_path();
}

ANWEDDOL_DECL bool snapshot_slot::is_saved() const noexcept {
    return state_->saved.has_value();
}

ANWEDDOL_DECL bool snapshot_slot::is_in_use() const noexcept {
    return state_->busy();
}

ANWEDDOL_DECL std::optional<std::string> snapshot_slot::get_reserved_address() const {
    if (!state_->reservation)
        return std::nullopt;
    return state_->reservation->ip;
}

ANWEDDOL_DECL std::string snapshot_slot::get_network_note() const {
    return state_->network_note;
}

ANWEDDOL_DECL void snapshot_slot::state::clean_up_in_background() noexcept {
    // Runs once, when the slot and every hold on it are gone: nothing else
    // touches the state any more.
    auto image = image_path();
    auto address = std::exchange(reservation, std::nullopt);
    auto through = std::exchange(connection, nullptr);
    // Whether or not a save completed: one cancelled after libvirt wrote
    // the file leaves it too.
    runtime.run_detached([image, address, through]() noexcept {
        std::error_code ignored;
        std::filesystem::remove(image, ignored);
        try {
            if (address && through)
                detail::release_reservation_blocking(through->current().get(), *address);
        } catch (...) {
            // libvirtd is gone or refuses: a sweep removes it once stale.
        }
    });
}

} // namespace anweddol

#endif
