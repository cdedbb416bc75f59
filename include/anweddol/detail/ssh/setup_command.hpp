//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_SETUP_COMMAND_HPP
#define ANWEDDOL_DETAIL_SSH_SETUP_COMMAND_HPP

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/ssh/shell_quote.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// The guest's sshd runs a command as one argument (`sh -c COMMAND`), and
/// Linux refuses to exec an argument longer than 32 pages (MAX_ARG_STRLEN).
inline constexpr std::size_t max_remote_command_length = 32 * 4096 - 1;

inline constexpr std::string_view setup_script = "/bin/anweddol_container_setup.sh";

/// The command that hands a container over: `sudo` running the setup script
/// with the three values as one quoted word each, so that whatever they
/// contain reaches the script as it is, and the script judges them (it
/// refuses invalid usernames, control characters, bad ports). Only what
/// cannot reach it intact is refused here, with errc::invalid_argument: a
/// NUL byte (it would end the argument early) and a command too long to exec.
inline std::string setup_script_command(std::string_view username, std::string_view password,
                                        std::uint16_t port) {
    if (username.find('\0') != std::string_view::npos ||
        password.find('\0') != std::string_view::npos)
        throw_error(errc::invalid_argument, "a client credential contains a NUL byte");
    // Reserved at its exact size: a reallocation would leave a copy of the
    // password behind, unwiped.
    const std::string port_text = std::to_string(port);
    const auto quoted_size = [](std::string_view v) {
        return v.size() + 2 + 3 * static_cast<std::size_t>(std::count(v.begin(), v.end(), '\''));
    };
    std::string command = "sudo ";
    command.reserve(command.size() + setup_script.size() + quoted_size(username) +
                    quoted_size(password) + quoted_size(port_text) + 3);
    command += setup_script;
    command += ' ';
    append_shell_quoted(command, username);
    command += ' ';
    append_shell_quoted(command, password);
    command += ' ';
    append_shell_quoted(command, port_text);
    if (const std::size_t size = command.size(); size > max_remote_command_length) {
        cleanse(command);
        throw_error(errc::invalid_argument,
                    "the client credentials are too long for one remote command (" +
                        std::to_string(size) + " bytes quoted, at most " +
                        std::to_string(max_remote_command_length) + ")");
    }
    return command;
}

/// The command that hands a container over with the password on the setup
/// script's standard input (`--password-stdin USERNAME PORT`), so that it is
/// in no command line; send standard_input_password(password) as its input.
inline std::string setup_script_stdin_command(std::string_view username, std::uint16_t port) {
    if (username.find('\0') != std::string_view::npos)
        throw_error(errc::invalid_argument, "a client username contains a NUL byte");
    std::string command = "sudo ";
    command += setup_script;
    command += " --password-stdin ";
    append_shell_quoted(command, username);
    command += ' ';
    append_shell_quoted(command, std::to_string(port));
    return command;
}

/// The setup script's input for `--password-stdin` or
/// `--rotate-endpoint-password`: the password and a newline. The script
/// reads one line: a password with a line break in it would be cut short,
/// so it is refused here, as are NUL bytes.
inline std::string standard_input_password(std::string_view password) {
    if (password.find_first_of(std::string_view("\0\n\r", 3)) != std::string_view::npos)
        throw_error(errc::invalid_argument,
                    "a password sent on standard input must not contain NUL, CR or LF");
    std::string input;
    input.reserve(password.size() + 1); // exact: no reallocation leaves a copy behind
    input += password;
    input += '\n';
    return input;
}

/// The command that sets the endpoint account's password from standard
/// input, in images that announce `rotate-endpoint-password`.
inline std::string rotate_endpoint_password_command() {
    return "sudo " + std::string(setup_script) + " --rotate-endpoint-password";
}

} // namespace anweddol::detail

#endif
