//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_CONNECTION_HPP
#define ANWEDDOL_DETAIL_SSH_CONNECTION_HPP

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh_error.hpp>
#include <anweddol/detail/ssh_handle.hpp>
#include <anweddol/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <libssh/libssh.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// How a server's host key is checked (see anweddol::host_key_policy).
enum class host_key_check { accept_new, known_hosts, fingerprint };

/// What one login attempt needs.
struct ssh_login_params {
    boost::asio::ip::tcp::endpoint endpoint;
    std::string host; ///< for known_hosts and messages
    std::string username;
    secret_string password;
    host_key_check host_keys = host_key_check::accept_new;
    std::string known_hosts_file;
    std::string fingerprint; ///< "SHA256:<base64>"
};

/// One client SSH session on one TCP connection, driven by libssh in
/// non-blocking mode on an Asio executor.
///
/// Why it is built this way:
/// - libssh gets a descriptor of its own, a dup of the Asio socket's. libssh
///   0.10 closes a passed fd on socket errors and in ssh_free, but not in
///   ssh_disconnect; sharing one number with Asio would risk closing it twice
///   or, worse, closing a number another thread has just reused while the
///   reactor still watches it. The Asio socket keeps the connection alive
///   for as long as this object lives, so whether libssh's copy is still ours
///   is decided by its inode, never guessed.
/// - Every libssh call that returns SSH_AGAIN is repeated as the same call
///   after wait(). Any call may read the socket and so complete packets for
///   other operations of this session (libssh buffers them per channel): the
///   socket counters tell when a call moved bytes, and then every waiting
///   operation is woken to look at its buffers again, before anyone waits on
///   the socket (which would stay silent: the bytes are already read).
/// - Pending output is flushed by this object itself, when the socket becomes
///   writable if it must wait, so that nothing is left unsent when no
///   operation runs.
///
/// Every member runs on the executor given at construction; libssh sessions
/// are not thread-safe. Held by shared_ptr: waits in flight keep it alive.
class ssh_connection : public std::enable_shared_from_this<ssh_connection> {
public:
    explicit ssh_connection(boost::asio::any_io_executor executor);
    ssh_connection(const ssh_connection&) = delete;
    ssh_connection& operator=(const ssh_connection&) = delete;
    /// Closes at once, without waiting for anything.
    ~ssh_connection();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// async: one login attempt: TCP connect, handshake, host key check,
    /// password authentication. Errors: a system_error from the socket,
    /// libssh_category(), errc::authentication_failed,
    /// errc::host_key_mismatch, asio::error::timed_out at `deadline`,
    /// operation_aborted when cancelled. On error the connection is closed.
    boost::asio::awaitable<void> login(const ssh_login_params& params,
                                       std::chrono::steady_clock::time_point deadline);

    /// The authenticated session, or nullptr.
    ssh_session session() const noexcept { return authenticated_ ? session_.get() : nullptr; }
    /// Authenticated, not closing, and libssh still has its connection.
    bool is_open() const noexcept;
    bool is_closing() const noexcept { return closing_; }
    /// The server's host key as "SHA256:<base64>", once logged in.
    const std::string& host_key_fingerprint() const noexcept { return fingerprint_; }

    /// Runs `call` (a libssh call returning int) until it returns something
    /// other than `again`, waiting on the socket in between; returns that.
    template <class Call>
    boost::asio::awaitable<int> repeat(Call call, int again, const bool* expired = nullptr);

    /// To be called after every libssh call on this session: flushes output
    /// that libssh could not write yet (waiting for the socket if it must),
    /// and wakes the waiting operations when bytes moved.
    void after_call();

    /// Counts the calls that moved bytes: a call that returned "nothing yet"
    /// may still have read packets for its own caller (libssh reads for the
    /// whole session), so a caller waits only if this did not change since
    /// before its calls.
    std::uint64_t progress() const noexcept { return progress_; }

    /// async: suspends until this session may have progressed: the socket is
    /// readable or writable as libssh needs, or another operation's call
    /// moved bytes, or wake_all() ran; returns at once if progress() is no
    /// longer `since`. Errors: operation_aborted when the caller is cancelled
    /// or the connection closes, asio::error::timed_out when `*expired` is
    /// set.
    boost::asio::awaitable<void> wait(const bool* expired, std::uint64_t since);

    /// Writes what libssh holds for the socket, as far as the socket takes
    /// it; true when nothing is left.
    bool flush_output();

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

    /// A deadline that, when it passes, sets a flag that wait() reports as
    /// timed_out, and wakes the waiters; cancelled when destroyed.
    class deadline {
    public:
        deadline(ssh_connection& c, std::chrono::steady_clock::time_point at);
        deadline(const deadline&) = delete;
        deadline& operator=(const deadline&) = delete;
        ~deadline() { timer_.cancel(); }
        const bool* expired() const noexcept { return expired_.get(); }
        bool has_expired() const noexcept { return *expired_; }

    private:
        boost::asio::steady_timer timer_;
        std::shared_ptr<bool> expired_ = std::make_shared<bool>(false);
    };

    /// async: closes gracefully: operations in flight end with
    /// operation_aborted, pending output is flushed (for up to `linger`),
    /// SSH_MSG_DISCONNECT is sent, descriptors are closed. Never fails.
    boost::asio::awaitable<void> close(std::chrono::steady_clock::duration linger);

