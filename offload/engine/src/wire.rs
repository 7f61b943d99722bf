//! Wire views over raw Ethernet frames, in the smoltcp shape: each view checks its length
//! once in `new_checked` and never panics after; byte offsets live in one private block per
//! protocol. [`Headers::parse`] walks Ethernet -> ARP | IPv4 -> UDP | ICMP and records what it
//! found; the rewriters change a frame in place (MACs, TTL with an incremental checksum
//! update, an ARP request turned into its reply).

use std::net::Ipv4Addr;

use wyvern_model::MacAddr;

/// Why a view refused its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("failed to read {layer}: {have} bytes, need {need}")]
    Truncated {
        layer: &'static str,
        need: usize,
        have: usize,
    },
    #[error("failed to read {layer}: {what}")]
    Malformed {
        layer: &'static str,
        what: &'static str,
    },
}

pub const ETH_TYPE_IPV4: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const IP_PROTO_ICMP: u8 = 1;
pub const IP_PROTO_UDP: u8 = 17;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

mod eth {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const TYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
}

/// An Ethernet II frame (no VLAN tags: a tagged frame shows its TPID as the ethertype).
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let have = buffer.as_ref().len();
        if have < eth::HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "ethernet",
                need: eth::HEADER_LEN,
                have,
            });
        }
        Ok(EthernetFrame { buffer })
    }
    pub fn dst(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), eth::DST)
    }
    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), eth::SRC)
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), eth::TYPE)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[eth::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[eth::DST..eth::DST + 6].copy_from_slice(&m.0);
    }
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[eth::SRC..eth::SRC + 6].copy_from_slice(&m.0);
    }
}

mod arp {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OP: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const LEN: usize = 28;
}

/// An ARP packet for Ethernet and IPv4 (the only kind the pipeline answers).
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < arp::LEN {
            return Err(WireError::Truncated {
                layer: "arp",
                need: arp::LEN,
                have: b.len(),
            });
        }
        if be16(b, arp::HTYPE) != 1
            || be16(b, arp::PTYPE) != ETH_TYPE_IPV4
            || b[arp::HLEN] != 6
            || b[arp::PLEN] != 4
        {
            return Err(WireError::Malformed {
                layer: "arp",
                what: "not Ethernet/IPv4 ARP",
            });
        }
        Ok(ArpPacket { buffer })
    }
    pub fn op(&self) -> u16 {
        be16(self.buffer.as_ref(), arp::OP)
    }
    pub fn sha(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), arp::SHA)
    }
    pub fn spa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), arp::SPA)
    }
    pub fn tha(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), arp::THA)
    }
    pub fn tpa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), arp::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Turns a request into the reply from `mac` (the owner of the requested address):
    /// swaps sender and target, the requested address becomes the sender.
    pub fn make_reply(&mut self, mac: MacAddr) {
        let b = self.buffer.as_mut();
        let mut spa = [0u8; 4];
        spa.copy_from_slice(&b[arp::SPA..arp::SPA + 4]);
        let mut tpa = [0u8; 4];
        tpa.copy_from_slice(&b[arp::TPA..arp::TPA + 4]);
        b.copy_within(arp::SHA..arp::SHA + 6, arp::THA);
        b[arp::SHA..arp::SHA + 6].copy_from_slice(&mac.0);
        b[arp::SPA..arp::SPA + 4].copy_from_slice(&tpa);
        b[arp::TPA..arp::TPA + 4].copy_from_slice(&spa);
        b[arp::OP..arp::OP + 2].copy_from_slice(&2u16.to_be_bytes());
    }
}

mod ipv4 {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
}

