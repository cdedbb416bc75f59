// Requests and responses: their types, the JSON answers, what a client may
// ask for a container, and the wiping of what carries a secret.
#ifndef CONTAINER_SERVER_MESSAGES_HPP
#define CONTAINER_SERVER_MESSAGES_HPP

#include "settings.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/memory_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <openssl/crypto.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <variant>

namespace example {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

// Memory that holds a secret (a client's bearer token in a request, a
// container's password and owner token in a 201) is overwritten before it
// is freed, so that no freed block keeps it: every block these allocators
// give back, including those a growing string or buffer leaves behind.
template <class T>
struct wiping_allocator {
    using value_type = T;
    wiping_allocator() = default;
    template <class U>
    wiping_allocator(const wiping_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
    void deallocate(T* p, std::size_t n) noexcept {
        OPENSSL_cleanse(p, n * sizeof(T));
        std::allocator<T>().deallocate(p, n);
    }
    friend bool operator==(const wiping_allocator&, const wiping_allocator&) noexcept {
        return true;
    }
};

// The same for Boost.JSON's values.
class wiping_resource final : public json::memory_resource {
    void* do_allocate(std::size_t size, std::size_t align) override {
        return ::operator new(size, std::align_val_t(align));
    }
    void do_deallocate(void* p, std::size_t size, std::size_t align) override {
        OPENSSL_cleanse(p, size);
        ::operator delete(p, size, std::align_val_t(align));
    }
    bool do_is_equal(const json::memory_resource& other) const noexcept override {
        return this == &other;
    }
};

using fields_type = http::basic_fields<wiping_allocator<char>>;
using buffer_type = beast::basic_flat_buffer<wiping_allocator<char>>;
using body_type = http::basic_string_body<char, std::char_traits<char>, wiping_allocator<char>>;
using request_type = http::request<http::string_body, fields_type>;
using response_type = http::response<body_type>;

// Overwrites a string's whole buffer, then empties it.
inline void wipe(std::string& s) noexcept {
    if (s.capacity() > 0)
        OPENSSL_cleanse(s.data(), s.capacity());
    s.clear();
}

inline response_type empty_reply(unsigned version, bool keep_alive, http::status status) {
    response_type response(status, version);
    response.keep_alive(keep_alive);
    return response;
}

inline response_type reply(unsigned version, bool keep_alive, http::status status,
                           const json::value& body) {
    auto response = empty_reply(version, keep_alive, status);
    response.set(http::field::content_type, "application/json");
    const std::string text = json::serialize(body);
    response.body().assign(text.data(), text.size());
    response.prepare_payload();
    return response;
}

// A JSON answer that carries a secret: serialized straight into the body's
// wiping storage, with no std::string in between.
inline response_type secret_reply(unsigned version, bool keep_alive, http::status status,
                                  const json::value& body) {
    auto response = empty_reply(version, keep_alive, status);
    response.set(http::field::content_type, "application/json");
    json::serializer serializer;
    serializer.reset(&body);
    auto& text = response.body();
    while (!serializer.done()) {
        const std::size_t used = text.size();
        text.resize(std::max<std::size_t>(512, 2 * used)); // the old block is wiped
        text.resize(used + serializer.read(text.data() + used, text.size() - used).size());
    }
    response.prepare_payload();
    return response;
}

inline response_type error(unsigned version, bool keep_alive, http::status status,
                           const std::string& message) {
    return reply(version, keep_alive, status, json::object{{"error", message}});
}

inline response_type error(const request_type& request, http::status status,
                           const std::string& message) {
    return error(request.version(), request.keep_alive(), status, message);
}

// A 503 that says when to come back.
inline response_type unavailable(const request_type& request, std::chrono::seconds retry_after,
                                 const std::string& message) {
    auto response = error(request, http::status::service_unavailable, message);
    response.set(http::field::retry_after, std::to_string(retry_after.count()));
    return response;
}

// A response, and the container it hands out (to destroy if it cannot be
// delivered).
struct outcome {
    outcome() = default;
    explicit outcome(response_type r, std::string uuid = {})
        : response(std::move(r))
        , created_uuid(std::move(uuid)) {}
    response_type response;
    std::string created_uuid;
};

// What a client may ask for a container: {"memory": MiB, "vcpus": N}, both
// optional, nothing else.
struct container_request {
    unsigned memory_mib = 512;
    unsigned vcpus = 1;
};

struct refusal {
    http::status status;
    std::string message;
};

// Whether a Content-Type names JSON: "application/json", in any case, with
// or without parameters (charset).
inline bool is_json(std::string_view type) {
    type = type.substr(0, type.find(';'));
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t'))
        type.remove_suffix(1);
    return lower_case(type) == "application/json";
}

// One field of a container request, checked against its bounds.
inline std::variant<unsigned, refusal> bounded_field(std::string_view key, const json::value& value,
                                                     std::uint64_t low, std::uint64_t high,
                                                     std::string_view unit) {
    const std::string range =
        "from " + std::to_string(low) + " to " + std::to_string(high) + std::string(unit);
    if (!value.is_int64() && !value.is_uint64())
        return refusal{http::status::bad_request,
                       "\"" + std::string(key) + "\" must be a whole number " + range};
    const bool in_range = value.is_uint64()
                              ? value.as_uint64() >= low && value.as_uint64() <= high
                              : value.as_int64() >= static_cast<std::int64_t>(low) &&
                                    value.as_int64() <= static_cast<std::int64_t>(high);
    if (!in_range)
        return refusal{http::status::bad_request, "\"" + std::string(key) + "\" must be " + range +
                                                      ", not " + json::serialize(value)};
    return value.to_number<unsigned>();
}

// The body must be JSON and say so, even when it is empty: a POST that a
// browser form or a bare `curl -X POST` can send is refused.
inline std::variant<container_request, refusal> parse_container_request(const request_type& request,
                                                                        const server_settings& s) {
    if (!is_json(request[http::field::content_type]))
        return refusal{http::status::unsupported_media_type,
                       "the body must be JSON, sent with Content-Type: application/json"};
    boost::system::error_code ec;
    const json::value body = json::parse(request.body(), ec);
    if (ec || !body.is_object())
        return refusal{http::status::bad_request,
                       "the body must be a JSON object such as {\"memory\": 512, \"vcpus\": 1}, "
                       "or {} for the defaults"};
    container_request wanted;
    for (const auto& [key, value] : body.as_object()) {
        const bool memory = key == "memory";
        if (!memory && key != "vcpus")
            return refusal{http::status::bad_request,
                           "unknown field \"" + std::string(key) +
                               "\": a container request may have \"memory\" and \"vcpus\" only"};
        auto field = memory ? bounded_field(key, value, 512, s.max_memory_mib, " (MiB)")
                            : bounded_field(key, value, 1, s.max_vcpus, "");
        if (auto* refused = std::get_if<refusal>(&field))
            return std::move(*refused);
        (memory ? wanted.memory_mib : wanted.vcpus) = std::get<unsigned>(field);
    }
    return wanted;
}

inline bool looks_like_uuid(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
            return false;
    }
    return true;
}

} // namespace example

#endif
