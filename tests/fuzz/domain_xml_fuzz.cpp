// The domain XML builder, read back by libxml2 (the parser libvirt uses,
// with libvirt's options). Properties: whatever the fields, a document that
// parses holds every value exactly as given, in the one element or attribute
// meant for it, and nothing more; fields that XML can carry at all (valid
// UTF-8 of XML 1.0's characters) always give a document that parses.
//
// Input: uuid 0xFF type 0xFF iso_path 0xFF bridge 0xFF mac 0xFF owner 0xFF
// memory and vcpus (4 bytes each, little-endian).
#include "fuzz_support.hpp"

#include <anweddol/detail/libvirt/domain_xml.hpp>

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <memory>

namespace {

// XML 1.0's Char production, over UTF-8 decoded strictly (no overlong forms,
// no surrogates).
bool xml_can_carry(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::uint32_t cp;
        std::size_t n;
        if (b < 0x80) {
            cp = b, n = 1;
        } else if ((b & 0xE0) == 0xC0) {
            cp = b & 0x1F, n = 2;
        } else if ((b & 0xF0) == 0xE0) {
            cp = b & 0x0F, n = 3;
        } else if ((b & 0xF8) == 0xF0) {
            cp = b & 0x07, n = 4;
        } else {
            return false;
        }
        if (i + n > s.size())
            return false;
        for (std::size_t k = 1; k < n; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (c & 0x3F);
        }
        const std::uint32_t min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_length[n])
            return false;
        const bool allowed = cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
                             (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
        if (!allowed)
            return false;
        i += n;
    }
    return true;
}

struct doc_deleter {
    void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct context_deleter {
    void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct object_deleter {
    void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};

// The one node `path` selects, as a string; fails unless exactly one.
std::string only(xmlXPathContext* context, const char* path) {
    std::unique_ptr<xmlXPathObject, object_deleter> result(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(path), context));
    const int count = result && result->nodesetval ? result->nodesetval->nodeNr : 0;
    ANWEDDOL_FUZZ_CHECK(count == 1, std::string(path) + " selects " + std::to_string(count));
    xmlChar* text = xmlNodeGetContent(result->nodesetval->nodeTab[0]);
    std::string value = text ? reinterpret_cast<const char*>(text) : "";
    xmlFree(text);
    return value;
}

double count(xmlXPathContext* context, const char* path) {
    std::unique_ptr<xmlXPathObject, object_deleter> result(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(path), context));
    return result ? xmlXPathCastToNumber(result.get()) : -1;
}

void quiet(void*, const char*, ...) {}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace anweddol::fuzz;
    static const bool initialised = [] {
        xmlInitParser();
        xmlSetGenericErrorFunc(nullptr, quiet);
        return true;
    }();
    (void)initialised;

    const auto fields = split_fields(data, size, 7);
    anweddol::detail::domain_definition d;
    d.uuid = fields[0];
    d.type = fields[1];
    d.iso_path = fields[2];
    d.bridge = fields[3];
    d.mac = fields[4];
    d.owner = fields[5];
    const auto number = [&](std::size_t at) {
        std::uint32_t n = 0;
        for (std::size_t k = 0; k < 4 && at + k < fields[6].size(); ++k)
            n |= std::uint32_t{static_cast<unsigned char>(fields[6][at + k])} << (8 * k);
        return n;
    };
    d.memory_mib = number(0);
    d.vcpus = number(4);

    const std::string xml = anweddol::detail::domain_xml(d);
    // libvirt's own options (virXMLParseHelper): no network, no warnings.
    std::unique_ptr<xmlDoc, doc_deleter> doc(
        xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                      XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR));
    const bool carriable = xml_can_carry(d.uuid) && xml_can_carry(d.type) &&
                           xml_can_carry(d.iso_path) && xml_can_carry(d.bridge) &&
                           xml_can_carry(d.mac) && xml_can_carry(d.owner);
    if (!doc) {
        ANWEDDOL_FUZZ_CHECK(!carriable, "XML that should parse does not:\n" + escaped(xml));
        return 0; // libvirt refuses it with an XML error: nothing is altered
    }

    std::unique_ptr<xmlXPathContext, context_deleter> context(xmlXPathNewContext(doc.get()));
    xmlXPathRegisterNs(context.get(), reinterpret_cast<const xmlChar*>("a"),
                       reinterpret_cast<const xmlChar*>(
                           std::string(anweddol::detail::metadata_namespace).c_str()));
    auto* c = context.get();
    const auto expect = [&](const char* path, const std::string& want) {
        const std::string got = only(c, path);
        ANWEDDOL_FUZZ_CHECK(got == want, std::string(path) + " is " + escaped(got) + ", not " +
                                             escaped(want) + ", in\n" + escaped(xml));
    };
    expect("/domain/@type", d.type);
    expect("/domain/name", d.uuid);
    expect("/domain/uuid", d.uuid);
    expect("/domain/metadata/a:container/@owner", d.owner);
    expect("/domain/memory", std::to_string(d.memory_mib));
    expect("/domain/currentMemory", std::to_string(d.memory_mib));
    expect("/domain/vcpu", std::to_string(d.vcpus));
    expect("/domain/devices/disk/source/@file", d.iso_path);
    expect("/domain/devices/interface/mac/@address", d.mac);
    expect("/domain/devices/interface/source/@bridge", d.bridge);
    // Nothing injected: the structure is the builder's, whatever the values
    // (these counts change with the builder, on purpose).
    ANWEDDOL_FUZZ_CHECK(count(c, "count(//*)") == 42, std::to_string(count(c, "count(//*)")));
    ANWEDDOL_FUZZ_CHECK(count(c, "count(//@*)") == 39, std::to_string(count(c, "count(//@*)")));
    ANWEDDOL_FUZZ_CHECK(count(c, "count(//comment() | //processing-instruction())") == 0);
    return 0;
}
