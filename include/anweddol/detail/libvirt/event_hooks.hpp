//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_EVENT_HOOKS_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_EVENT_HOOKS_HPP

#include <anweddol/detail/config.hpp>

#include <libvirt/libvirt.h>

namespace anweddol::detail {

class libvirt_event_loop;

/// The six functions libvirt calls to watch fds and run timers
/// (virEventRegisterImpl). libvirt takes them once per process, so they are
/// the one process-wide piece of the library, and hold no state of their own
/// beyond routing: each registration goes to the event loop of the thread
/// that makes it (a connection's worker, or a loop's own callback, see
/// libvirt_event_loop::scope), and later updates and removals follow its id
/// to the same loop. A registration from a thread of no loop (the host
/// program calling libvirt itself) goes to the loop attached last.
class libvirt_event_hooks {
public:
    /// Registers the hooks with libvirt the first time; later calls do
    /// nothing. Throws error_with_diagnostics (errc::foreign_event_loop)
    /// when the program registered an event loop of its own first: libvirt
    /// has room for one, and replacing it would silently break the program's.
    /// Also turns off libvirt's printing of every error to stderr (its
    /// default error function): anweddol reports errors with their message.
    static void install();

    /// A loop comes (its runtime was created) or goes.
    static void attach(libvirt_event_loop* loop);
    static void detach(libvirt_event_loop* loop);

    /// The loop of the calling thread (see libvirt_event_loop::scope).
    static thread_local libvirt_event_loop* current;

private:
    static int add_handle(int fd, int events, virEventHandleCallback callback, void* opaque,
                          virFreeCallback free_opaque);
    static void update_handle(int watch, int events);
    static int remove_handle(int watch);
    static int add_timeout(int period_ms, virEventTimeoutCallback callback, void* opaque,
                           virFreeCallback free_opaque);
    static void update_timeout(int timer, int period_ms);
    static int remove_timeout(int timer);
};

} // namespace anweddol::detail

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/libvirt_event_hooks.ipp>
#endif

#endif
