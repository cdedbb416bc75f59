//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_DIAGNOSTICS_HPP
#define ANWEDDOL_DETAIL_DIAGNOSTICS_HPP

#include <anweddol/detail/errc.hpp>

#include <boost/system/system_error.hpp>

#include <string>
#include <utility>

namespace anweddol {

/// What an `error_code` alone cannot say: anweddol's account of what it was
/// doing and what to do about it, and the message of the party that failed
/// (libvirt's virGetLastErrorMessage, libssh's ssh_get_error), verbatim.
/// Operations that complete with an `error_code` fill one when given it, as
/// Boost.MySQL's `diagnostics` are; in coroutine mode the thrown
/// error_with_diagnostics carries it.
class diagnostics {
public:
    diagnostics() = default;
    explicit diagnostics(std::string client_message, std::string server_message = {})
        : client_message_(std::move(client_message))
        , server_message_(std::move(server_message)) {}

    /// anweddol's own message, such as "cannot create the container's domain".
    const std::string& client_message() const noexcept { return client_message_; }
    /// libvirt's or libssh's own message for the failed call; empty when the
    /// error is anweddol's own.
    const std::string& server_message() const noexcept { return server_message_; }
    /// The last lines the guest wrote on its serial console before a start
    /// failed (boot loader, kernel, init): what happened inside it. Empty
    /// when the failure has nothing to do with a guest, or the hypervisor
    /// offers no console (test:///).
    const std::string& guest_console() const noexcept { return guest_console_; }
    void set_guest_console(std::string text) { guest_console_ = std::move(text); }
    /// anweddol's and the failed party's messages, as one line (without the
    /// console: it spans many lines).
    std::string full_message() const {
        if (server_message_.empty())
            return client_message_;
        if (client_message_.empty())
            return server_message_;
        return client_message_ + ": " + server_message_;
    }
    void clear() noexcept {
        client_message_.clear();
        server_message_.clear();
        guest_console_.clear();
    }
    friend bool operator==(const diagnostics&, const diagnostics&) = default;

private:
    std::string client_message_;
    std::string server_message_;
    std::string guest_console_;
};

/// The exception anweddol's operations throw in coroutine mode: a
/// `boost::system::system_error` (compare its code() with `anweddol::errc`
/// values, libvirt's or libssh's codes, or `std::errc::timed_out`) that also
/// carries the diagnostics. what() reads "<client>: <server>: <code's message>".
class error_with_diagnostics : public boost::system::system_error {
public:
    error_with_diagnostics(boost::system::error_code ec, diagnostics diag)
        : boost::system::system_error(ec, diag.full_message())
        , diagnostics_(std::move(diag)) {}
    const diagnostics& get_diagnostics() const noexcept { return diagnostics_; }

private:
    diagnostics diagnostics_;
};

namespace detail {

/// Throws `ec` with `message` as anweddol's side of the diagnostics.
[[noreturn]] inline void throw_error(boost::system::error_code ec, std::string message) {
    throw error_with_diagnostics(ec, diagnostics(std::move(message)));
}
[[noreturn]] inline void throw_error(errc e, std::string message) {
    throw_error(make_error_code(e), std::move(message));
}

} // namespace detail
} // namespace anweddol

#endif
