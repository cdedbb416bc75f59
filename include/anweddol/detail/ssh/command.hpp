//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_COMMAND_HPP
#define ANWEDDOL_DETAIL_SSH_COMMAND_HPP

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh/command_channel.hpp>
#include <anweddol/detail/ssh/command_result.hpp>
#include <anweddol/detail/ssh/connection.hpp>
#include <anweddol/detail/ssh/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <libssh/libssh.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// async: runs `command` on its own channel of `connection`, several at once if the
/// caller likes. Output is drained from libssh's buffers before
/// waiting on the socket again. Errors: errc::shell_not_open, libssh's,
/// errc::output_limit_exceeded, asio::error::timed_out at the options'
/// deadline, operation_aborted when cancelled or the shell closes; the
/// channel is closed in every case.
inline boost::asio::awaitable<command_result>
run_command(std::shared_ptr<ssh_connection> connection, std::string command,
            command_options options) {
    // By value: a coroutine outlives the full expression that called it. The
    // command may hold a password: wiped when this ends.
    struct wipe_on_exit {
        std::string& secret;
        std::optional<std::string>& input;
        ~wipe_on_exit() {
            cleanse(secret);
            if (input)
                cleanse(*input);
        }
    } wipe{command, options.std_in};
    if (!connection || !connection->is_open())
        throw_error(errc::shell_not_open, "the endpoint shell is not open");
    ssh_connection::operation_guard guard(connection);
    const ssh_deadline limit =
        connection->make_deadline(options.timeout > std::chrono::steady_clock::duration::zero()
                                      ? std::chrono::steady_clock::now() + options.timeout
                                      : std::chrono::steady_clock::time_point::max());
    ssh_session session = connection->session();
    command_channel channel(connection);
    bool opened = false;
    bool started = false;
    const auto abandon = [&]() noexcept {
        if (!opened)
            channel.reap_in_background();
        else if (started)
            channel.kill_command();
    };
    try {
        auto opening = connection->repeat([&] { return ssh_channel_open_session(channel.get()); },
                                          SSH_AGAIN, limit.expired());
        if (co_await std::move(opening) != SSH_OK)
            throw_libssh_error(session, "cannot open an SSH channel");
        opened = true;
        auto requesting = connection->repeat(
            [&] { return ssh_channel_request_exec(channel.get(), command.c_str()); }, SSH_AGAIN,
            limit.expired());
        if (co_await std::move(requesting) != SSH_OK)
            throw_libssh_error(session, "the SSH server did not run the command");
        started = true;

        const std::string_view input = options.std_in ? *options.std_in : std::string_view{};
        std::size_t written = 0;
        bool input_closed = false;
        bool ended[2] = {false, false};
        std::size_t kept = 0;
        command_result result;
        std::array<char, 32768> buffer;
        while (true) {
            const std::uint64_t before = connection->progress();
            bool progressed = false;
            if (!input_closed) {
                // Queue input only while libssh's output is flushed: the
                // session's buffer would otherwise grow with the input.
                if (written < input.size() && connection->flush_output()) {
                    const std::size_t chunk =
                        std::min<std::size_t>({input.size() - written, buffer.size(),
                                               ssh_channel_window_size(channel.get())});
                    if (chunk > 0) {
                        const int n = ssh_channel_write(channel.get(), input.data() + written,
                                                        static_cast<std::uint32_t>(chunk));
                        if (n == SSH_ERROR)
                            throw_libssh_error(session, "writing the command's input failed");
                        written += static_cast<std::size_t>(n);
                        progressed = n > 0;
                    }
                }
                if (written == input.size()) {
                    if (ssh_channel_send_eof(channel.get()) == SSH_ERROR)
                        throw_libssh_error(session, "closing the command's input failed");
                    input_closed = true;
                }
            }
            for (int stream = 0; stream < 2; ++stream) {
                while (!ended[stream]) {
                    const int n = ssh_channel_read_nonblocking(channel.get(), buffer.data(),
                                                               buffer.size(), stream);
                    if (n == SSH_EOF) {
                        ended[stream] = true;
                    } else if (n == SSH_ERROR) {
                        connection->after_call();
                        throw_libssh_error(session, "reading the command's output failed");
                    } else if (n == 0) {
                        break; // drained: what remains is still on its way
                    } else {
                        progressed = true;
                        const std::string_view piece(buffer.data(), static_cast<std::size_t>(n));
                        const auto which = stream ? output_stream::std_err : output_stream::std_out;
                        if (options.on_output) {
                            options.on_output(which, piece);
                            continue;
                        }
                        kept += piece.size();
                        if (kept > options.max_output_bytes)
                            throw_error(errc::output_limit_exceeded,
                                        "the command printed more than " +
                                            std::to_string(options.max_output_bytes) + " bytes");
                        (stream ? result.std_err : result.std_out).append(piece);
                    }
                }
            }
            const channel_events& events = channel.events();
            const bool finished =
                events.exit_status || !events.exit_signal.empty() || events.closed;
            if (ended[0] && ended[1] && !finished) {
                // Both streams ended, so no read pumps the session any more:
                // this call handles the packets that arrived, once (it waits
                // only in a blocking session), and the status comes through
                // the callbacks.
                ssh_channel_get_exit_status(channel.get()); // -1 is also "none yet"
                if (!ssh_is_connected(session)) {
                    connection->after_call();
                    throw_libssh_error(session, "waiting for the command's exit status failed");
                }
            }
            connection->after_call();
            if (ended[0] && ended[1] &&
                (events.exit_status || !events.exit_signal.empty() || events.closed)) {
                result.exit_status = events.exit_status.value_or(-1);
                result.exit_signal = events.exit_signal;
                co_return result;
            }
            if (!progressed)
                co_await connection->wait(limit.expired(), before);
        }
    } catch (const boost::system::system_error& e) {
        abandon();
        if (e.code() == boost::asio::error::timed_out && limit.has_expired())
            throw_error(e.code(),
                        "the command did not end within " +
                            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               options.timeout)
                                               .count()) +
                            " ms; its channel was closed");
        throw;
    } catch (...) {
        // Whatever ends the command early (an on_output callback that threw,
        // an allocation failure) must not leave it running on the server.
        abandon();
        throw;
    }
}

} // namespace anweddol::detail

#endif
