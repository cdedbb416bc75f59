// The server's log: one line per event, with its UTC time and its level,
// on standard output (systemd's journal keeps it; `journalctl -u
// anweddol-server` reads it), written whole so that lines never interleave.
#ifndef ANWEDDOL_SERVER_SERVER_LOG_HPP
#define ANWEDDOL_SERVER_SERVER_LOG_HPP

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>

namespace anweddol::server::log {

// A time as "2026-12-07T14:24:06Z".
inline std::string utc_text(std::chrono::system_clock::time_point t) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    return std::string(text, std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc));
}

// A duration as "1.23 s", for the phases a log line reports.
inline std::string seconds_text(std::chrono::steady_clock::duration d) {
    char text[32];
    const int length =
        std::snprintf(text, sizeof text, "%.2f s", std::chrono::duration<double>(d).count());
    return std::string(text, static_cast<std::size_t>(length));
}

namespace detail {

inline std::mutex& output_mutex() {
    static std::mutex m;
    return m;
}

template <class... Parts>
void write(std::string_view level, const Parts&... parts) {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char stamp[32];
    const auto length = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::ostringstream line;
    line << std::string_view(stamp, length) << '.' << (millis < 100 ? "0" : "")
         << (millis < 10 ? "0" : "") << millis << "Z " << level << ' ';
    (line << ... << parts);
    line << '\n';
    const std::string text = line.str();
    std::lock_guard lock(output_mutex());
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

} // namespace detail

template <class... Parts>
void info(const Parts&... parts) {
    detail::write("INFO ", parts...);
}
template <class... Parts>
void warning(const Parts&... parts) {
    detail::write("WARN ", parts...);
}
template <class... Parts>
void error(const Parts&... parts) {
    detail::write("ERROR", parts...);
}

} // namespace anweddol::server::log

#endif