    /// Closes at once: operations in flight end with operation_aborted
    /// when they next run. Sends SSH_MSG_DISCONNECT if the socket takes it.
    void shutdown() noexcept;

private:
    void arm();
    void arm_write();
    void disarm_if_idle();
    void check_host_key(const ssh_login_params& params);
    void restore_nonblocking() noexcept;
    void teardown() noexcept;

    boost::asio::any_io_executor executor_;
    boost::asio::ip::tcp::socket socket_;
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

// ---------------------------------------------------------------------------

inline ssh_connection::ssh_connection(boost::asio::any_io_executor executor)
    : executor_(std::move(executor))
    , socket_(executor_)
    , wake_(executor_, boost::asio::steady_timer::time_point::max()) {}

inline ssh_connection::~ssh_connection() {
    teardown();
}

inline bool ssh_connection::is_open() const noexcept {
    return authenticated_ && !closing_ && session_ && ssh_is_connected(session_.get()) != 0 &&
           ssh_get_fd(session_.get()) != SSH_INVALID_SOCKET;
}

template <class Call>
boost::asio::awaitable<int> ssh_connection::repeat(Call call, int again, const bool* expired) {
    while (true) {
        const std::uint64_t before = progress_;
        const int rc = call();
        after_call();
        if (rc != again)
            co_return rc;
        co_await wait(expired, before);
    }
}

inline bool ssh_connection::flush_output() {
    ssh_session session = session_.get();
    // SSH_WRITE_PENDING only says that libssh wants to hear about POLLOUT
    // (it asks after every write); ssh_blocking_flush says whether bytes
    // really wait, writing what the socket takes.
    return !(ssh_get_poll_flags(session) & SSH_WRITE_PENDING) ||
           ssh_blocking_flush(session, 0) != SSH_AGAIN;
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
        throw boost::system::system_error(boost::asio::error::operation_aborted,
                                          "the SSH connection was closed");
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
        throw boost::system::system_error(boost::asio::error::operation_aborted,
                                          "the SSH operation was cancelled");
    if (closing_)
        throw boost::system::system_error(boost::asio::error::operation_aborted,
                                          "the SSH connection was closed");
    if (expired && *expired)
        throw boost::system::system_error(boost::asio::error::timed_out,
                                          "the SSH operation's deadline passed");
}

inline void ssh_connection::arm() {
    if (!reading_) {
        reading_ = true;
        socket_.async_wait(
            boost::asio::ip::tcp::socket::wait_read,
            boost::asio::bind_cancellation_slot(
                read_cancel_.slot(), [self = shared_from_this()](boost::system::error_code) {
                    self->reading_ = false;
                    self->wake_all();
                }));
    }
}

inline void ssh_connection::arm_write() {
    if (writing_ || !socket_.is_open())
        return;
    writing_ = true;
    socket_.async_wait(boost::asio::ip::tcp::socket::wait_write,
                       [self = shared_from_this()](boost::system::error_code ec) {
                           self->writing_ = false;
                           if (!ec)
                               self->after_call(); // flushes, and wakes on progress
                       });
}

inline void ssh_connection::disarm_if_idle() {
    // A read wait left armed on an idle session would keep its io_context's
    // run() from returning.
    if (waiters_ == 0 && reading_)
        read_cancel_.emit(boost::asio::cancellation_type::total);
}

inline ssh_connection::deadline::deadline(ssh_connection& c,
                                          std::chrono::steady_clock::time_point at)
    : timer_(c.executor_, at) {
    if (at == std::chrono::steady_clock::time_point::max())
        return;
    timer_.async_wait(
        [expired = expired_, weak = c.weak_from_this()](boost::system::error_code ec) {
            if (ec)
                return;
            *expired = true;
            if (auto self = weak.lock()) {
                if (!self->session_) // still in the TCP connect
                    self->socket_.cancel();
                self->wake_all();
            }
        });
}

inline void ssh_connection::restore_nonblocking() noexcept {
    // libssh makes the descriptor blocking when it sees it connected; the
    // descriptor shares its flags with Asio's, and libssh's writes must not
    // block the executor's thread.
    const int fd = ssh_get_fd(session_.get());
    if (fd == SSH_INVALID_SOCKET)
        return;
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags != -1 && !(flags & O_NONBLOCK))
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

inline boost::asio::awaitable<void>
ssh_connection::close(std::chrono::steady_clock::duration linger) {
    if (closing_ && !session_)
        co_return;
    closing_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored); // a login's TCP connect, and our own waits
    wake_all();
    deadline limit(*this, std::chrono::steady_clock::now() + linger);
    // Operations end when they wake (they see closing_); each wakes us.
    while (operations_ > 0 && !limit.has_expired())
        co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    // Flush what libssh still holds (channel closes), within the linger.
    while (operations_ == 0 && session_ && libssh_fd_ != -1 && !limit.has_expired() &&
           !flush_output()) {
        arm_write();
        co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    if (operations_ == 0)
        teardown(); // otherwise the last operation's guard lets the destructor do it
}

inline void ssh_connection::shutdown() noexcept {
    closing_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    wake_all();
    if (operations_ == 0)
        teardown();
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

#include <anweddol/detail/ssh_login.hpp>

#endif