/// An IPv4 header (options allowed; the header length is checked against the buffer).
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < ipv4::MIN_LEN {
            return Err(WireError::Truncated {
                layer: "ipv4",
                need: ipv4::MIN_LEN,
                have: b.len(),
            });
        }
        if b[ipv4::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed {
                layer: "ipv4",
                what: "version is not 4",
            });
        }
        let hlen = usize::from(b[ipv4::VER_IHL] & 0x0f) * 4;
        if hlen < ipv4::MIN_LEN {
            return Err(WireError::Malformed {
                layer: "ipv4",
                what: "header length below 20",
            });
        }
        if b.len() < hlen {
            return Err(WireError::Truncated {
                layer: "ipv4 options",
                need: hlen,
                have: b.len(),
            });
        }
        Ok(Ipv4Packet { buffer })
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[ipv4::VER_IHL] & 0x0f) * 4
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), ipv4::TOTAL_LEN)
    }
    /// Fragment offset in 8-byte units (0 for the first or only fragment).
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), ipv4::FRAG) & 0x1fff
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[ipv4::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[ipv4::PROTO]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), ipv4::CHECKSUM)
    }
    pub fn src(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), ipv4::SRC)
    }
    pub fn dst(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), ipv4::DST)
    }
    /// Whether the header checksum verifies.
    pub fn checksum_ok(&self) -> bool {
        ones_complement_sum(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Decrements the TTL and patches the checksum incrementally (RFC 1624, eqn. 3:
    /// HC' = ~(~HC + ~m + m') over the 16-bit word holding TTL and protocol), so a routed
    /// packet costs no full checksum pass. The caller checks that the TTL is above 1.
    pub fn dec_ttl(&mut self) {
        // new_checked saw at least 20 bytes.
        if let Some(head) = self.buffer.as_mut().first_chunk_mut() {
            dec_ttl_in_place(head);
        }
    }
    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let hlen = self.header_len();
        let b = self.buffer.as_mut();
        b[ipv4::CHECKSUM] = 0;
        b[ipv4::CHECKSUM + 1] = 0;
        let c = !ones_complement_sum(&b[..hlen]);
        b[ipv4::CHECKSUM..ipv4::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// [`Ipv4Packet::dec_ttl`] on the first 12 bytes of a header the caller has checked (the
/// engine's cache replay, whose frame `Headers::parse` checked): the TTL and the checksum
/// both lie there, so no other bound is needed.
#[inline(always)]
pub fn dec_ttl_in_place(b: &mut [u8; 12]) {
    let old_word = be16(b, ipv4::TTL);
    b[ipv4::TTL] = b[ipv4::TTL].wrapping_sub(1);
    let new_word = be16(b, ipv4::TTL);
    let hc = be16(b, ipv4::CHECKSUM);
    let mut sum = u32::from(!hc) + u32::from(!old_word) + u32::from(new_word);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let new = !(sum as u16);
    b[ipv4::CHECKSUM..ipv4::CHECKSUM + 2].copy_from_slice(&new.to_be_bytes());
}

/// [`dec_ttl_in_place`] for a cache replay, where the TTL is known to be at least 1 (the
/// recorded walk checked it, and the TTL is part of the flow key): the TTL/protocol word
/// then drops by exactly 0x100, so `!old + new` is the constant 0xfeff and the update is
/// one add and two folds. Bit for bit the same result (test below); a TTL of 0 takes
/// the general path.
#[inline(always)]
pub fn dec_ttl_in_place_replay(b: &mut [u8; 12]) {
    if b[ipv4::TTL] == 0 {
        dec_ttl_in_place(b);
        return;
    }
    b[ipv4::TTL] -= 1;
    let hc = be16(b, ipv4::CHECKSUM);
    let mut sum = u32::from(!hc) + 0xfeff;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let new = !(sum as u16);
    b[ipv4::CHECKSUM..ipv4::CHECKSUM + 2].copy_from_slice(&new.to_be_bytes());
}

/// The 16-bit one's complement sum of `data` (odd length padded with a zero byte).
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// UDP header length; the pipeline reads only the ports.
pub const UDP_HEADER_LEN: usize = 8;
/// ICMP header length (type, code, checksum and the 4-byte rest of header).
pub const ICMP_HEADER_LEN: usize = 8;

/// Where the layers of a parsed frame start, and which ones are there. Built by one pass
/// over the frame; every offset recorded here was bounds-checked by its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub eth_type: u16,
    /// Offset of a valid Ethernet/IPv4 ARP packet.
    pub arp: Option<usize>,
    /// Offset of a valid IPv4 header.
    pub ipv4: Option<usize>,
    /// Offset of a UDP header (first fragment only: later ones carry no ports).
    pub udp: Option<usize>,
    /// Offset of an ICMP header (first fragment only).
    pub icmp: Option<usize>,
}

impl Headers {
    /// Parses `frame`. Only a frame too short for Ethernet is an error; an upper layer that
    /// is truncated or malformed is simply absent (its fields then match nothing).
    #[inline(always)]
    pub fn parse(frame: &[u8]) -> Result<Headers, WireError> {
        let eth = EthernetFrame::new_checked(frame)?;
        let mut h = Headers {
            eth_type: eth.ethertype(),
            arp: None,
            ipv4: None,
            udp: None,
            icmp: None,
        };
        let l3 = eth::HEADER_LEN;
        match h.eth_type {
            ETH_TYPE_ARP if ArpPacket::new_checked(&frame[l3..]).is_ok() => h.arp = Some(l3),
            ETH_TYPE_IPV4 => {
                if let Ok(ip) = Ipv4Packet::new_checked(&frame[l3..]) {
                    h.ipv4 = Some(l3);
                    let l4 = l3 + ip.header_len();
                    let room = frame.len() - l4;
                    if ip.frag_offset() == 0 {
                        match ip.protocol() {
                            IP_PROTO_UDP if room >= UDP_HEADER_LEN => h.udp = Some(l4),
                            IP_PROTO_ICMP if room >= ICMP_HEADER_LEN => h.icmp = Some(l4),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(h)
    }
}

/// UDP source and destination ports at `off` (an offset from [`Headers::udp`]).
pub fn udp_ports(frame: &[u8], off: usize) -> Option<(u16, u16)> {
    let b = frame.get(off..off + 4)?;
    Some((be16(b, 0), be16(b, 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A real `ping -c1 -s 16 10.0.0.1` from 10.0.0.5 (tcpdump capture, see
    /// controller/apps/tests/icmp_arp_parse.rs).
    const PING_HEX: &str = concat!(
        "fa163e000001020000aabb010800",
        "4500002cbb22400040016ba90a0000050a000001",
        "0800de017262000189ca0a6b000000000e65050000000000"
    );

    /// A real "who-has 10.0.0.1 tell 10.0.0.5" broadcast (Linux, tcpdump).
    const ARP_REQ_HEX: &str = concat!(
        "ffffffffffff020000aabb010806",
        "0001080006040001020000aabb010a000005000000000000",
        "0a000001"
    );

    #[test]
    fn parses_a_real_ping() {
        let f = hex(PING_HEX);
        let h = Headers::parse(&f).unwrap();
        assert_eq!(h.eth_type, ETH_TYPE_IPV4);
        assert_eq!(h.ipv4, Some(14));
        assert_eq!(h.icmp, Some(34));
        assert_eq!(h.udp, None);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), IP_PROTO_ICMP);
        assert!(ip.checksum_ok());
        assert_eq!(f[34], 8, "echo request");
    }

    #[test]
    fn dec_ttl_updates_the_checksum_like_a_full_recompute() {
        let mut f = hex(PING_HEX);
        for _ in 0..63 {
            let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
            ip.dec_ttl();
            assert!(ip.checksum_ok(), "ttl {}", ip.ttl());
            let incremental = ip.checksum();
            ip.fill_checksum();
            assert_eq!(ip.checksum(), incremental);
        }
        assert_eq!(f[22], 1);
    }

    /// The replay's shortcut equals the general update for every TTL, protocol and a
    /// spread of checksums (0x0000 and 0xffff included).
    #[test]
    fn replay_ttl_decrement_equals_the_general_one() {
        for ttl in 0..=255u8 {
            for proto in [1u8, 6, 17, 255] {
                for hc in (0..=0xffffu32).step_by(251).chain([0, 0xfffe, 0xffff]) {
                    let mut a = [0u8; 12];
                    a[8] = ttl;
                    a[9] = proto;
                    a[10..12].copy_from_slice(&(hc as u16).to_be_bytes());
                    let mut b = a;
                    dec_ttl_in_place(&mut a);
                    dec_ttl_in_place_replay(&mut b);
                    assert_eq!(a, b, "ttl {ttl} proto {proto} checksum {hc:#x}");
                }
            }
        }
    }

    #[test]
    fn arp_request_becomes_the_reply_in_place() {
        let mut f = hex(ARP_REQ_HEX);
        let h = Headers::parse(&f).unwrap();
        assert_eq!(h.arp, Some(14));
        let router = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
        {
            let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
            let src = e.src();
            e.set_dst(src);
            e.set_src(router);
        }
        ArpPacket::new_checked(&mut f[14..])
            .unwrap()
            .make_reply(router);
        // The reply a real router sends (controller/apps' expected bytes).
        let expected = hex(concat!(
            "020000aabb01fa163e0000010806",
            "0001080006040002fa163e0000010a000001020000aabb01",
            "0a000005"
        ));
        assert_eq!(f, expected);
    }

    #[test]
    fn truncated_layers_are_absent_not_errors() {
        let f = hex(PING_HEX);
        assert!(matches!(
            Headers::parse(&f[..13]),
            Err(WireError::Truncated {
                layer: "ethernet",
                ..
            })
        ));
        let h = Headers::parse(&f[..30]).unwrap();
        assert_eq!((h.ipv4, h.icmp), (None, None));
        let h = Headers::parse(&f[..38]).unwrap();
        assert_eq!((h.ipv4, h.icmp), (Some(14), None), "icmp needs 8 bytes");
        let a = hex(ARP_REQ_HEX);
        assert_eq!(Headers::parse(&a[..41]).unwrap().arp, None);
        let mut bad = a.clone();
        bad[19] = 16; // hlen 16: not Ethernet ARP
        assert_eq!(Headers::parse(&bad).unwrap().arp, None);
        let mut opts = f.clone();
        opts[14] = 0x4f; // ihl 15 = 60 bytes of header: more than the frame has
        assert_eq!(Headers::parse(&opts).unwrap().ipv4, None);
    }
}
