//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_CAPACITY_IPP
#define ANWEDDOL_IMPL_CONTAINER_CAPACITY_IPP

#include <anweddol/container_capacity.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <cstdint>

namespace anweddol {

ANWEDDOL_DECL container_capacity::container_capacity(boost::asio::any_io_executor executor,
                                                     options opts)
    : executor_(std::move(executor))
    , state_(std::make_shared<state>(std::move(opts))) {}

ANWEDDOL_DECL container_capacity::usage container_capacity::get_usage() const {
    std::lock_guard lock(state_->mutex);
    return state_->counts;
}

ANWEDDOL_DECL const container_capacity::options& container_capacity::get_options() const noexcept {
    return state_->opts;
}

ANWEDDOL_DECL void container_capacity::reservation::mark_booted() noexcept {
    if (!state_ || !booting_)
        return;
    std::lock_guard lock(state_->mutex);
    --state_->counts.booting;
    state_->counts.booting_memory_mib -= memory_mib_;
    booting_ = false;
}

ANWEDDOL_DECL void container_capacity::reservation::reset() noexcept {
    const auto s = std::move(state_);
    if (!s)
        return;
    std::lock_guard lock(s->mutex);
    --s->counts.reserved;
    if (std::exchange(booting_, false)) {
        --s->counts.booting;
        s->counts.booting_memory_mib -= memory_mib_;
    }
    memory_mib_ = 0;
}

ANWEDDOL_DECL void container_capacity::state::refuse(std::string why) {
    ++counts.refused;
    throw error_with_diagnostics(make_error_code(errc::over_capacity), diagnostics(std::move(why)));
}

ANWEDDOL_DECL container_capacity::reservation
container_capacity::state::take(const std::shared_ptr<state>& self, std::uint64_t memory_mib) {
    std::lock_guard lock(mutex);
    if (opts.max_containers != 0 && counts.reserved >= opts.max_containers)
        refuse("every place is taken: " + std::to_string(counts.reserved) + " of " +
               std::to_string(opts.max_containers) + " containers (" +
               std::to_string(counts.booting) + " of them booting); try again once one is gone");
    ++counts.reserved;
    ++counts.booting;
    counts.booting_memory_mib += memory_mib;
    return reservation(self, memory_mib);
}

ANWEDDOL_DECL void container_capacity::state::check_memory(const reservation& place,
                                                           std::uint64_t free_mib) {
    std::lock_guard lock(mutex);
    counts.last_free_memory_mib = free_mib;
    // The other boots: their memory is promised but not yet taken from the host.
    const std::uint64_t others = counts.booting_memory_mib - place.memory_mib();
    // Saturating: a headroom near 2^64 must refuse, not wrap around.
    std::uint64_t needed = others;
    for (const std::uint64_t more : {place.memory_mib(), opts.memory_headroom_mib})
        needed = needed > UINT64_MAX - more ? UINT64_MAX : needed + more;
    if (free_mib >= needed)
        return;
    ++counts.refused;
    // The place goes back with `place`, when the caller's coroutine unwinds.
    throw error_with_diagnostics(
        make_error_code(errc::over_capacity),
        diagnostics("not enough memory for a " + std::to_string(place.memory_mib()) +
                    " MiB container: the host has " + std::to_string(free_mib) + " MiB free, " +
                    std::to_string(others) +
                    " MiB of it promised to containers still booting, and keeps " +
                    std::to_string(opts.memory_headroom_mib) +
                    " MiB for itself; try again once a boot has finished"));
}

ANWEDDOL_DECL boost::asio::awaitable<container_capacity::reservation>
container_capacity::reserve_here(std::shared_ptr<state> s, std::uint64_t memory_mib) {
    // Counted as booting before the host is asked: concurrent requests see
    // each other's memory, so they can only be refused too often, never
    // granted too much.
    reservation place = s->take(s, memory_mib);
    if (!s->opts.check_memory) {
        std::lock_guard lock(s->mutex);
        ++s->counts.granted;
        co_return place;
    }
    // Built outside the co_await expressions: GCC 12 destroys such
    // temporaries twice.
    auto opening = hypervisor_connection::open(s->opts.driver_uri);
    const auto connection = co_await std::move(opening);
    auto reading = connection->call([](virConnectPtr c) {
        const unsigned long long bytes = virNodeGetFreeMemory(c);
        // 0 is also its error value: only a recorded error makes it one.
        if (bytes == 0 && virGetLastError() != nullptr)
            detail::throw_last_libvirt_error(
                "reading the host's free memory (virNodeGetFreeMemory)");
        return bytes;
    });
    const unsigned long long free_bytes = co_await std::move(reading);
    s->check_memory(place, free_bytes / (1024 * 1024));
    {
        std::lock_guard lock(s->mutex);
        ++s->counts.granted;
    }
    co_return place;
}

} // namespace anweddol

#endif
