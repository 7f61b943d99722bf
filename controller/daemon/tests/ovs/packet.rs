//! Just enough packet building and parsing for the tests: Ethernet, ARP, IPv4, ICMP, UDP,
//! DHCP. Written independently of wyvern's own wire code, so a bug there cannot hide here.

use std::net::Ipv4Addr;

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV4: u16 = 0x0800;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_UDP: u8 = 17;

/// `fa:16:3e:00:00:01` -> bytes.
pub fn parse_mac(s: &str) -> Mac {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 6, "not a MAC: {s}");
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("not a MAC: {s}"));
    }
    mac
}

pub fn fmt_mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Lower-case hex of a frame, the form `ovs-appctl netdev-dummy/receive` accepts.
pub fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A broadcast ARP request: who has `tpa`? tell `spa` (at `sha`).
pub fn arp_request(sha: Mac, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa.octets());
    ethernet(BROADCAST, sha, ETH_ARP, &a)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An ICMP echo request; `id` (the IP id and the echo id) tells test packets apart.
pub fn icmp_echo(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    id: u16,
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&1u16.to_be_bytes());
    icmp.extend_from_slice(b"wyvern-ovs-e2e!!");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ethernet(
        dst_mac,
        src_mac,
        ETH_IPV4,
        &ipv4(src, dst, ttl, PROTO_ICMP, id, &icmp),
    )
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + len);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, PROTO_UDP]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    pseudo.extend_from_slice(&u);
    let c = match checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// A UDP datagram whose IP id tells test packets apart.
pub fn udp_packet(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let seg = udp(src, dst, sport, dport, b"wyvern-ovs-e2e");
    ethernet(
        dst_mac,
        src_mac,
        ETH_IPV4,
        &ipv4(src, dst, 64, PROTO_UDP, id, &seg),
    )
}

/// A DHCPDISCOVER from `mac` (0.0.0.0:68 -> 255.255.255.255:67, broadcast).
pub fn dhcp_discover(mac: Mac, xid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10] = 0x80; // broadcast flag
    b[28..34].copy_from_slice(&mac);
    b.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    b.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    b.extend_from_slice(&[55, 4, 1, 3, 6, 15]); // parameter request list
    b.push(255);
    let src = Ipv4Addr::UNSPECIFIED;
    let dst = Ipv4Addr::BROADCAST;
    let seg = udp(src, dst, 68, 67, &b);
    ethernet(
        BROADCAST,
        mac,
        ETH_IPV4,
        &ipv4(src, dst, 64, PROTO_UDP, 0, &seg),
    )
}

