//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_SNAPSHOT_SLOT_STATE_HPP
#define ANWEDDOL_IMPL_SNAPSHOT_SLOT_STATE_HPP

// What a snapshot slot and the container that holds it share. Part of
// snapshot_slot.ipp and container_start.ipp.

#include <anweddol/detail/libvirt/dhcp_host_entries.hpp>
#include <anweddol/detail/libvirt/snapshot_image.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/runtime.hpp>
#include <anweddol/snapshot_slot.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace anweddol {

struct snapshot_slot::state {
    state(anweddol::runtime& rt, options o, std::string id, std::string address)
        : runtime(rt)
        , opts(std::move(o))
        , uuid(std::move(id))
        , mac(std::move(address)) {}

    anweddol::runtime& runtime;
    const options opts;
    const std::string uuid;
    const std::string mac;
    // On the slot's executor only:
    std::optional<detail::slot_image_inputs> saved;
    std::optional<detail::dhcp_reservation> reservation;
    std::shared_ptr<hypervisor_connection> connection; // of the image and reservation
    std::string network_note;

    std::filesystem::path image_path() const {
        return opts.image_directory / ("anweddol-slot-" + uuid + ".img");
    }

    // A container's hold on the slot, from its start until its domain is
    // gone; released from any thread (a detached destroy's). The slot's
    // image and reservation go when the slot and every hold are gone.
    std::shared_ptr<void> claim(const std::shared_ptr<state>& self) {
        std::lock_guard lock(mutex_);
        if (busy_)
            return nullptr;
        busy_ = true;
        // Not null: a held claim tests true.
        return std::shared_ptr<void>(self.get(), [self](void*) noexcept { self->release_claim(); });
    }
    bool busy() const {
        std::lock_guard lock(mutex_);
        return busy_;
    }
    // The slot object is gone: clean up now, or when the last hold goes.
    void abandon() noexcept {
        bool now = false;
        {
            std::lock_guard lock(mutex_);
            abandoned_ = true;
            now = !busy_;
        }
        if (now)
            clean_up_in_background();
    }

private:
    void release_claim() noexcept {
        bool clean = false;
        {
            std::lock_guard lock(mutex_);
            busy_ = false;
            clean = abandoned_;
        }
        if (clean)
            clean_up_in_background();
    }
    void clean_up_in_background() noexcept;

    mutable std::mutex mutex_;
    bool busy_ = false;
    bool abandoned_ = false;
};

} // namespace anweddol

#endif
