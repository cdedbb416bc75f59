//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_EVENT_LOOP_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_EVENT_LOOP_HPP

#include <anweddol/detail/config.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <map>
#include <memory>
#include <mutex>

namespace anweddol::detail {

/// libvirt's event loop (virEventRegisterImpl) on Asio: libvirt's fd watches
/// and timeouts become async waits and timers on one executor, so keepalives
/// and domain events are dispatched there, never on a thread of their own.
///
/// There is one per process, registered with libvirt the first time
/// install() is called, before the first connection is opened; it stays bound
/// to the executor given then. That executor's io_context must keep running
/// while libvirt connections exist: keepalive replies and events are handled
/// on it. When that io_context is destroyed, the loop lets go of its fds and
/// timers and stops serving libvirt (a connection closed afterwards, at
/// process exit, finds nothing to touch). libvirt calls the hooks from any
/// thread.
class libvirt_event_loop {
public:
    /// The process's loop, registered with libvirt and bound to `executor` on
    /// the first call; later calls return it unchanged.
    static libvirt_event_loop& install(const boost::asio::any_io_executor& executor);

    /// The executor (a strand) on which libvirt's callbacks run.
    const boost::asio::strand<boost::asio::any_io_executor>& get_executor() const noexcept {
        return strand_;
    }

    /// Watches and timeouts libvirt has registered and not yet removed.
    std::size_t handle_count() const;
    std::size_t timeout_count() const;

    // The hooks libvirt calls (virEventRegisterImpl's six functions).
    static int add_handle(int fd, int events, virEventHandleCallback callback, void* opaque,
                          virFreeCallback free_opaque);
    static void update_handle(int watch, int events);
    static int remove_handle(int watch);
    static int add_timeout(int period_ms, virEventTimeoutCallback callback, void* opaque,
                           virFreeCallback free_opaque);
    static void update_timeout(int timer, int period_ms);
    static int remove_timeout(int timer);

private:
    class shutdown_watch;
    struct fd_entry;
    struct handle_watch;
    struct timeout_watch;

    explicit libvirt_event_loop(const boost::asio::any_io_executor& executor);

    static libvirt_event_loop& loop() noexcept;
    int wanted_events(int fd) const;
    void arm(const std::shared_ptr<fd_entry>& entry);
    void on_ready(const std::shared_ptr<fd_entry>& entry);
    void schedule(const std::shared_ptr<timeout_watch>& timeout);
    void fire(const std::shared_ptr<timeout_watch>& timeout, unsigned generation);
    void free_later(virFreeCallback free_opaque, void* opaque);
    // The io_context is going: release every fd, drop every timer.
    void detach();

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    // Guards the tables, every entry's fields and every I/O object: libvirt
    // calls the hooks from any thread, and a descriptor must not be released
    // while another thread starts a wait on it. Never held while calling
    // into libvirt.
    mutable std::mutex mutex_;
    std::map<int, std::shared_ptr<fd_entry>> fds_;
    std::map<int, handle_watch> handles_;
    std::map<int, std::shared_ptr<timeout_watch>> timeouts_;
    int next_id_ = 1;
    bool detached_ = false;
};

} // namespace anweddol::detail

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/libvirt_event_loop.ipp>
#endif

#endif
