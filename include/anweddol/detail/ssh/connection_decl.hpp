//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONNECTION_DECL_HPP
#define ANWEDDOL_DETAIL_SSH_CONNECTION_DECL_HPP

#include <anweddol/detail/ssh/deadline.hpp>
#include <anweddol/detail/ssh/error.hpp>
#include <anweddol/detail/ssh/handle.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <libssh/libssh.h>

#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace anweddol::detail {

// The class alone; connection.hpp adds its member bodies (include that one).

/// One client SSH session on one stream connection (TCP, or one end of a
/// socketpair whose bytes an ssh_jump relays), driven by libssh in
/// non-blocking mode on an Asio executor. Logging in is login.hpp's job; this
/// is the transport: waits, output flushing, closing.
///
/// Why it is built this way:
/// - libssh gets a descriptor of its own, a dup of the Asio socket's. libssh
///   0.10 closes a passed fd on socket errors and in ssh_free, but not in
///   ssh_disconnect; sharing one number with Asio would risk closing it twice
///   or closing a number another thread has just reused while the reactor
///   still watches it. The Asio socket keeps the connection (and so the
///   inode) alive, so whether libssh's copy is still ours is decided by its
///   inode, never guessed.
/// - A libssh call that returns SSH_AGAIN is repeated as the same call after
///   wait(). Any call may read packets for other operations of this session
///   (libssh buffers them per channel): the socket counters tell when a call
///   moved bytes, and then every waiting operation is woken to look at its
///   buffers again before anyone waits on the (now silent) socket.
/// - Pending output is flushed by this object itself, when the socket becomes
///   writable, so that nothing is left unsent when no operation runs.
///
/// Every member runs on the executor given at construction; libssh sessions
/// are not thread-safe. Held by shared_ptr: waits in flight keep it alive.
class ssh_connection : public std::enable_shared_from_this<ssh_connection> {
public:
    explicit ssh_connection(boost::asio::any_io_executor executor)
        : executor_(std::move(executor))
        , socket_(executor_)
        , wake_(executor_, boost::asio::steady_timer::time_point::max()) {}
    ssh_connection(const ssh_connection&) = delete;
    ssh_connection& operator=(const ssh_connection&) = delete;
    /// Closes at once, without waiting for anything.
    ~ssh_connection() { teardown(); }

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }
    /// The stream the session runs on, for login() to connect: generic, so
    /// that it holds a TCP socket or the local end of a jump host's tunnel.
    boost::asio::generic::stream_protocol::socket& socket() noexcept { return socket_; }

    /// The authenticated session, or nullptr.
    ssh_session session() const noexcept { return authenticated_ ? session_.get() : nullptr; }
    /// Authenticated, not closing, and libssh still has its connection.
    bool is_open() const noexcept {
        return authenticated_ && !closing_ && session_ && ssh_is_connected(session_.get()) != 0 &&
               ssh_get_fd(session_.get()) != SSH_INVALID_SOCKET;
    }
    bool is_closing() const noexcept { return closing_; }
    /// The server's host key as "SHA256:<base64>", once logged in.
    const std::string& host_key_fingerprint() const noexcept { return fingerprint_; }

    /// For login(): a non-blocking libssh session on a dup of the connected
    /// socket, counting its bytes. Options other than the descriptor are the
    /// caller's to set.
    ssh_session start_session();
    /// For login(): the handshake and authentication succeeded.
    void set_authenticated(std::string fingerprint) {
        fingerprint_ = std::move(fingerprint);
        authenticated_ = true;
    }
    /// libssh makes the descriptor blocking when it sees it connected; it
    /// shares its flags with Asio's, and libssh's writes must not block the
    /// executor's thread.
    void restore_nonblocking() noexcept;

    /// Runs `call` (a libssh call returning int) until it returns something
    /// other than `again`, waiting on the socket in between; returns that.
    template <class Call>
    boost::asio::awaitable<int> repeat(Call call, int again, const bool* expired = nullptr) {
        while (true) {
            const std::uint64_t before = progress_;
            const int rc = call();
            after_call();
            if (rc != again)
                co_return rc;
            co_await wait(expired, before);
        }
    }

    /// To be called after every libssh call on this session: flushes output
    /// that libssh could not write yet (waiting for the socket if it must),
    /// and wakes the waiting operations when bytes moved.
    void after_call();

    /// Counts the calls that moved bytes: a call that returned "nothing yet"
    /// may still have read packets for its own caller, so a caller waits only
    /// if this did not change since before its calls.
    std::uint64_t progress() const noexcept { return progress_; }

    /// async: suspends until this session may have progressed (the socket is
    /// ready as libssh needs, another call moved bytes, wake_all() ran);
    /// returns at once if progress() is no longer `since`. Errors:
    /// operation_aborted when the caller is cancelled or the connection
    /// closes, asio::error::timed_out when `*expired` is set.
    boost::asio::awaitable<void> wait(const bool* expired, std::uint64_t since);

    /// Writes what libssh holds for the socket, as far as the socket takes
    /// it; true when nothing is left.
    bool flush_output() {
        ssh_session session = session_.get();
        // SSH_WRITE_PENDING only says that libssh wants to hear about POLLOUT
        // (it asks after every write); ssh_blocking_flush says whether bytes
        // really wait, writing what the socket takes.
        return !(ssh_get_poll_flags(session) & SSH_WRITE_PENDING) ||
               ssh_blocking_flush(session, 0) != SSH_AGAIN;
    }

    /// Wakes every waiting operation (they look at their state again).
    void wake_all() { wake_.cancel(); }

    /// Counts an operation in flight; close() waits until none is left, as
    /// libssh frees the channels of a session it disconnects.
    class operation_guard {
    public:
        explicit operation_guard(std::shared_ptr<ssh_connection> c)
            : connection_(std::move(c)) {
            ++connection_->operations_;
        }
        operation_guard(const operation_guard&) = delete;
        operation_guard& operator=(const operation_guard&) = delete;
        ~operation_guard() {
            --connection_->operations_;
            connection_->wake_all();
            connection_->disarm_if_idle();
        }

    private:
        std::shared_ptr<ssh_connection> connection_;
    };

    /// A deadline for an operation of this session: when it passes, waits
    /// report timed_out (and a connect in progress is cancelled).
    ssh_deadline make_deadline(std::chrono::steady_clock::time_point at) {
        return ssh_deadline(executor_, at, [weak = weak_from_this()] {
            if (auto self = weak.lock()) {
                if (!self->session_) { // still connecting the transport
                    // Not open yet while a tunnel opens (the tunnel keeps
                    // its own deadline): cancel() would throw from this
                    // timer's handler, out of the io_context's run().
                    boost::system::error_code ignored;
                    self->socket_.cancel(ignored);
                }
                self->wake_all();
            }
        });
    }

    /// async: closes gracefully: operations in flight end with
    /// operation_aborted, pending output is flushed (for up to `linger`),
    /// SSH_MSG_DISCONNECT is sent, descriptors are closed. Never fails:
    /// cancelling it only cuts the linger short.
    boost::asio::awaitable<void> close(std::chrono::steady_clock::duration linger);

    /// Closes at once: operations in flight end with operation_aborted
    /// when they next run. Sends SSH_MSG_DISCONNECT if the socket takes it.
    void shutdown() noexcept {
        closing_ = true;
        boost::system::error_code ignored;
        socket_.cancel(ignored);
        wake_all();
        if (operations_ == 0)
            teardown();
    }

    /// Frees the session and closes the descriptors now, whatever runs.
    void teardown() noexcept;

private:
    void arm();
    void arm_write();
    void disarm_if_idle() {
        // A read wait left armed on an idle session would keep its
        // io_context's run() from returning.
        if (waiters_ == 0 && reading_)
            read_cancel_.emit(boost::asio::cancellation_type::total);
    }

    boost::asio::any_io_executor executor_;
    boost::asio::generic::stream_protocol::socket socket_;
    boost::asio::steady_timer wake_; // a broadcast condition: cancel() wakes all waiters
    boost::asio::cancellation_signal read_cancel_;
    session_handle session_;
    ssh_counter_struct counter_{}; // socket bytes, updated by libssh
    std::uint64_t seen_in_ = 0;
    std::uint64_t seen_out_ = 0;
    std::uint64_t progress_ = 0;
    int libssh_fd_ = -1; // our dup, as handed to libssh
    ino_t libssh_fd_inode_ = 0;
    dev_t libssh_fd_device_ = 0;
    std::size_t waiters_ = 0;
    std::size_t operations_ = 0;
    bool reading_ = false;
    bool writing_ = false;
    bool authenticated_ = false;
    bool closing_ = false;
    std::string fingerprint_;
};

} // namespace anweddol::detail

#endif
