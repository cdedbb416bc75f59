//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_INITIATE_HPP
#define ANWEDDOL_DETAIL_ASYNC_INITIATE_HPP

#include <anweddol/detail/diagnostics.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <new>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace anweddol {

/// The completion token every async operation of anweddol takes by default:
/// `co_await op()` returns the result and throws error_with_diagnostics.
using default_completion_token = boost::asio::use_awaitable_t<>;

namespace detail {

/// The completion signature of an operation that produces a `T`. A
/// specialisation, not std::conditional_t: that would also form the
/// ill-formed `void(error_code, void)` for T = void.
template <class T>
struct completion_signature {
    using type = void(boost::system::error_code, T);
};
template <>
struct completion_signature<void> {
    using type = void(boost::system::error_code);
};
template <class T>
using completion_signature_t = typename completion_signature<T>::type;

/// The error code and diagnostics of a caught exception. A system_error's
/// what() ends with its code's text, which the code already says: it is
/// dropped from the message.
inline std::pair<boost::system::error_code, diagnostics> to_error(std::exception_ptr e) noexcept {
    try {
        try {
            std::rethrow_exception(e);
        } catch (const error_with_diagnostics& error) {
            return {error.code(), error.get_diagnostics()};
        } catch (const boost::system::system_error& error) {
            std::string_view what = error.what();
            const std::string suffix = ": " + error.code().what();
            if (what.ends_with(suffix))
                what.remove_suffix(suffix.size());
            else if (what == error.code().what())
                what = {};
            return {error.code(), diagnostics(std::string(what))};
        } catch (const std::bad_alloc&) {
            return {make_error_code(boost::system::errc::not_enough_memory), {}};
        } catch (const std::exception& error) {
            return {make_error_code(errc::unexpected_error), diagnostics(error.what())};
        } catch (...) {
            return {make_error_code(errc::unexpected_error),
                    diagnostics("an exception of an unknown type")};
        }
    } catch (...) { // out of memory while copying a message
        return {make_error_code(boost::system::errc::not_enough_memory), {}};
    }
}

/// `failure` with `console` (a guest's console log) in its diagnostics, for
/// the errors of a start: a system_error becomes an error_with_diagnostics
/// with the same code and words (as to_error() reads them). Any other
/// exception, or an empty console, stays as it is.
inline std::exception_ptr with_guest_console(std::exception_ptr failure, std::string console) {
    if (console.empty())
        return failure;
    try {
        std::rethrow_exception(failure);
    } catch (const boost::system::system_error&) {
        auto [ec, diag] = to_error(failure);
        if (!diag.guest_console().empty())
            return failure;
        diag.set_guest_console(std::move(console));
        return std::make_exception_ptr(error_with_diagnostics(ec, std::move(diag)));
    } catch (...) {
        return failure;
    }
}

/// Awaits `operation` and rethrows what it throws as error_with_diagnostics,
/// the exception of anweddol's coroutine mode.
template <class T>
boost::asio::awaitable<T> with_diagnostics(boost::asio::awaitable<T> operation) {
    std::exception_ptr failure;
    try {
        co_return co_await std::move(operation);
    } catch (const error_with_diagnostics&) {
        throw;
    } catch (const boost::system::system_error&) {
        failure = std::current_exception();
    }
    auto [ec, diag] = to_error(failure);
    throw error_with_diagnostics(ec, std::move(diag));
}

/// Awaits `operation`, and on failure fills `*diag` before rethrowing as
/// error_with_diagnostics: a caller who passed diagnostics gets them filled
/// in coroutine mode too, as with any other token.
template <class T>
boost::asio::awaitable<T> recording_diagnostics(boost::asio::awaitable<T> operation,
                                                diagnostics* diag) {
    std::exception_ptr failure;
    try {
        diag->clear();
        co_return co_await std::move(operation);
    } catch (const boost::system::system_error&) {
        failure = std::current_exception();
    }
    auto [ec, found] = to_error(failure);
    *diag = found;
    throw error_with_diagnostics(ec, std::move(found));
}

/// co_spawn hands its handler a default-constructed T on error; an I/O
/// object (a socket) has no default constructor, so such a result travels
/// as an optional, and an error completes with a closed one on the
/// operation's executor.
template <class T>
inline constexpr bool spawned_as_optional =
    !std::is_void_v<T> && !std::is_default_constructible_v<T>;

template <class T>
boost::asio::awaitable<std::optional<T>> as_optional(boost::asio::awaitable<T> operation) {
    co_return co_await std::move(operation);
}

template <class T>
auto spawnable(boost::asio::awaitable<T> operation) {
    if constexpr (spawned_as_optional<T>)
        return as_optional(std::move(operation));
    else
        return operation;
}

template <class T, class Value>
decltype(auto) spawned_result(Value&& value, const boost::asio::any_io_executor& executor) {
    if constexpr (spawned_as_optional<T>)
        return value ? T(std::move(*value)) : T(executor);
    else
        return std::forward<Value>(value);
}

/// Starts an operation written as a coroutine, for any completion token:
/// with the default token it is the coroutine itself (awaited on the
/// awaiting coroutine's executor, throwing error_with_diagnostics); with
/// any other it is co_spawned on `executor` and completes with
/// `completion_signature_t<T>`. `*diag`, when given, is filled whatever the
/// token (cleared on success). A
/// cancellation slot bound to the handler cancels the coroutine.
template <class T, class CompletionToken>
auto initiate_coroutine(boost::asio::any_io_executor executor, boost::asio::awaitable<T> operation,
                        diagnostics* diag, CompletionToken&& token) {
    if constexpr (std::is_same_v<std::decay_t<CompletionToken>, default_completion_token>) {
        (void)executor;
        if (diag)
            return recording_diagnostics(std::move(operation), diag);
        return with_diagnostics(std::move(operation));
    } else {
        return boost::asio::async_initiate<CompletionToken, completion_signature_t<T>>(
            [](auto handler, boost::asio::any_io_executor executor,
               boost::asio::awaitable<T> operation, diagnostics* diag) {
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto handler_executor = boost::asio::get_associated_executor(handler, executor);
                auto complete = [handler = std::move(handler), diag,
                                 executor](std::exception_ptr e, auto... value) mutable {
                    boost::system::error_code ec;
                    if (e) {
                        auto error = to_error(e);
                        ec = error.first;
                        if (diag)
                            *diag = std::move(error.second);
                    } else if (diag) {
                        diag->clear();
                    }
                    std::move(handler)(ec, spawned_result<T>(std::move(value), executor)...);
                };
                boost::asio::co_spawn(executor, spawnable(std::move(operation)),
                                      boost::asio::bind_executor(
                                          handler_executor, boost::asio::bind_cancellation_slot(
                                                                slot, std::move(complete))));
            },
            token, std::move(executor), std::move(operation), diag);
    }
}

} // namespace detail
} // namespace anweddol

#endif
