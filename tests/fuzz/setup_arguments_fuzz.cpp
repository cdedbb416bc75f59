// The guest setup script's arguments: setup_script_command() refuses only
// what cannot reach the script intact (a NUL byte, a command too long to
// exec), and everything it accepts reaches the script as exactly three
// arguments, byte for byte, through the guest's shell and the host's.
//
// Input: username 0xFF password 0xFF port (2 bytes) 0xFF repeat (2 bytes):
// the password is repeated, so that small inputs reach the length limit.
#include "fuzz_support.hpp"

#include <anweddol/detail/ssh/setup_command.hpp>
#include <anweddol/error.hpp>

#include <boost/system/system_error.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace anweddol::fuzz;
    namespace detail = anweddol::detail;
    const auto fields = split_fields(data, size, 4);
    const std::string& username = fields[0];
    const auto two_bytes = [](const std::string& f) {
        return static_cast<unsigned>(f.size() > 0 ? static_cast<unsigned char>(f[0]) : 0) |
               static_cast<unsigned>(f.size() > 1 ? static_cast<unsigned char>(f[1]) : 0) << 8;
    };
    const auto port = static_cast<std::uint16_t>(two_bytes(fields[2]));
    const unsigned repeat = std::max(1u, two_bytes(fields[3]));
    std::string password;
    for (unsigned i = 0; i < repeat && password.size() <= 2 * detail::max_remote_command_length;
         ++i)
        password += fields[1];

    const bool has_nul =
        username.find('\0') != std::string::npos || password.find('\0') != std::string::npos;
    std::string command;
    try {
        command = detail::setup_script_command(username, password, port);
    } catch (const boost::system::system_error& e) {
        ANWEDDOL_FUZZ_CHECK(e.code() == anweddol::errc::invalid_argument, e.what());
        // Refused: only for a NUL, or when even unquoted it is near the limit.
        ANWEDDOL_FUZZ_CHECK(has_nul || username.size() + password.size() + 48 >
                                           detail::max_remote_command_length / 4,
                            e.what());
        return 0;
    }
    ANWEDDOL_FUZZ_CHECK(!has_nul, "a NUL byte was accepted");
    ANWEDDOL_FUZZ_CHECK(command.size() <= detail::max_remote_command_length);
    const std::string prefix = "sudo " + std::string(detail::setup_script) + " ";
    ANWEDDOL_FUZZ_CHECK(command.starts_with(prefix), escaped(command));

    // What the script would receive: the same words, with printf in its
    // place, through each shell, exec'd as sshd execs it (one -c argument,
    // which Linux refuses past MAX_ARG_STRLEN: posix_spawn then fails).
    // (No longer than the command itself, so that it execs wherever that does.)
    const std::string script =
        "set -- " + command.substr(prefix.size()) + ";printf '%s\\0' $# \"$@\"";
    ANWEDDOL_FUZZ_CHECK(script.size() <= command.size());
    std::string expected =
        std::string("3") + '\0' + username + '\0' + password + '\0' + std::to_string(port) + '\0';
    for (const auto& shell : posix_shells()) {
        const shell_result got = run_shell(shell, script);
        ANWEDDOL_FUZZ_CHECK(got.status == 0 && got.out == expected,
                            shell[0] + " gave the script " + escaped(got.out) + " (status " +
                                std::to_string(got.status) + ") for " + escaped(command));
    }
    return 0;
}
