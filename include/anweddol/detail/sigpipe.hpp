//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SIGPIPE_HPP
#define ANWEDDOL_DETAIL_SIGPIPE_HPP

#include <cerrno>
#include <csignal>
#include <ctime>

#include <pthread.h>

namespace anweddol::detail {

/// libvirt writes to its sockets with write(): once libvirtd is gone, a
/// write raises SIGPIPE, whose default action ends the whole process.
/// libvirt leaves that to the application (virsh and Python ignore SIGPIPE
/// for the whole process), and a library must not change what the process
/// does with a signal. So anweddol keeps SIGPIPE off the threads on which
/// libvirt writes, and libvirt sees the write fail with EPIPE instead:
///
/// - its own threads (connection lanes, runtime workers) start with SIGPIPE
///   blocked (make them inside a `sigpipe_suppressed` scope: threads inherit
///   the signal mask of the thread that makes them). A SIGPIPE raised there
///   stays pending on that thread, never delivered.
/// - on the caller's threads (libvirt's event callbacks on the io_context,
///   a last close when the io_context shuts down), `sigpipe_suppressed`
///   blocks it for the time of the call and discards one raised meanwhile,
///   as libpq does for its sends.
///
/// A SIGPIPE raised by write() goes to the thread that wrote, so blocking it
/// there is enough; the program's own SIGPIPEs are left as they were.
class sigpipe_suppressed {
public:
    sigpipe_suppressed() noexcept {
        sigemptyset(&sigpipe_);
        sigaddset(&sigpipe_, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &sigpipe_, &previous_);
        was_pending_ = pending();
    }
    sigpipe_suppressed(const sigpipe_suppressed&) = delete;
    sigpipe_suppressed& operator=(const sigpipe_suppressed&) = delete;

    ~sigpipe_suppressed() {
        const int saved_errno = errno;
        if (!was_pending_ && pending()) {
            // Raised in this scope: take it, so that unblocking does not
            // deliver it.
            const timespec no_wait{};
            while (sigtimedwait(&sigpipe_, nullptr, &no_wait) < 0 && errno == EINTR) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
        errno = saved_errno;
    }

private:
    static bool pending() noexcept {
        sigset_t set;
        sigemptyset(&set);
        return sigpending(&set) == 0 && sigismember(&set, SIGPIPE) == 1;
    }

    sigset_t sigpipe_;
    sigset_t previous_;
    bool was_pending_ = false;
};

/// `make()`'s result, made with SIGPIPE blocked: the threads it starts
/// (a boost::asio::thread_pool) keep SIGPIPE blocked for their whole life.
template <class Make>
auto with_sigpipe_blocked_threads(Make make) {
    const sigpipe_suppressed while_starting_threads;
    return make();
}

} // namespace anweddol::detail

#endif
