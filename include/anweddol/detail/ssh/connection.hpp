//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONNECTION_HPP
#define ANWEDDOL_DETAIL_SSH_CONNECTION_HPP

// ssh_connection (declared in connection_decl.hpp, split off to keep each
// file short) with the bodies of its members.
#include <anweddol/detail/ssh/connection_decl.hpp>
#include <anweddol/detail/ssh/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libssh/libssh.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <new>

namespace anweddol::detail {

inline ssh_session ssh_connection::start_session() {
    libssh_fd_ = ::fcntl(socket_.native_handle(), F_DUPFD_CLOEXEC, 0);
    struct stat identity {};
    if (libssh_fd_ == -1 || ::fstat(libssh_fd_, &identity) != 0)
        throw_error(boost::system::error_code(errno, boost::system::system_category()),
                    "cannot duplicate the socket for libssh");
    libssh_fd_inode_ = identity.st_ino;
    libssh_fd_device_ = identity.st_dev;
    session_.reset(ssh_new());
    if (!session_)
        throw std::bad_alloc();
    ssh_session session = session_.get();
    if (ssh_options_set(session, SSH_OPTIONS_FD, &libssh_fd_) != SSH_OK)
        throw_libssh_error(session, "cannot hand the socket to libssh");
    ssh_set_blocking(session, 0);
    ssh_set_counters(session, &counter_, nullptr);
    return session;
}

inline void ssh_connection::restore_nonblocking() noexcept {
    const int fd = ssh_get_fd(session_.get());
    if (fd == SSH_INVALID_SOCKET)
        return;
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags != -1 && !(flags & O_NONBLOCK))
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

inline void ssh_connection::after_call() {
    if (!session_ || libssh_fd_ == -1)
        return;
    if (!writing_ && ssh_get_fd(session_.get()) != SSH_INVALID_SOCKET && !flush_output())
        arm_write();
    if (ssh_get_fd(session_.get()) == SSH_INVALID_SOCKET) {
        // libssh closed its descriptor after a socket error: the session is
        // dead; let every waiter find out from its own call.
        libssh_fd_ = -1;
        ++progress_;
        wake_all();
        return;
    }
    if (counter_.in_bytes != seen_in_ || counter_.out_bytes != seen_out_) {
        seen_in_ = counter_.in_bytes;
        seen_out_ = counter_.out_bytes;
        ++progress_;
        wake_all();
    }
}

inline boost::asio::awaitable<void> ssh_connection::wait(const bool* expired, std::uint64_t since) {
    if (closing_)
        throw_error(boost::asio::error::operation_aborted, "the SSH connection was closed");
    if (!session_ || libssh_fd_ == -1)
        throw_libssh_error(session_.get(), "the SSH connection was lost");
    if (progress_ == since) {
        arm();
        struct waiting {
            std::size_t& count;
            explicit waiting(std::size_t& c)
                : count(++c) {}
            ~waiting() { --count; }
        } counted(waiters_);
        co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    const auto state = co_await boost::asio::this_coro::cancellation_state;
    if (state.cancelled() != boost::asio::cancellation_type::none)
        throw_error(boost::asio::error::operation_aborted, "the SSH operation was cancelled");
    if (closing_)
        throw_error(boost::asio::error::operation_aborted, "the SSH connection was closed");
    if (expired && *expired)
        throw_error(boost::asio::error::timed_out, "the SSH operation's deadline passed");
}

inline void ssh_connection::arm() {
    if (reading_)
        return;
    reading_ = true;
    socket_.async_wait(
        boost::asio::socket_base::wait_read,
        boost::asio::bind_cancellation_slot(read_cancel_.slot(),
                                            [self = shared_from_this()](boost::system::error_code) {
                                                self->reading_ = false;
                                                self->wake_all();
                                            }));
}

inline void ssh_connection::arm_write() {
    if (writing_ || !socket_.is_open())
        return;
    writing_ = true;
    socket_.async_wait(boost::asio::socket_base::wait_write,
                       [self = shared_from_this()](boost::system::error_code ec) {
                           self->writing_ = false;
                           if (!ec)
                               self->after_call(); // flushes, and wakes on progress
                       });
}

inline boost::asio::awaitable<void>
ssh_connection::close(std::chrono::steady_clock::duration linger) {
    if (closing_ && !session_)
        co_return;
    closing_ = true;
    // Never fails: a cancellation (of this close, or of a caller awaiting it
    // in the same coroutine) only ends the linger. Waiting again after one
    // would otherwise throw operation_aborted and skip the teardown.
    const bool throwing = co_await boost::asio::this_coro::throw_if_cancelled();
    co_await boost::asio::this_coro::throw_if_cancelled(false);
    const auto cancelled = [&](const boost::asio::cancellation_state& state) {
        return state.cancelled() != boost::asio::cancellation_type::none;
    };
    boost::system::error_code ignored;
    socket_.cancel(ignored); // a login's TCP connect, and our own waits
    wake_all();
    const ssh_deadline limit = make_deadline(std::chrono::steady_clock::now() + linger);
    // Operations end when they wake (they see closing_); each wakes us.
    while (operations_ > 0 && !limit.has_expired() &&
           !cancelled(co_await boost::asio::this_coro::cancellation_state))
        co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    // Flush what libssh still holds (channel closes), within the linger.
    while (operations_ == 0 && session_ && libssh_fd_ != -1 && !limit.has_expired() &&
           !cancelled(co_await boost::asio::this_coro::cancellation_state) && !flush_output()) {
        arm_write();
        co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    if (operations_ == 0)
        teardown(); // otherwise the last operation's guard lets the destructor do it
    co_await boost::asio::this_coro::throw_if_cancelled(throwing);
}

inline void ssh_connection::teardown() noexcept {
    closing_ = true;
    authenticated_ = false;
    if (session_) {
        ssh_session session = session_.get();
        if (ssh_get_fd(session) != SSH_INVALID_SOCKET && ssh_is_connected(session)) {
            // libssh writes only after its own poll saw POLLOUT: say it may,
            // so that SSH_MSG_DISCONNECT goes out now if the socket takes it.
            ssh_set_fd_towrite(session);
            ssh_disconnect(session); // keeps a passed descriptor open
        }
        session_.reset(); // ssh_free: closes libssh's descriptor if it still has one
    }
    if (libssh_fd_ != -1) {
        // Still open and still ours (the Asio socket keeps the connection,
        // and so its inode, alive): libssh did not close it, we must.
        struct stat now {};
        if (::fstat(libssh_fd_, &now) == 0 && now.st_ino == libssh_fd_inode_ &&
            now.st_dev == libssh_fd_device_)
            ::close(libssh_fd_);
        libssh_fd_ = -1;
    }
    boost::system::error_code ignored;
    socket_.close(ignored);
    wake_.cancel();
}

} // namespace anweddol::detail

#endif
