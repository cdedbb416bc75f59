//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_LIBVIRT_EVENT_HOOKS_IPP
#define ANWEDDOL_IMPL_LIBVIRT_EVENT_HOOKS_IPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/libvirt/event_hooks.hpp>
#include <anweddol/detail/libvirt/event_loop.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

namespace anweddol::detail {

namespace event_hooks_impl {

// Which loop owns each watch and timeout id, and the loops that exist. Ids
// are unique in the process: libvirt hands them back without saying which
// loop they came from.
struct routing {
    std::mutex mutex; // held while calling into a loop, never while calling libvirt
    std::map<int, libvirt_event_loop*> owners;
    std::vector<libvirt_event_loop*> loops;
    int next_id = 1;
};

inline routing& table() {
    // Only routing: what it points to belongs to runtimes. Never destroyed:
    // an io_context that outlives main() (a static one) still detaches its
    // loop from it at exit.
    static routing* const instance = new routing;
    return *instance;
}

// Under the table's lock: a live loop of the calling thread, if any.
inline libvirt_event_loop* own_live_loop(routing& r) {
    auto* loop = libvirt_event_hooks::current;
    if (loop && std::ranges::find(r.loops, loop) != r.loops.end() && !loop->detached())
        return loop;
    return nullptr;
}

// Under the table's lock: moves timeout `id` from `from` to `to`.
inline bool move_timeout(routing& r, int id, libvirt_event_loop* from, libvirt_event_loop* to) {
    auto spec = from->take_timeout(id);
    if (!spec)
        return false;
    if (to->add_timeout(id, spec->period_ms, spec->registration) < 0) {
        // Nowhere to go (`to` detached meanwhile): libvirt's later calls for
        // `id` find nothing. The opaque is not freed here, under the table's
        // lock: its free may be libvirt's last unref, which removes timeouts.
        r.owners.erase(id);
        return false;
    }
    r.owners[id] = to;
    return true;
}

// Under the table's lock.
inline libvirt_event_loop* loop_for_new_registration(routing& r) {
    if (libvirt_event_hooks::current &&
        std::ranges::find(r.loops, libvirt_event_hooks::current) != r.loops.end())
        return libvirt_event_hooks::current;
    return r.loops.empty() ? nullptr : r.loops.back();
}

inline void no_op_timeout(int, void*) {}

} // namespace event_hooks_impl

ANWEDDOL_DECL thread_local libvirt_event_loop* libvirt_event_hooks::current = nullptr;

ANWEDDOL_DECL void libvirt_event_hooks::install() {
    static std::once_flag once;
    static bool foreign = false;
    std::call_once(once, [] {
        if (virInitialize() < 0) // thread-local errors need it before anything else
            return;
        // With no implementation registered, libvirt refuses a timeout; one
        // accepted before ours is registered belongs to someone else.
        const int probe =
            virEventAddTimeout(-1, &event_hooks_impl::no_op_timeout, nullptr, nullptr);
        if (probe >= 0) {
            virEventRemoveTimeout(probe);
            foreign = true;
            return;
        }
        virResetLastError();
        virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
        virEventRegisterImpl(&add_handle, &update_handle, &remove_handle, &add_timeout,
                             &update_timeout, &remove_timeout);
    });
    if (foreign)
        throw_error(errc::foreign_event_loop,
                    "this program registered a libvirt event loop of its own "
                    "(virEventRegisterImpl or virEventRegisterDefaultImpl) before anweddol: "
                    "libvirt takes one per process, and anweddol runs its events on Asio; "
                    "remove that registration");
}

ANWEDDOL_DECL void libvirt_event_hooks::attach(libvirt_event_loop* loop) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    r.loops.push_back(loop);
}

ANWEDDOL_DECL void libvirt_event_hooks::detach(libvirt_event_loop* loop) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    std::erase(r.loops, loop);
    // A timeout of a driver shared by the process (test:///) outlives the
    // io_context that registered it: another loop takes it over. Watches are
    // a connection's own fds, gone with it.
    std::vector<int> timeouts;
    for (const auto& [id, owner] : r.owners)
        if (owner == loop)
            timeouts.push_back(id);
    libvirt_event_loop* heir = nullptr;
    for (auto it = r.loops.rbegin(); it != r.loops.rend() && !heir; ++it)
        if (!(*it)->detached())
            heir = *it;
    for (int id : timeouts)
        if (!heir || !event_hooks_impl::move_timeout(r, id, loop, heir))
            r.owners.erase(id);
    std::erase_if(r.owners, [loop](const auto& owner) { return owner.second == loop; });
}

ANWEDDOL_DECL int libvirt_event_hooks::add_handle(int fd, int events,
                                                  virEventHandleCallback callback, void* opaque,
                                                  virFreeCallback free_opaque) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    libvirt_event_loop* loop = event_hooks_impl::loop_for_new_registration(r);
    if (!loop)
        return -1;
    const int id = r.next_id++;
    if (loop->add_handle(id, fd, events, callback, opaque, free_opaque) < 0)
        return -1;
    r.owners.emplace(id, loop);
    return id;
}

ANWEDDOL_DECL void libvirt_event_hooks::update_handle(int watch, int events) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    if (auto owner = r.owners.find(watch); owner != r.owners.end())
        owner->second->update_handle(watch, events);
}

ANWEDDOL_DECL int libvirt_event_hooks::remove_handle(int watch) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    auto owner = r.owners.find(watch);
    if (owner == r.owners.end())
        return -1;
    const int result = owner->second->remove_handle(watch);
    r.owners.erase(owner);
    return result;
}

ANWEDDOL_DECL int libvirt_event_hooks::add_timeout(int period_ms, virEventTimeoutCallback callback,
                                                   void* opaque, virFreeCallback free_opaque) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    libvirt_event_loop* loop = event_hooks_impl::loop_for_new_registration(r);
    if (!loop)
        return -1;
    const int id = r.next_id++;
    auto registration =
        std::make_shared<libvirt_event_loop::timeout_registration>(callback, opaque, free_opaque);
    if (loop->add_timeout(id, period_ms, std::move(registration)) < 0)
        return -1;
    r.owners.emplace(id, loop);
    return id;
}

ANWEDDOL_DECL void libvirt_event_hooks::update_timeout(int timer, int period_ms) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    auto owner = r.owners.find(timer);
    if (owner == r.owners.end())
        return;
    // A timeout follows the loop that re-arms it: a driver shared by several
    // io_contexts (test:///'s one event timer per process) fires where its
    // events were just queued, also once the loop that registered it stopped.
    libvirt_event_loop* here = event_hooks_impl::own_live_loop(r);
    if (here && here != owner->second &&
        event_hooks_impl::move_timeout(r, timer, owner->second, here)) {
        here->update_timeout(timer, period_ms);
        return;
    }
    owner->second->update_timeout(timer, period_ms);
}

ANWEDDOL_DECL int libvirt_event_hooks::remove_timeout(int timer) {
    auto& r = event_hooks_impl::table();
    std::lock_guard lock(r.mutex);
    auto owner = r.owners.find(timer);
    if (owner == r.owners.end())
        return -1;
    const int result = owner->second->remove_timeout(timer);
    r.owners.erase(owner);
    return result;
}

} // namespace anweddol::detail

#endif
