//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_COMPLETION_TOKEN_HPP
#define ANWEDDOL_DETAIL_SSH_COMPLETION_TOKEN_HPP

#include <anweddol/detail/diagnostics.hpp>

#include <type_traits>

namespace anweddol {
struct endpoint_shell_options;
struct command_options;
} // namespace anweddol

namespace anweddol::detail {

/// Tells a completion token from the shell's own argument types, which its
/// overloads also take just before the token.
template <class T>
concept shell_completion_token = !std::is_same_v<std::remove_cvref_t<T>, endpoint_shell_options> &&
                                 !std::is_same_v<std::remove_cvref_t<T>, command_options> &&
                                 !std::is_same_v<std::remove_cvref_t<T>, diagnostics>;

} // namespace anweddol::detail

#endif
