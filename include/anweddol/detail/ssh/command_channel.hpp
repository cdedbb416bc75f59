//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_COMMAND_CHANNEL_HPP
#define ANWEDDOL_DETAIL_SSH_COMMAND_CHANNEL_HPP

#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/error.hpp>
#include <anweddol/detail/ssh/handle.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <memory>
#include <optional>
#include <string>

namespace anweddol::detail {

/// What libssh tells about a channel through its callbacks, which run inside
/// whichever libssh call of the session reads the packet. The exit status
/// comes this way because ssh_channel_get_exit_status blocks in 0.10.
struct channel_events {
    ssh_channel_callbacks_struct callbacks{};
    std::optional<int> exit_status;
    std::string exit_signal;
    bool closed = false;

    channel_events() {
        callbacks.size = sizeof callbacks;
        callbacks.userdata = this;
        callbacks.channel_exit_status_function = [](ssh_session, ssh_channel, int status,
                                                    void* self) {
            static_cast<channel_events*>(self)->exit_status = status;
        };
        callbacks.channel_exit_signal_function = [](ssh_session, ssh_channel, const char* signal,
                                                    int, const char*, const char*, void* self) {
            static_cast<channel_events*>(self)->exit_signal = signal ? signal : "";
        };
        callbacks.channel_close_function = [](ssh_session, ssh_channel, void* self) {
            static_cast<channel_events*>(self)->closed = true;
        };
    }
    channel_events(const channel_events&) = delete;
    channel_events& operator=(const channel_events&) = delete;
};

/// A channel with its callbacks: removes them before freeing the channel
/// (libssh keeps a freed channel until the server's close arrives, and would
/// call them then), and frees it (which sends EOF and close if it is open).
class command_channel {
public:
    explicit command_channel(std::shared_ptr<ssh_connection> connection)
        : connection_(std::move(connection))
        , channel_(ssh_channel_new(connection_->session())) {
        if (!channel_)
            throw_libssh_error(connection_->session(), "cannot create an SSH channel");
        ssh_set_channel_callbacks(channel_.get(), &events_->callbacks);
    }
    command_channel(const command_channel&) = delete;
    command_channel& operator=(const command_channel&) = delete;
    ~command_channel() { reset(); }

    ssh_channel get() const noexcept { return channel_.get(); }
    const channel_events& events() const noexcept { return *events_; }

    void reset() noexcept {
        if (!channel_)
            return;
        ssh_remove_channel_callbacks(channel_.get(), &events_->callbacks);
        channel_.reset();
        connection_->after_call(); // the close it sent may wait for the socket
    }

    /// Asks the server to kill the command (SIGKILL to its process group;
    /// OpenSSH 7.9 and later do it): closing the channel alone leaves a
    /// command that neither reads nor writes running on the server.
    void kill_command() noexcept {
        ssh_session session = connection_->session();
        if (channel_ && !events_->closed && session && ssh_is_connected(session)) {
            ssh_channel_request_send_signal(channel_.get(), "KILL");
            connection_->after_call();
        }
    }

    /// The channel is being opened and the server will confirm it later:
    /// close it once it is confirmed, in the background, so that it does not
    /// stay open on the server. Used when a command is abandoned early.
    void reap_in_background() noexcept {
        if (!channel_)
            return;
        ssh_remove_channel_callbacks(channel_.get(), &events_->callbacks);
        boost::asio::co_spawn(connection_->get_executor(),
                              finish_opening(connection_, std::move(channel_)),
                              boost::asio::detached);
    }

private:
    static boost::asio::awaitable<void> finish_opening(std::shared_ptr<ssh_connection> connection,
                                                       channel_handle channel) {
        ssh_connection::operation_guard guard(connection);
        try {
            co_await connection->repeat([&] { return ssh_channel_open_session(channel.get()); },
                                        SSH_AGAIN);
        } catch (...) {
            // closing, or the session failed: freeing it is all there is to do
        }
        channel.reset();
        connection->after_call();
    }

    std::shared_ptr<ssh_connection> connection_;
    std::unique_ptr<channel_events> events_ = std::make_unique<channel_events>();
    channel_handle channel_;
};

} // namespace anweddol::detail

#endif
