//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_COMMAND_RESULT_HPP
#define ANWEDDOL_DETAIL_SSH_COMMAND_RESULT_HPP

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

// Public types (anweddol::command_result, command_options): defined here so
// that the SSH internals need no public header; <anweddol/command_result.hpp>
// is the one users include.
namespace anweddol {

/// What a remote command printed, and how it ended. A non-zero exit status
/// is a value, not an error.
struct command_result {
    std::string std_out;
    std::string std_err;
    /// The command's exit status; -1 when the server sent none (the command
    /// was killed by a signal, see exit_signal, or the channel just closed).
    int exit_status = -1;
    /// The signal that killed the command, such as "KILL"; empty otherwise.
    std::string exit_signal;
};

/// Which stream a piece of output came from.
enum class output_stream { std_out, std_err };

/// How one command runs (endpoint_shell_instance::execute and
/// execute_command). The defaults run it as the reference does: no input, no
/// deadline, output collected in memory.
struct command_options {
    /// Sent to the command's standard input, which is then closed. Without
    /// it the input is closed at once, so that a command reading it ends.
    std::optional<std::string> std_in;
    /// The command is abandoned if it has not ended by then: the server is
    /// asked to kill it (SIGKILL to its process group) and its channel is
    /// closed; execute() fails with asio::error::timed_out. The same happens
    /// when the operation is cancelled or the output cap is hit. Zero means
    /// no deadline.
    std::chrono::steady_clock::duration timeout{};
    /// The most output (stdout and stderr together) kept in memory; more
    /// fails with errc::output_limit_exceeded and closes the channel.
    std::size_t max_output_bytes = std::size_t{64} << 20;
    /// When set, output is handed over piece by piece as it arrives, in
    /// order, instead of being kept (so max_output_bytes does not apply), and
    /// the result's std_out and std_err stay empty. Memory stays bounded by
    /// SSH flow control: the server sends no more until the pieces are taken.
    std::function<void(output_stream, std::string_view)> on_output;
};

} // namespace anweddol

#endif
