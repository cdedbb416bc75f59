//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_INITIATE_HPP
#define ANWEDDOL_DETAIL_SSH_INITIATE_HPP

#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/diagnostics.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>

#include <exception>
#include <type_traits>
#include <utility>

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

/// Awaits `operation`, and on failure fills `*diag` before rethrowing as
/// error_with_diagnostics: a caller who passed diagnostics gets them filled
/// in coroutine mode too, as with any other token.
template <class T>
boost::asio::awaitable<T> recording_diagnostics(boost::asio::awaitable<T> operation,
                                                diagnostics* diag) {
    std::exception_ptr failure;
    try {
        if (diag)
            diag->clear();
        co_return co_await std::move(operation);
    } catch (const boost::system::system_error&) {
        failure = std::current_exception();
    }
    auto [ec, found] = to_error(failure);
    if (diag)
        *diag = found;
    throw error_with_diagnostics(ec, std::move(found));
}

/// The completion signature of an operation producing a `T`. (A
/// conditional_t over both function types, as async/initiate.hpp's
/// completion_signature_t is, forms `void(error_code, void)` for a void
/// operation, which is ill-formed: hence a specialisation.)
template <class T>
struct shell_signature {
    using type = void(boost::system::error_code, T);
};
template <>
struct shell_signature<void> {
    using type = void(boost::system::error_code);
};

/// Starts one of the shell's operations for any completion token, as
/// detail::initiate_coroutine does: the coroutine itself for the default
/// token (throwing error_with_diagnostics), otherwise co_spawned on
/// `executor` and completing with shell_signature<T>, a cancellation slot
/// bound to the handler cancelling it. `*diag`, when given, is filled
/// whatever the token.
template <class T, class CompletionToken>
auto initiate_shell_operation(boost::asio::any_io_executor executor,
                              boost::asio::awaitable<T> operation, diagnostics* diag,
                              CompletionToken&& token) {
    if (diag)
        operation = recording_diagnostics(std::move(operation), diag);
    if constexpr (std::is_same_v<std::decay_t<CompletionToken>, default_completion_token>) {
        return with_diagnostics(std::move(operation));
    } else {
        return boost::asio::async_initiate<CompletionToken, typename shell_signature<T>::type>(
            [](auto handler, boost::asio::any_io_executor executor,
               boost::asio::awaitable<T> operation) {
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto handler_executor = boost::asio::get_associated_executor(handler, executor);
                auto complete = [handler = std::move(handler)](std::exception_ptr e,
                                                               auto... value) mutable {
                    const boost::system::error_code ec =
                        e ? to_error(e).first : boost::system::error_code();
                    std::move(handler)(ec, std::move(value)...);
                };
                boost::asio::co_spawn(executor, std::move(operation),
                                      boost::asio::bind_executor(
                                          handler_executor, boost::asio::bind_cancellation_slot(
                                                                slot, std::move(complete))));
            },
            token, std::move(executor), std::move(operation));
    }
}

} // namespace anweddol::detail

#endif