/// A parsed Ethernet frame (only what the tests look at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn parse(bytes: &[u8]) -> Option<Frame> {
        if bytes.len() < 14 {
            return None;
        }
        Some(Frame {
            dst: bytes[0..6].try_into().ok()?,
            src: bytes[6..12].try_into().ok()?,
            ethertype: u16::from_be_bytes([bytes[12], bytes[13]]),
            payload: bytes[14..].to_vec(),
        })
    }

    pub fn arp(&self) -> Option<Arp> {
        (self.ethertype == ETH_ARP).then(|| Arp::parse(&self.payload))?
    }

    pub fn ipv4(&self) -> Option<Ipv4> {
        (self.ethertype == ETH_IPV4).then(|| Ipv4::parse(&self.payload))?
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

impl Arp {
    fn parse(b: &[u8]) -> Option<Arp> {
        if b.len() < 28 {
            return None;
        }
        let ip = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        Some(Arp {
            op: u16::from_be_bytes([b[6], b[7]]),
            sha: b[8..14].try_into().ok()?,
            spa: ip(14),
            tha: b[18..24].try_into().ok()?,
            tpa: ip(24),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4 {
    pub id: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Whether the header checksum verifies (rewrites must keep it right).
    pub checksum_ok: bool,
    pub payload: Vec<u8>,
}

impl Ipv4 {
    fn parse(b: &[u8]) -> Option<Ipv4> {
        if b.len() < 20 || b[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if ihl < 20 || total < ihl || b.len() < total {
            return None;
        }
        let ip = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        Some(Ipv4 {
            id: u16::from_be_bytes([b[4], b[5]]),
            ttl: b[8],
            proto: b[9],
            src: ip(12),
            dst: ip(16),
            checksum_ok: checksum(&b[..ihl]) == 0,
            payload: b[ihl..total].to_vec(),
        })
    }

    /// (source port, destination port, payload) of a UDP datagram.
    pub fn udp(&self) -> Option<(u16, u16, &[u8])> {
        if self.proto != PROTO_UDP || self.payload.len() < 8 {
            return None;
        }
        let p = &self.payload;
        Some((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
            &p[8..],
        ))
    }
}

/// The fields of a DHCP reply the tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    pub op: u8,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub chaddr: Mac,
    /// Option 53.
    pub message_type: Option<u8>,
    /// Option 3, first router.
    pub router: Option<Ipv4Addr>,
}

impl Dhcp {
    pub fn parse(b: &[u8]) -> Option<Dhcp> {
        if b.len() < 240 || b[236..240] != [99, 130, 83, 99] {
            return None;
        }
        let mut d = Dhcp {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            yiaddr: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
            chaddr: b[28..34].try_into().ok()?,
            message_type: None,
            router: None,
        };
        let mut i = 240;
        while i < b.len() {
            let code = b[i];
            if code == 255 {
                break;
            }
            if code == 0 {
                i += 1;
                continue;
            }
            let len = usize::from(*b.get(i + 1)?);
            let val = b.get(i + 2..i + 2 + len)?;
            match code {
                53 if len == 1 => d.message_type = Some(val[0]),
                3 if len >= 4 => d.router = Some(Ipv4Addr::new(val[0], val[1], val[2], val[3])),
                _ => {}
            }
            i += 2 + len;
        }
        Some(d)
    }
}

/// The frames of a pcap file (classic format, either byte order). A record still being
/// written at the end is ignored; a missing file is no frames yet.
pub fn read_pcap(path: &std::path::Path) -> Vec<Vec<u8>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    if bytes.len() < 24 {
        return Vec::new();
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        _ => panic!("{} is not a pcap file", path.display()),
    };
    let u32_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let caplen = u32_at(off + 8) as usize;
        let start = off + 16;
        if start + caplen > bytes.len() {
            break;
        }
        frames.push(bytes[start..start + caplen].to_vec());
        off = start + caplen;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_round_trip_through_parsers() {
        let a = parse_mac("fa:16:3e:00:00:01");
        let b = parse_mac("fa:16:3e:00:00:02");
        let (s, d) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3));
        let f = Frame::parse(&icmp_echo(a, b, s, d, 64, 77)).expect("frame");
        assert_eq!((f.src, f.dst), (a, b));
        let ip = f.ipv4().expect("ipv4");
        assert!(ip.checksum_ok);
        assert_eq!((ip.src, ip.dst, ip.ttl, ip.id), (s, d, 64, 77));
        let arp = Frame::parse(&arp_request(a, s, d))
            .and_then(|f| f.arp())
            .expect("arp");
        assert_eq!((arp.op, arp.sha, arp.spa, arp.tpa), (1, a, s, d));
        let f = Frame::parse(&dhcp_discover(a, 0x1234)).expect("frame");
        let ip = f.ipv4().expect("ipv4");
        let (sp, dp, body) = ip.udp().expect("udp");
        assert_eq!((sp, dp), (68, 67));
        let dhcp = Dhcp::parse(body).expect("dhcp");
        assert_eq!(
            (dhcp.xid, dhcp.message_type, dhcp.chaddr),
            (0x1234, Some(1), a)
        );
        assert_eq!(fmt_mac(&a), "fa:16:3e:00:00:01");
    }
}
