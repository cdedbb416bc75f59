//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_SHELL_QUOTE_HPP
#define ANWEDDOL_DETAIL_SSH_SHELL_QUOTE_HPP

#include <string>
#include <string_view>

namespace anweddol::detail {

/// Appends `value` to `out` as one single-quoted POSIX shell word: the shell
/// hands it to the program as it is, whatever it contains (`;`, `$()`,
/// quotes, newlines). A single quote cannot appear inside single quotes, so
/// each one closes the quoted run, adds an escaped quote and reopens it.
inline void append_shell_quoted(std::string& out, std::string_view value) {
    out += '\'';
    for (char c : value) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    out += '\'';
}

/// `value` as one single-quoted POSIX shell word.
inline std::string shell_quote(std::string_view value) {
    std::string quoted;
    quoted.reserve(value.size() + 2);
    append_shell_quoted(quoted, value);
    return quoted;
}

} // namespace anweddol::detail

#endif
