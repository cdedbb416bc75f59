//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_DESCRIPTION_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_DESCRIPTION_HPP

// What a running domain's XML (virDomainGetXMLDesc) says of the container it
// is, for adopting it: the inverse of domain_xml(), for the elements that
// function writes. Not a general XML parser: it reads libvirt's own output,
// whose shape libvirt keeps stable, and gives up (nullopt) on anything else.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace anweddol::detail {

/// XML text with its five entities and numeric character references (as
/// xml_escape() writes them, and libvirt too) replaced; nullopt for a
/// malformed or unknown reference.
inline std::optional<std::string> xml_unescape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '&') {
            out += text[i];
            continue;
        }
        const auto end = text.find(';', i);
        if (end == std::string_view::npos)
            return std::nullopt;
        const std::string_view name = text.substr(i + 1, end - i - 1);
        if (name == "amp")
            out += '&';
        else if (name == "lt")
            out += '<';
        else if (name == "gt")
            out += '>';
        else if (name == "apos")
            out += '\'';
        else if (name == "quot")
            out += '"';
        else if (name.size() > 1 && name[0] == '#') {
            const bool hex = name[1] == 'x' || name[1] == 'X';
            const std::string_view digits = name.substr(hex ? 2 : 1);
            std::uint32_t code = 0;
            const auto [rest, error] =
                std::from_chars(digits.data(), digits.data() + digits.size(), code, hex ? 16 : 10);
            if (digits.empty() || error != std::errc() || rest != digits.data() + digits.size() ||
                code == 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
                return std::nullopt;
            // UTF-8, as the document is.
            if (code < 0x80) {
                out += static_cast<char>(code);
            } else if (code < 0x800) {
                out += static_cast<char>(0xc0 | (code >> 6));
                out += static_cast<char>(0x80 | (code & 0x3f));
            } else if (code < 0x10000) {
                out += static_cast<char>(0xe0 | (code >> 12));
                out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
                out += static_cast<char>(0x80 | (code & 0x3f));
            } else {
                out += static_cast<char>(0xf0 | (code >> 18));
                out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
                out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
                out += static_cast<char>(0x80 | (code & 0x3f));
            }
        } else {
            return std::nullopt;
        }
        i = end;
    }
    return out;
}

/// The start tag of the first element `name` at or after `from` ("<name"
/// followed by a space, '/' or '>'), up to its '>'; empty when none.
inline std::string_view start_tag(std::string_view xml, std::string_view name,
                                  std::size_t from = 0) {
    for (auto at = xml.find('<', from); at != std::string_view::npos; at = xml.find('<', at + 1)) {
        if (xml.substr(at + 1, name.size()) != name)
            continue;
        const auto after = at + 1 + name.size();
        if (after >= xml.size() || (xml[after] != ' ' && xml[after] != '/' && xml[after] != '>' &&
                                    xml[after] != '\n' && xml[after] != '\t'))
            continue;
        const auto end = xml.find('>', after);
        if (end == std::string_view::npos)
            return {};
        return xml.substr(at, end - at + 1);
    }
    return {};
}

/// The value of attribute `name` in `tag` (quoted with ' or "), unescaped.
inline std::optional<std::string> attribute(std::string_view tag, std::string_view name) {
    for (auto at = tag.find(name); at != std::string_view::npos; at = tag.find(name, at + 1)) {
        const bool starts_word = at > 0 && (tag[at - 1] == ' ' || tag[at - 1] == '\n' ||
                                            tag[at - 1] == '\t');
        const auto equals = at + name.size();
        if (!starts_word || equals + 1 >= tag.size() || tag[equals] != '=')
            continue;
        const char quote = tag[equals + 1];
        if (quote != '\'' && quote != '"')
            return std::nullopt;
        const auto close = tag.find(quote, equals + 2);
        if (close == std::string_view::npos)
            return std::nullopt;
        return xml_unescape(tag.substr(equals + 2, close - equals - 2));
    }
    return std::nullopt;
}

