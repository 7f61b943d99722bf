/* wyvern.p4: the wyvern logical pipeline as a P4_16 program for v1model (bmv2 simple_switch).
 *
 * One table per stage of controller/pipeline/src/stage.rs (STAGES), named after the stage,
 * applied in STAGES order. Each table's keys are the stage's declared match fields, in the
 * declared order; its actions are the IR's action lists (controller/pipeline/src/ir.rs)
 * folded into one P4 action each. A `goto` is a write of meta.next_stage: every stage runs
 * only when the previous one chose it, so the apply block follows the IR's forward-only
 * stage graph. A miss does what the stage declares (its `const default_action`) and is also
 * counted per stage in `table_misses`.
 *
 * Compile: p4c --target bmv2 --arch v1model --p4runtime-files wyvern.p4info.txtpb wyvern.p4
 * Run:     simple_switch_grpc --cpu-port 255 -i 1@veth1 ... wyvern.json
 * p4/p4runtime-proto/tests/p4info_consistency.rs checks this file against the P4Info and
 * against the stage declarations.
 */
#include <core.p4>
#include <v1model.p4>

/* The port simple_switch_grpc is started with (--cpu-port): packet-in and packet-out. */
const bit<9> CPU_PORT = 255;

const bit<16> ETH_TYPE_IPV4 = 0x0800;
const bit<16> ETH_TYPE_ARP = 0x0806;
const bit<8> IP_PROTO_ICMP = 1;
const bit<8> IP_PROTO_UDP = 17;
const bit<16> ARP_OP_REPLY = 2;
const bit<16> UDP_PORT_VXLAN = 4789;

/* Stage numbers: the index of each stage in STAGES (checked by the consistency test). */
const bit<8> STAGE_CLASSIFY = 0;
const bit<8> STAGE_PORT_SECURITY = 1;
const bit<8> STAGE_DISPATCH = 2;
const bit<8> STAGE_ARP_RESPONDER = 3;
const bit<8> STAGE_DHCP = 4;
const bit<8> STAGE_L2_LOOKUP = 5;
const bit<8> STAGE_L3_LOOKUP = 6;
const bit<8> STAGE_EGRESS = 7;
/* No further stage: the packet was output, flooded, punted, answered or dropped. */
const bit<8> STAGE_DONE = 255;

/* Punt reasons: PuntReason::code() in the IR (checked by the consistency test). */
const bit<8> PUNT_DHCP = 1;
const bit<8> PUNT_L3_MISS = 2;
const bit<8> PUNT_TTL_EXPIRED = 3;
const bit<8> PUNT_ICMP_TO_ROUTER = 4;

/* packet_out.mode: send out of egress_port as is, or run the packet through the pipeline as
 * if it had arrived on ingress_port (OpenFlow's output:TABLE, used to release a packet once
 * the controller installed its flow). */
const bit<8> PACKET_OUT_DIRECT = 0;
const bit<8> PACKET_OUT_PIPELINE = 1;
/* Bytes of the packet_out header, not part of the frame. */
const bit<16> PACKET_OUT_LEN = 5;
/* Outer Ethernet + IPv4 + UDP + VXLAN. */
const bit<16> VXLAN_ENCAP_LEN = 50;

/* Sent to the controller before a punted frame. */
@controller_header("packet_in")
header packet_in_t {
    bit<16> ingress_port;  /* the switch port the packet came in on */
    bit<8>  reason;        /* PUNT_* */
    bit<16> inport;        /* logical in-port key (0 for tunnel traffic) */
    bit<24> network;       /* network key */
    bit<16> router;        /* router key, set when the packet reached l3_lookup */
}

/* Prepended by the controller to a frame it sends. */
@controller_header("packet_out")
header packet_out_t {
    bit<16> egress_port;   /* PACKET_OUT_DIRECT: the switch port to send out of */
    bit<16> ingress_port;  /* PACKET_OUT_PIPELINE: the switch port the packet claims to come from */
    bit<8>  mode;          /* PACKET_OUT_* */
}

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

