//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_XML_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_DOMAIN_XML_HPP

#include <string>
#include <string_view>

namespace anweddol::detail {

/// The XML namespace of the <metadata> element that marks a domain as made
/// by anweddol, so that a later process can find the ones it left behind.
inline constexpr std::string_view metadata_namespace = "https://anweddol.org/xmlns/container/1";

/// `value` with XML's five special characters replaced by entities, safe in
/// element text and in quoted attributes.
inline std::string xml_escape(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char c : value) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '\'':
            out += "&apos;";
            break;
        case '"':
            out += "&quot;";
            break;
        // An XML parser turns a literal tab, newline or carriage return in an
        // attribute into a space: as character references they arrive intact.
        case '\t':
            out += "&#9;";
            break;
        case '\n':
            out += "&#10;";
            break;
        case '\r':
            out += "&#13;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

/// What a container's domain is made of.
struct domain_definition {
    std::string uuid; ///< also the domain's name
    std::string type; ///< "kvm", "qemu" (software emulation) or "test"
    unsigned memory_mib = 2048;
    unsigned vcpus = 2;
    std::string iso_path; ///< the live ISO, attached as a read-only IDE cdrom
    std::string bridge;   ///< the NAT bridge, such as virbr0
    std::string mac;      ///< 52:54:00:xx:xx:xx
    std::string owner;    ///< recorded in <metadata>
    /// `<port isolated='yes'/>`: no traffic to or from other isolated ports.
    bool isolated_port = false;
    /// The network filter the interface references; empty: none. Its IP
    /// address is learned from DHCP only, so a guest cannot claim another
    /// address by sending from it first.
    std::string traffic_filter;
    /// With a traffic filter: the only DHCP server whose replies teach it
    /// the guest's address (DHCPSERVER); empty: any.
    std::string dhcp_server;
    /// The address reserved for the guest: with a traffic filter, the only
    /// one it may use from the start (its IP parameter), so that nothing is
    /// learned and nothing waits for the learning; empty: learned from DHCP.
    std::string reserved_ip;
    /// A snapshot slot's domain: SMBIOS tells its guest to stop at the
    /// barrier (see snapshot_image.hpp), and it has a VM generation ID,
    /// which QEMU changes at each restore (for guests whose kernel has the
    /// vmgenid driver: they reseed their RNG at once).
    bool snapshot_slot = false;
};

/// The SMBIOS system family that tells a guest it is a snapshot slot's.
inline constexpr std::string_view slot_smbios_family = "anweddol-slot";

/// The domain's XML, as the reference defines it (hvm, boot from hd then
/// cdrom, acpi/apic, vmport off, rtc/pit/hpet timers, destroyed on reboot
/// and crash, a virtio NIC on the bridge, a virtio balloon), plus a serial
/// console and anweddol's <metadata>, minus what makes a boot dearer under
/// software emulation (benchmarks/boot_cost): the cdrom on SATA rather than
/// IDE, no USB controller, no option ROM on the NIC. Every value is escaped.
inline std::string domain_xml(const domain_definition& d) {
    const std::string memory = std::to_string(d.memory_mib);
    std::string xml;
    xml.reserve(2048);
    xml += "<domain type='" + xml_escape(d.type) + "'>\n";
    xml += "  <name>" + xml_escape(d.uuid) + "</name>\n";
    xml += "  <uuid>" + xml_escape(d.uuid) + "</uuid>\n";
    xml += "  <metadata>\n    <anweddol:container xmlns:anweddol='" +
           std::string(metadata_namespace) + "' owner='" + xml_escape(d.owner) + "'/>\n";
    xml += "  </metadata>\n";
    xml += "  <memory unit='MiB'>" + memory + "</memory>\n";
    xml += "  <currentMemory unit='MiB'>" + memory + "</currentMemory>\n";
    xml += "  <vcpu placement='static'>" + std::to_string(d.vcpus) + "</vcpu>\n";
    // useserial: the firmware writes to the serial console too, so that the
    // console log shows a boot that fails before the kernel ("No bootable
    // device").
    if (d.snapshot_slot)
        xml += "  <genid/>\n"
               "  <sysinfo type='smbios'>\n    <system>\n      <entry name='family'>" +
               std::string(slot_smbios_family) + "</entry>\n    </system>\n  </sysinfo>\n";
    xml += "  <os>\n    <type arch='x86_64'>hvm</type>\n"
           "    <boot dev='hd'/>\n    <boot dev='cdrom'/>\n"
           "    <bios useserial='yes'/>\n";
    if (d.snapshot_slot)
        xml += "    <smbios mode='sysinfo'/>\n";
    xml += "  </os>\n";
    xml += "  <features>\n    <acpi/>\n    <apic/>\n    <vmport state='off'/>\n  </features>\n";
    xml += "  <clock offset='utc'>\n"
           "    <timer name='rtc' tickpolicy='catchup'/>\n"
           "    <timer name='pit' tickpolicy='delay'/>\n"
           "    <timer name='hpet' present='no'/>\n"
           "  </clock>\n";
    xml += "  <on_poweroff>destroy</on_poweroff>\n"
           "  <on_reboot>destroy</on_reboot>\n"
           "  <on_crash>destroy</on_crash>\n";
    xml += "  <devices>\n";
    // The firmware and the boot loader read the kernel and the initramfs
    // through the cdrom: on IDE that is programmed I/O, a trap per word under
    // emulation, about 1.5 s of CPU for the test ISO's 22 MB; on SATA (AHCI)
    // it is DMA.
    xml += "    <controller type='sata' index='0'/>\n";
    xml += "    <disk type='file' device='cdrom'>\n"
           "      <driver name='qemu' type='raw'/>\n"
           "      <source file='" +
           xml_escape(d.iso_path) +
           "'/>\n"
           "      <target dev='sda' bus='sata'/>\n"
           "      <readonly/>\n"
           "    </disk>\n";
    // Nothing in a container plugs into USB, and a guest that loads its
    // controller's driver polls it; libvirt adds one unless told not to.
    xml += "    <controller type='usb' model='none'/>\n";
    xml += "    <interface type='bridge'>\n"
           "      <mac address='" +
           xml_escape(d.mac) +
           "'/>\n"
           "      <source bridge='" +
           xml_escape(d.bridge) +
           "'/>\n"
           "      <model type='virtio'/>\n"
           // The boot order has no network boot: iPXE's option ROM would only
           // be loaded and run by the firmware for nothing.
           "      <rom enabled='no'/>\n";
    if (d.isolated_port)
        xml += "      <port isolated='yes'/>\n";
    if (!d.traffic_filter.empty()) {
        xml += "      <filterref filter='" + xml_escape(d.traffic_filter) + "'>\n";
        if (!d.reserved_ip.empty()) {
            xml += "        <parameter name='IP' value='" + xml_escape(d.reserved_ip) + "'/>\n";
        } else {
            xml += "        <parameter name='CTRL_IP_LEARNING' value='dhcp'/>\n";
            if (!d.dhcp_server.empty())
                xml += "        <parameter name='DHCPSERVER' value='" + xml_escape(d.dhcp_server) +
                       "'/>\n";
        }
        xml += "      </filterref>\n";
    }
    xml += "    </interface>\n";
    // The guest's serial console, which anweddol reads into the container's
    // console log (its boot messages, and the SSH host key fingerprints the
    // guest prints there).
    xml += "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
           "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n";
    xml += "    <memballoon model='virtio'/>\n";
    xml += "  </devices>\n</domain>\n";
    return xml;
}

} // namespace anweddol::detail

#endif