/// The text of the first element `name` (`<name ...>text</name>`), unescaped.
inline std::optional<std::string> element_text(std::string_view xml, std::string_view name,
                                               std::size_t from = 0) {
    const std::string_view tag = start_tag(xml, name, from);
    if (tag.empty() || tag.ends_with("/>"))
        return std::nullopt;
    const auto begin = static_cast<std::size_t>(tag.data() - xml.data()) + tag.size();
    const auto end = xml.find("</" + std::string(name) + ">", begin);
    if (end == std::string_view::npos)
        return std::nullopt;
    return xml_unescape(xml.substr(begin, end - begin));
}

/// The part of a container's domain XML that adoption needs.
struct domain_description {
    std::string uuid;
    std::string type;
    unsigned memory_mib = 0;
    unsigned vcpus = 0;
    std::string iso_path; ///< the cdrom's file; empty when it has none
    std::string bridge;
    std::string mac;
};

inline std::optional<unsigned> parse_unsigned(std::string_view text) {
    unsigned value = 0;
    const auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || rest != text.data() + text.size())
        return std::nullopt;
    return value;
}

/// Reads a domain's XML as libvirt formats it; nullopt when it is not the
/// shape of a container's (no bridge NIC with a MAC, no memory or vCPUs).
inline std::optional<domain_description> describe_domain(std::string_view xml) {
    domain_description d;
    const std::string_view domain = start_tag(xml, "domain");
    const auto type = attribute(domain, "type");
    const auto uuid = element_text(xml, "uuid");
    const std::string_view memory_tag = start_tag(xml, "memory");
    const auto memory = element_text(xml, "memory");
    const auto vcpus = element_text(xml, "vcpu");
    if (domain.empty() || !type || !uuid || !memory || !vcpus)
        return std::nullopt;
    d.type = *type;
    d.uuid = *uuid;
    const auto amount = parse_unsigned(*memory);
    const auto count = parse_unsigned(*vcpus);
    if (!amount || !count)
        return std::nullopt;
    const std::string unit = attribute(memory_tag, "unit").value_or("KiB");
    if (unit == "KiB")
        d.memory_mib = *amount / 1024;
    else if (unit == "MiB")
        d.memory_mib = *amount;
    else if (unit == "GiB")
        d.memory_mib = *amount * 1024;
    else
        return std::nullopt;
    d.vcpus = *count;

    // The cdrom: <disk type='file' device='cdrom'> ... <source file='...'/>
    for (std::size_t at = 0;;) {
        const std::string_view disk = start_tag(xml, "disk", at);
        if (disk.empty())
            break;
        at = static_cast<std::size_t>(disk.data() - xml.data()) + disk.size();
        if (attribute(disk, "device") != "cdrom")
            continue;
        const auto end = xml.find("</disk>", at);
        const std::string_view body = xml.substr(at, end == std::string_view::npos ? 0 : end - at);
        if (const auto file = attribute(start_tag(body, "source"), "file"))
            d.iso_path = *file;
        break;
    }
    // The NIC on a bridge: <interface type='bridge'> <mac address=.../> <source bridge=.../>
    for (std::size_t at = 0;;) {
        const std::string_view nic = start_tag(xml, "interface", at);
        if (nic.empty())
            break;
        at = static_cast<std::size_t>(nic.data() - xml.data()) + nic.size();
        const auto end = xml.find("</interface>", at);
        if (end == std::string_view::npos)
            break;
        const std::string_view body = xml.substr(at, end - at);
        const auto mac = attribute(start_tag(body, "mac"), "address");
        const auto bridge = attribute(start_tag(body, "source"), "bridge");
        if (mac && bridge) {
            d.mac = *mac;
            d.bridge = *bridge;
            break;
        }
    }
    if (d.mac.empty())
        return std::nullopt;
    return d;
}

} // namespace anweddol::detail

#endif