/* ARP for IPv4 over Ethernet only (the parser rejects other formats). */
header arp_t {
    bit<16> htype;
    bit<16> ptype;
    bit<8>  hlen;
    bit<8>  plen;
    bit<16> op;
    bit<48> sha;
    bit<32> spa;
    bit<48> tha;
    bit<32> tpa;
}

/* IPv4 without options (the parser rejects ihl != 5). */
header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> totalLen;
    bit<16> identification;
    bit<3>  flags;
    bit<13> fragOffset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdrChecksum;
    bit<32> srcAddr;
    bit<32> dstAddr;
}

header icmp_t {
    bit<8>  icmp_type;
    bit<8>  icmp_code;
    bit<16> checksum;
}

header udp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<16> len;
    bit<16> checksum;
}

header vxlan_t {
    bit<8>  flags;
    bit<24> reserved;
    bit<24> vni;
    bit<8>  reserved2;
}

/* The headers the pipeline looks at are always ethernet/arp/ipv4/icmp/udp: a tunnelled packet
 * is decapsulated by classify (inner_* moved over the outer headers), and output_vxlan moves
 * them into inner_* before writing the outer headers. */
struct headers_t {
    packet_out_t packet_out;
    packet_in_t  packet_in;
    ethernet_t   ethernet;
    arp_t        arp;
    ipv4_t       ipv4;
    icmp_t       icmp;
    udp_t        udp;
    vxlan_t      vxlan;
    ethernet_t   inner_ethernet;
    arp_t        inner_arp;
    ipv4_t       inner_ipv4;
    icmp_t       inner_icmp;
    udp_t        inner_udp;
}

/* The logical registers of docs/pipeline.md (reg4..reg7 in OpenFlow). Keys are never 0. */
struct metadata_t {
    bit<9>  phys_in_port;  /* switch port the packet came in on (classify's key) */
    bit<24> tunnel_id;     /* VNI of a VXLAN packet, 0 otherwise */
    bit<24> network;       /* reg4: network key (24 bits, the VNI between hosts) */
    bit<16> router;        /* reg5: router key */
    bit<16> inport;        /* reg6: logical in-port key */
    bit<16> outport;       /* reg7: logical out-port key */
    bit<8>  next_stage;    /* STAGE_*: the stage a goto chose */
    bit<1>  flooded;       /* set by flood: egress prunes the copy for the in-port */
    bit<16> frame_len;     /* bytes of the Ethernet frame (for VXLAN encapsulation) */
}

error {
    ArpNotIpv4OverEthernet,
    Ipv4OptionsNotSupported
}

parser MyParser(packet_in packet,
                out headers_t hdr,
                inout metadata_t meta,
                inout standard_metadata_t standard_metadata) {
    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition parse_ethernet;
    }

    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            ETH_TYPE_ARP: parse_arp;
            ETH_TYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_arp {
        packet.extract(hdr.arp);
        verify(hdr.arp.htype == 1 && hdr.arp.ptype == ETH_TYPE_IPV4
               && hdr.arp.hlen == 6 && hdr.arp.plen == 4, error.ArpNotIpv4OverEthernet);
        transition accept;
    }

    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        verify(hdr.ipv4.ihl == 5, error.Ipv4OptionsNotSupported);
        transition select(hdr.ipv4.fragOffset, hdr.ipv4.protocol) {
            (0, IP_PROTO_ICMP): parse_icmp;
            (0, IP_PROTO_UDP): parse_udp;
            default: accept;
        }
    }

    state parse_icmp {
        packet.extract(hdr.icmp);
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition select(hdr.udp.dstPort) {
            UDP_PORT_VXLAN: parse_vxlan;
            default: accept;
        }
    }

    state parse_vxlan {
        packet.extract(hdr.vxlan);
        packet.extract(hdr.inner_ethernet);
        transition select(hdr.inner_ethernet.etherType) {
            ETH_TYPE_ARP: parse_inner_arp;
            ETH_TYPE_IPV4: parse_inner_ipv4;
            default: accept;
        }
    }

    state parse_inner_arp {
        packet.extract(hdr.inner_arp);
        verify(hdr.inner_arp.htype == 1 && hdr.inner_arp.ptype == ETH_TYPE_IPV4
               && hdr.inner_arp.hlen == 6 && hdr.inner_arp.plen == 4,
               error.ArpNotIpv4OverEthernet);
        transition accept;
    }

    state parse_inner_ipv4 {
        packet.extract(hdr.inner_ipv4);
        verify(hdr.inner_ipv4.ihl == 5, error.Ipv4OptionsNotSupported);
        transition select(hdr.inner_ipv4.fragOffset, hdr.inner_ipv4.protocol) {
            (0, IP_PROTO_ICMP): parse_inner_icmp;
            (0, IP_PROTO_UDP): parse_inner_udp;
            default: accept;
        }
    }

    state parse_inner_icmp {
        packet.extract(hdr.inner_icmp);
        transition accept;
    }

    state parse_inner_udp {
        packet.extract(hdr.inner_udp);
        transition accept;
    }
}

control MyVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum, HashAlgorithm.csum16);
    }
}

control MyIngress(inout headers_t hdr,
                  inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {

    /* Packets each stage did not match (index: STAGE_*): port security drops, unknown
     * unicast, missing routes. Per-entry counts are the tables' direct counters. */
    counter(8, CounterType.packets_and_bytes) table_misses;

    direct_counter(CounterType.packets_and_bytes) classify_counter;
    direct_counter(CounterType.packets_and_bytes) port_security_counter;
    direct_counter(CounterType.packets_and_bytes) dispatch_counter;
    direct_counter(CounterType.packets_and_bytes) arp_responder_counter;
    direct_counter(CounterType.packets_and_bytes) dhcp_counter;
    direct_counter(CounterType.packets_and_bytes) l2_lookup_counter;
    direct_counter(CounterType.packets_and_bytes) l3_lookup_counter;
    direct_counter(CounterType.packets_and_bytes) egress_counter;

    /* A flow without actions, and every miss that the stage declares as a drop. */
    action drop() {
        mark_to_drop(standard_metadata);
        meta.next_stage = STAGE_DONE;
    }

    /* classify: SetInPort, SetNetwork, Goto(port_security). */
    action set_port_and_network(bit<16> inport, bit<24> network) {
        meta.inport = inport;
        meta.network = network;
        meta.next_stage = STAGE_PORT_SECURITY;
    }

    /* classify, tunnel + VNI: decapsulate, SetNetwork, Goto(l2_lookup). Traffic from another
     * host was checked by that host's port security. */
    action set_tunnel_network(bit<24> network) {
        hdr.ethernet = hdr.inner_ethernet;
        hdr.arp = hdr.inner_arp;
        hdr.ipv4 = hdr.inner_ipv4;
        hdr.icmp = hdr.inner_icmp;
        hdr.udp = hdr.inner_udp;
        hdr.vxlan.setInvalid();
        hdr.inner_ethernet.setInvalid();
        hdr.inner_arp.setInvalid();
        hdr.inner_ipv4.setInvalid();
        hdr.inner_icmp.setInvalid();
        hdr.inner_udp.setInvalid();
        meta.frame_len = meta.frame_len - VXLAN_ENCAP_LEN;
        meta.inport = 0;
        meta.network = network;
        meta.next_stage = STAGE_L2_LOOKUP;
    }

    action goto_dispatch() {
        meta.next_stage = STAGE_DISPATCH;
    }

    action goto_arp_responder() {
        meta.next_stage = STAGE_ARP_RESPONDER;
    }

    action goto_dhcp() {
        meta.next_stage = STAGE_DHCP;
    }

    action goto_l2_lookup() {
        meta.next_stage = STAGE_L2_LOOKUP;
    }

    /* ArpReply { mac }: turn the request into the reply for `mac` in place and send it back
     * out of the port it came in on (the matched arp.tpa becomes the sender address). */
    action arp_reply(bit<48> mac) {
        bit<32> target_ip = hdr.arp.tpa;
        hdr.ethernet.dstAddr = hdr.ethernet.srcAddr;
        hdr.ethernet.srcAddr = mac;
        hdr.arp.op = ARP_OP_REPLY;
        hdr.arp.tha = hdr.arp.sha;
        hdr.arp.tpa = hdr.arp.spa;
        hdr.arp.sha = mac;
        hdr.arp.spa = target_ip;
        standard_metadata.egress_spec = meta.phys_in_port;
        meta.next_stage = STAGE_DONE;
    }

    /* Punt(reason): to the controller with the reason and the logical keys. */
    action punt(bit<8> reason) {
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = (bit<16>)meta.phys_in_port;
        hdr.packet_in.reason = reason;
        hdr.packet_in.inport = meta.inport;
        hdr.packet_in.network = meta.network;
        hdr.packet_in.router = meta.router;
        standard_metadata.egress_spec = CPU_PORT;
        meta.next_stage = STAGE_DONE;
    }

    /* l2_lookup: SetOutPort, Goto(egress). */
    action set_outport(bit<16> outport) {
        meta.outport = outport;
        meta.next_stage = STAGE_EGRESS;
    }

    /* l2_lookup: SetRouter, Goto(l3_lookup). */
    action set_router(bit<16> router) {
        meta.router = router;
        meta.next_stage = STAGE_L3_LOOKUP;
    }

    /* Flood(network): the multicast group whose id is the network key holds the network's
     * local ports; egress drops the copy for the in-port. */
    action flood(bit<16> group) {
        standard_metadata.mcast_grp = group;
        meta.flooded = 1;
        meta.next_stage = STAGE_DONE;
    }

    /* l3_lookup: DecTtl, SetEthSrc, SetEthDst, SetNetwork, SetOutPort, Goto(egress). */
    action route(bit<48> router_mac, bit<48> dst_mac, bit<24> network, bit<16> outport) {
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
        hdr.ethernet.srcAddr = router_mac;
        hdr.ethernet.dstAddr = dst_mac;
        meta.network = network;
        meta.outport = outport;
        meta.next_stage = STAGE_EGRESS;
    }

    /* Output(port): out of a switch port. */
    action output(bit<9> port) {
        standard_metadata.egress_spec = port;
        meta.next_stage = STAGE_DONE;
    }

    /* egress to a port on another host: VXLAN-encapsulate with the network's VNI towards the
     * remote tunnel endpoint and send out of the underlay port. */
    action output_vxlan(bit<9> port, bit<24> vni, bit<48> src_mac, bit<48> dst_mac,
                        bit<32> src_ip, bit<32> dst_ip) {
        hdr.inner_ethernet = hdr.ethernet;
        hdr.inner_arp = hdr.arp;
        hdr.inner_ipv4 = hdr.ipv4;
        hdr.inner_icmp = hdr.icmp;
        hdr.inner_udp = hdr.udp;
        hdr.arp.setInvalid();
        hdr.icmp.setInvalid();

        hdr.ethernet.dstAddr = dst_mac;
        hdr.ethernet.srcAddr = src_mac;
        hdr.ethernet.etherType = ETH_TYPE_IPV4;

        hdr.ipv4.setValid();
        hdr.ipv4.version = 4;
        hdr.ipv4.ihl = 5;
        hdr.ipv4.diffserv = 0;
        hdr.ipv4.totalLen = meta.frame_len + (VXLAN_ENCAP_LEN - 14);
        hdr.ipv4.identification = 0;
        hdr.ipv4.flags = 0b010;
        hdr.ipv4.fragOffset = 0;
        hdr.ipv4.ttl = 64;
        hdr.ipv4.protocol = IP_PROTO_UDP;
        hdr.ipv4.hdrChecksum = 0;
        hdr.ipv4.srcAddr = src_ip;
        hdr.ipv4.dstAddr = dst_ip;

        hdr.udp.setValid();
        /* Source port from the inner addresses: ECMP entropy in the underlay (RFC 7348). */
        hash(hdr.udp.srcPort, HashAlgorithm.crc16, (bit<16>)49152,
             { hdr.inner_ethernet.srcAddr, hdr.inner_ethernet.dstAddr }, (bit<32>)16384);
        hdr.udp.dstPort = UDP_PORT_VXLAN;
        hdr.udp.len = meta.frame_len + (VXLAN_ENCAP_LEN - 34);
        hdr.udp.checksum = 0;

        hdr.vxlan.setValid();
        hdr.vxlan.flags = 0x08;
        hdr.vxlan.reserved = 0;
        hdr.vxlan.vni = vni;
        hdr.vxlan.reserved2 = 0;

        standard_metadata.egress_spec = port;
        meta.next_stage = STAGE_DONE;
    }

    table classify {
        key = {
            meta.phys_in_port: exact;
            meta.tunnel_id: ternary;
        }
        actions = {
            set_port_and_network;
            set_tunnel_network;
            drop;
        }
        const default_action = drop();
        counters = classify_counter;
        size = 16384;
    }

    table port_security {
        key = {
            meta.inport: exact;
            hdr.ethernet.srcAddr: ternary;
            hdr.ethernet.etherType: ternary;
            hdr.ipv4.srcAddr: ternary;
            hdr.ipv4.dstAddr: ternary;
            hdr.ipv4.protocol: ternary;
            hdr.udp.srcPort: ternary;
            hdr.udp.dstPort: ternary;
            hdr.arp.sha: ternary;
            hdr.arp.spa: ternary;
        }
        actions = {
            goto_dispatch;
            drop;
        }
        const default_action = drop();
        counters = port_security_counter;
        size = 65536;
    }

    table dispatch {
        key = {
            hdr.ethernet.etherType: ternary;
            hdr.arp.op: ternary;
            hdr.ipv4.protocol: ternary;
            hdr.udp.srcPort: ternary;
            hdr.udp.dstPort: ternary;
        }
        actions = {
            goto_arp_responder;
            goto_dhcp;
            goto_l2_lookup;
            drop;
        }
        const default_action = goto_l2_lookup();
        counters = dispatch_counter;
        size = 64;
    }

    table arp_responder {
        key = {
            meta.network: exact;
            meta.inport: ternary;
            hdr.ethernet.etherType: ternary;
            hdr.arp.op: ternary;
            hdr.arp.tpa: ternary;
        }
        actions = {
            arp_reply;
            goto_l2_lookup;
            drop;
        }
        const default_action = goto_l2_lookup();
        counters = arp_responder_counter;
        size = 65536;
    }

    table dhcp {
        key = {
            meta.inport: exact;
            hdr.ethernet.etherType: ternary;
            hdr.ipv4.protocol: ternary;
            hdr.udp.srcPort: ternary;
            hdr.udp.dstPort: ternary;
        }
        actions = {
            punt;
            goto_l2_lookup;
            drop;
        }
        const default_action = goto_l2_lookup();
        counters = dhcp_counter;
        size = 16384;
    }

    table l2_lookup {
        key = {
            meta.network: exact;
            hdr.ethernet.dstAddr: ternary;
        }
        actions = {
            set_outport;
            set_router;
            flood;
            drop;
        }
        const default_action = drop();
        counters = l2_lookup_counter;
        size = 65536;
    }

    table l3_lookup {
        key = {
            meta.router: exact;
            hdr.ethernet.etherType: ternary;
            hdr.ipv4.protocol: ternary;
            hdr.ipv4.dstAddr: ternary;
            hdr.ipv4.ttl: ternary;
        }
        actions = {
            route;
            punt;
            drop;
        }
        const default_action = drop();
        counters = l3_lookup_counter;
        size = 65536;
    }

    table egress {
        key = {
            meta.outport: exact;
        }
        actions = {
            output;
            output_vxlan;
            drop;
        }
        const default_action = drop();
        counters = egress_counter;
        size = 16384;
    }

    apply {
        meta.next_stage = STAGE_DONE;
        meta.frame_len = (bit<16>)standard_metadata.packet_length;
        if (hdr.vxlan.isValid()) {
            meta.tunnel_id = hdr.vxlan.vni;
        }
        if (standard_metadata.parser_error != error.NoError
                || standard_metadata.checksum_error == 1) {
            mark_to_drop(standard_metadata);
        } else if (hdr.packet_out.isValid()) {
            meta.frame_len = meta.frame_len - PACKET_OUT_LEN;
            if (hdr.packet_out.mode == PACKET_OUT_PIPELINE) {
                meta.phys_in_port = (bit<9>)hdr.packet_out.ingress_port;
                meta.next_stage = STAGE_CLASSIFY;
            } else {
                standard_metadata.egress_spec = (bit<9>)hdr.packet_out.egress_port;
            }
            hdr.packet_out.setInvalid();
        } else {
            meta.phys_in_port = standard_metadata.ingress_port;
            meta.next_stage = STAGE_CLASSIFY;
        }

        if (meta.next_stage == STAGE_CLASSIFY) {
            if (!classify.apply().hit) {
                table_misses.count((bit<32>)STAGE_CLASSIFY);
            }
        }
        if (meta.next_stage == STAGE_PORT_SECURITY) {
            if (!port_security.apply().hit) {
                table_misses.count((bit<32>)STAGE_PORT_SECURITY);
            }
        }
        if (meta.next_stage == STAGE_DISPATCH) {
            if (!dispatch.apply().hit) {
                table_misses.count((bit<32>)STAGE_DISPATCH);
            }
        }
        if (meta.next_stage == STAGE_ARP_RESPONDER) {
            if (!arp_responder.apply().hit) {
                table_misses.count((bit<32>)STAGE_ARP_RESPONDER);
            }
        }
        if (meta.next_stage == STAGE_DHCP) {
            if (!dhcp.apply().hit) {
                table_misses.count((bit<32>)STAGE_DHCP);
            }
        }
        if (meta.next_stage == STAGE_L2_LOOKUP) {
            if (!l2_lookup.apply().hit) {
                table_misses.count((bit<32>)STAGE_L2_LOOKUP);
            }
        }
        if (meta.next_stage == STAGE_L3_LOOKUP) {
            if (!l3_lookup.apply().hit) {
                table_misses.count((bit<32>)STAGE_L3_LOOKUP);
            }
        }
        if (meta.next_stage == STAGE_EGRESS) {
            if (!egress.apply().hit) {
                table_misses.count((bit<32>)STAGE_EGRESS);
            }
        }
        /* A goto to a stage that already ran (never compiled; the IR checker forbids it). */
        if (meta.next_stage != STAGE_DONE) {
            mark_to_drop(standard_metadata);
        }
    }
}

control MyEgress(inout headers_t hdr,
                 inout metadata_t meta,
                 inout standard_metadata_t standard_metadata) {
    apply {
        /* A flood never goes back out of the port it came in on. */
        if (meta.flooded == 1 && standard_metadata.egress_port == meta.phys_in_port) {
            mark_to_drop(standard_metadata);
        }
    }
}

control MyComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum, HashAlgorithm.csum16);
        /* After output_vxlan the routed (TTL-decremented) header is the inner one. */
        update_checksum(hdr.inner_ipv4.isValid(),
            { hdr.inner_ipv4.version, hdr.inner_ipv4.ihl, hdr.inner_ipv4.diffserv,
              hdr.inner_ipv4.totalLen, hdr.inner_ipv4.identification, hdr.inner_ipv4.flags,
              hdr.inner_ipv4.fragOffset, hdr.inner_ipv4.ttl, hdr.inner_ipv4.protocol,
              hdr.inner_ipv4.srcAddr, hdr.inner_ipv4.dstAddr },
            hdr.inner_ipv4.hdrChecksum, HashAlgorithm.csum16);
    }
}

control MyDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.arp);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.icmp);
        packet.emit(hdr.udp);
        packet.emit(hdr.vxlan);
        packet.emit(hdr.inner_ethernet);
        packet.emit(hdr.inner_arp);
        packet.emit(hdr.inner_ipv4);
        packet.emit(hdr.inner_icmp);
        packet.emit(hdr.inner_udp);
    }
}

V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(),
         MyDeparser()) main;
