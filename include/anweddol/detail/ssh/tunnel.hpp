//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_TUNNEL_HPP
#define ANWEDDOL_DETAIL_SSH_TUNNEL_HPP

#include <anweddol/detail/ssh/command_channel.hpp>
#include <anweddol/detail/ssh/connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <libssh/libssh.h>

#include <poll.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace anweddol::detail {

/// One direct-tcpip channel of a jump host's session, relayed to the local
/// end of a socketpair whose other end the tunnel's user holds: two
/// coroutines on the session's executor, one per direction.
///
/// Why it is built this way:
/// - The user sees a plain stream socket, so an SSH login (libssh, on a dup
///   of it) runs through the tunnel exactly as over TCP.
/// - EOF travels each way (ssh_channel_send_eof, shutdown(send)); the relay
///   ends when the user closes its end altogether (POLLHUP), when the far
///   side closes the channel, when the session fails or closes, or on
///   stop(). It then holds nothing: the channel is closed and freed and the
///   local end closed when the last coroutine lets the tunnel go.
/// - It holds an operation of the session for its life: the session is not
///   torn down (which frees its channels) under it.
class ssh_tunnel : public std::enable_shared_from_this<ssh_tunnel> {
public:
    using socket_type = boost::asio::generic::stream_protocol::socket;

    ssh_tunnel(std::shared_ptr<ssh_connection> connection, std::unique_ptr<command_channel> channel,
               socket_type relay_end)
        : guard_(connection)
        , connection_(std::move(connection))
        , channel_(std::move(channel))
        , local_(std::move(relay_end)) {}
    ssh_tunnel(const ssh_tunnel&) = delete;
    ssh_tunnel& operator=(const ssh_tunnel&) = delete;

    /// Starts relaying, in both directions.
    void start() {
        boost::asio::co_spawn(connection_->get_executor(), to_channel(shared_from_this()),
                              boost::asio::detached);
        boost::asio::co_spawn(connection_->get_executor(), from_channel(shared_from_this()),
                              boost::asio::detached);
    }

    /// Ends the relay: both directions stop when they next run, and the
    /// tunnel then frees everything it holds.
    void stop() noexcept {
        if (stopping_)
            return;
        stopping_ = true;
        boost::system::error_code ignored;
        local_.cancel(ignored);
        connection_->wake_all();
    }

private:
    /// Bytes the user wrote → the channel, within the channel's window.
    static boost::asio::awaitable<void> to_channel(std::shared_ptr<ssh_tunnel> self) {
        try {
            co_await self->relay_to_channel();
        } catch (...) {
            self->stop(); // the session failed or closed: the tunnel goes with it
        }
    }

    boost::asio::awaitable<void> relay_to_channel() {
        std::array<char, 32768> buffer;
        while (!stopping_) {
            auto [ec, n] = co_await local_.async_read_some(
                boost::asio::buffer(buffer), boost::asio::as_tuple(boost::asio::use_awaitable));
            if (stopping_)
                co_return;
            if (ec) {
                if (ec == boost::asio::error::eof) {
                    ssh_channel_send_eof(channel_->get()); // fails only on a closed channel
                    connection_->after_call();
                    if (!user_hung_up() && !remote_done_)
                        co_return; // half closed: the answer still flows back
                }
                stop();
                co_return;
            }
            std::size_t written = 0;
            while (written < n) {
                if (stopping_)
                    co_return;
                const std::uint64_t before = connection_->progress();
                int sent = 0;
                // Queue only while libssh's output is flushed: its buffer
                // would otherwise grow with whatever the user writes.
                if (connection_->flush_output()) {
                    // The whole rest: libssh sends what the window allows,
                    // and with none, reads the packets that may open it.
                    sent = ssh_channel_write(channel_->get(), buffer.data() + written,
                                             static_cast<std::uint32_t>(n - written));
                    connection_->after_call();
                    if (sent == SSH_ERROR) {
                        stop(); // the channel or the session closed
                        co_return;
                    }
                    written += static_cast<std::size_t>(sent);
                }
                if (sent == 0)
                    co_await connection_->wait(nullptr, before);
            }
        }
    }

    /// Bytes from the channel → the user's end.
    static boost::asio::awaitable<void> from_channel(std::shared_ptr<ssh_tunnel> self) {
        try {
            co_await self->relay_from_channel();
        } catch (...) {
            self->stop();
        }
    }

    boost::asio::awaitable<void> relay_from_channel() {
        std::array<char, 32768> buffer;
        while (!stopping_) {
            const std::uint64_t before = connection_->progress();
            const int n = ssh_channel_read_nonblocking(
                channel_->get(), buffer.data(), static_cast<std::uint32_t>(buffer.size()), 0);
            connection_->after_call();
            if (n > 0) {
                // Not reading the channel meanwhile keeps its window shut:
                // a slow user slows the far end down, memory stays bounded.
                auto [ec, ignored] = co_await boost::asio::async_write(
                    local_, boost::asio::buffer(buffer.data(), static_cast<std::size_t>(n)),
                    boost::asio::as_tuple(boost::asio::use_awaitable));
                if (ec) {
                    stop(); // the user closed its end
                    co_return;
                }
                continue;
            }
            if (n == SSH_EOF || (n == 0 && channel_->events().closed)) {
                remote_done_ = true;
                boost::system::error_code ignored;
                local_.shutdown(socket_type::shutdown_send, ignored);
                if (channel_->events().closed)
                    stop(); // nothing can be sent to the far end any more
                co_return;
            }
            if (n < 0) {
                stop(); // SSH_ERROR: the session failed
                co_return;
            }
            co_await connection_->wait(nullptr, before);
        }
    }

    /// Whether the user closed its end altogether rather than only for
    /// writing: a socketpair end sees POLLHUP only then.
    bool user_hung_up() noexcept {
        pollfd event{};
        event.fd = local_.native_handle();
        event.events = POLLOUT;
        return ::poll(&event, 1, 0) == 1 && (event.revents & (POLLHUP | POLLERR)) != 0;
    }

    // The guard outlives the channel: members go in reverse order.
    ssh_connection::operation_guard guard_;
    std::shared_ptr<ssh_connection> connection_;
    std::unique_ptr<command_channel> channel_;
    socket_type local_;
    bool stopping_ = false;
    bool remote_done_ = false; // the far end sent EOF
};

} // namespace anweddol::detail

#endif
