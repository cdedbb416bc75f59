// dnsmasq's status file, as libvirt's lease helper writes it, read by
// read_lease_file() and searched by find_lease(). Properties: the only
// failure is errc::lease_file_malformed, and text that is not JSON (but
// blank) always is one; a lease found is a current lease of the MAC asked
// for, and the one expiring last, by a second, plain reading of the array;
// a status file reads back byte for byte. And status_file_watch's reading
// of inotify events: the bytes as events stay within their buffer, and
// events made of the input's '/'-separated names report the status file's
// name exactly when one of them is it.
#include "fuzz_support.hpp"

#include <anweddol/detail/libvirt/lease_file.hpp>
#include <anweddol/detail/libvirt/status_file_watch.hpp>
#include <anweddol/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <cctype>
#include <fstream>
#include <optional>

namespace {

constexpr std::int64_t now = 1'800'000'000;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// The expiry of the lease find_lease must pick for `mac`, by a plain reading
// (0 never expires, so beats every other); nullopt when none is current, or
// when the document is not a well-formed status file.
std::optional<std::int64_t> best_expiry(const boost::json::value& doc, const std::string& mac,
                                        bool& well_formed) {
    well_formed = false;
    const auto* array = doc.if_array();
    if (!array)
        return std::nullopt;
    std::optional<std::int64_t> best;
    for (const auto& item : *array) {
        const auto* entry = item.if_object();
        if (!entry)
            return std::nullopt;
        const auto* m = entry->if_contains("mac-address");
        const auto* ip = entry->if_contains("ip-address");
        const auto* e = entry->if_contains("expiry-time");
        if (!m || !m->is_string() || !ip || !ip->is_string() || !e)
            return std::nullopt;
        std::int64_t expiry;
        if (e->is_int64())
            expiry = e->get_int64();
        else if (e->is_uint64() && e->get_uint64() <= INT64_MAX)
            expiry = static_cast<std::int64_t>(e->get_uint64());
        else
            return std::nullopt;
        if (lower(m->get_string()) != lower(mac) || (expiry != 0 && expiry < now))
            continue;
        if (!best || expiry == 0 || (*best != 0 && expiry > *best))
            best = expiry;
    }
    well_formed = true;
    return best;
}

// The same bytes as a status file on disk read back unchanged.
void check_read_back(std::string_view text) {
    static const std::string path =
        "/tmp/anweddol-lease-fuzz-" + std::to_string(::getpid()) + ".status";
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
    }
    const auto read = anweddol::detail::read_lease_file(path);
    ANWEDDOL_FUZZ_CHECK(read && *read == text, "read_lease_file changed the bytes");
    ::unlink(path.c_str());
}

// As the kernel writes them: a header, then the name padded with NULs to
// a multiple of 16 bytes.
void check_inotify_events(std::string_view text) {
    constexpr std::string_view status_file = "virbr0.status";
    (void)anweddol::detail::inotify_events_name(text, status_file); // any bytes: ASan watches
    std::string events;
    bool expected = false;
    std::size_t start = 0;
    for (int count = 0; count < 8 && start <= text.size(); ++count) {
        std::size_t end = std::min(text.find('/', start), text.size());
        std::string_view name = text.substr(start, end - start);
        name = name.substr(0, name.find('\0'));
        start = end + 1;
        inotify_event event{};
        event.wd = 1;
        event.mask = IN_MOVED_TO;
        event.len = name.empty() ? 0 : static_cast<std::uint32_t>((name.size() + 16) / 16 * 16);
        events.append(reinterpret_cast<const char*>(&event), sizeof event);
        events.append(name);
        events.append(event.len - name.size(), '\0');
        expected = expected || name == status_file;
    }
    ANWEDDOL_FUZZ_CHECK(anweddol::detail::inotify_events_name(events, status_file) == expected,
                        anweddol::fuzz::escaped(events));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace anweddol::fuzz;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_inotify_events(text);

    // Ask for the first lease's MAC, in upper case, when there is one: most
    // inputs then have a lease to find.
    std::string mac = "52:54:00:00:00:01";
    boost::system::error_code parse_error;
    const boost::json::value doc = boost::json::parse(text, parse_error);
    if (!parse_error)
        if (const auto* a = doc.if_array(); a && !a->empty())
            if (const auto* o = a->front().if_object())
                if (const auto* m = o->if_contains("mac-address"); m && m->is_string()) {
                    mac = m->get_string();
                    for (char& c : mac)
                        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                }

    const bool blank = text.find_first_not_of(" \t\r\n") == std::string_view::npos;
    std::optional<anweddol::detail::lease> found;
    try {
        found = anweddol::detail::find_lease(text, mac, now);
    } catch (const boost::system::system_error& e) {
        ANWEDDOL_FUZZ_CHECK(e.code() == anweddol::errc::lease_file_malformed, e.what());
        ANWEDDOL_FUZZ_CHECK(!blank, "a blank file was malformed");
        bool well_formed;
        if (!parse_error) {
            best_expiry(doc, mac, well_formed);
            ANWEDDOL_FUZZ_CHECK(!well_formed, std::string("refused a status file: ") + e.what());
        }
        check_read_back(text);
        return 0;
    }
    ANWEDDOL_FUZZ_CHECK(blank || !parse_error, "text that is not JSON was accepted");
    if (!blank) {
        bool well_formed;
        const auto best = best_expiry(doc, mac, well_formed);
        ANWEDDOL_FUZZ_CHECK(well_formed, "a malformed status file was accepted");
        ANWEDDOL_FUZZ_CHECK(found.has_value() == best.has_value());
        if (found) {
            ANWEDDOL_FUZZ_CHECK(lower(found->mac_address) == lower(mac));
            ANWEDDOL_FUZZ_CHECK(found->expiry_time == *best, std::to_string(found->expiry_time) +
                                                                 " instead of " +
                                                                 std::to_string(*best));
        }
    } else {
        ANWEDDOL_FUZZ_CHECK(!found);
    }

    check_read_back(text);
    return 0;
}
