//! `dhcp-load`: a closed-loop DHCPv4 DORA load generator that behaves like real clients.
//!
//! Why not only perfdhcp: perfdhcp (Kea 2.2) always simulates a relay agent (UDP 67 -> 67,
//! `giaddr` = its own address, the frame's source MAC = its interface's MAC). wyvern's
//! server is port-local, like OVN's: it serves the client on the port the frame came in
//! on (UDP 68 -> 67 from 0.0.0.0, source MAC = chaddr = the port's MAC) and by design never
//! answers relayed requests. This generator sends what dhclient sends, for many client MACs,
//! through one raw socket, so the same load can be put on wyvern and on Kea.
//!
//! Each client loops DISCOVER -> OFFER -> REQUEST (server id, requested IP) -> ACK; at most
//! `--window` clients are in an exchange at once, idle clients are started round-robin. A
//! phase without an answer within `--timeout-ms` counts as a timeout and the client starts
//! over. Run it inside the namespace of the interface (`ip netns exec NS dhcp-load ...`).
//! Prints one JSON document on stdout.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use wyvern_bench::Latency;

#[derive(Debug, Parser)]
#[command(
    name = "dhcp-load",
    about = "Closed-loop DORA load from many client MACs"
)]
struct Args {
    /// Interface to send on (inside the current namespace).
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// File with one client MAC per line.
    #[arg(long)]
    macs: PathBuf,
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Exchanges in flight at once.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Time a server gets to answer one message.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
}

const ETH_P_IP: u16 = 0x0800;

#[derive(Debug, Clone, Copy)]
enum State {
    Idle,
    Discovering {
        xid: u32,
        t0: Instant,
    },
    Requesting {
        xid: u32,
        t0: Instant,
        t_req: Instant,
    },
}

struct Client {
    mac: [u8; 6],
    state: State,
    leased: Option<Ipv4Addr>,
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A client message as dhclient sends it: broadcast from 0.0.0.0:68 to 255.255.255.255:67.
fn frame(mac: &[u8; 6], xid: u32, options: &[u8]) -> Vec<u8> {
    let mut bootp = Vec::with_capacity(300);
    bootp.extend_from_slice(&[1, 1, 6, 0]);
    bootp.extend_from_slice(&xid.to_be_bytes());
    bootp.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags: broadcast
    bootp.extend_from_slice(&[0; 16]); // ciaddr yiaddr siaddr giaddr
    bootp.extend_from_slice(mac);
    bootp.extend_from_slice(&[0; 10 + 64 + 128]);
    bootp.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    bootp.extend_from_slice(options);
    bootp.push(255);
    if bootp.len() < 300 {
        bootp.resize(300, 0);
    }
    let udp_len = (8 + bootp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 20 + udp_len as usize);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(mac);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&bootp);
    f
}

const PARAMS: [u8; 7] = [55, 5, 1, 3, 6, 15, 26];

fn discover(mac: &[u8; 6], xid: u32) -> Vec<u8> {
    let mut o = vec![53, 1, 1];
    o.extend_from_slice(&PARAMS);
    frame(mac, xid, &o)
}

fn request(mac: &[u8; 6], xid: u32, server: Ipv4Addr, ip: Ipv4Addr) -> Vec<u8> {
    let mut o = vec![53, 1, 3, 54, 4];
    o.extend_from_slice(&server.octets());
    o.extend_from_slice(&[50, 4]);
    o.extend_from_slice(&ip.octets());
    o.extend_from_slice(&PARAMS);
    frame(mac, xid, &o)
}

/// A server reply: xid, message type, yiaddr, server id.
struct Reply {
    xid: u32,
    kind: u8,
    yiaddr: Ipv4Addr,
    server: Option<Ipv4Addr>,
}

fn parse_reply(f: &[u8]) -> Option<Reply> {
    if f.len() < 14 + 20 + 8 + 240 || f[12..14] != ETH_P_IP.to_be_bytes() {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != 17 || ip.len() < ihl + 8 + 240 {
        return None;
    }
    let udp = &ip[ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != 68 {
        return None;
    }
    let b = &udp[8..];
    if b[0] != 2 || b[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return None;
    }
    let xid = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let (mut kind, mut server) = (0, None);
    let mut i = 240;
    while i < b.len() {
        let code = b[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 || i + 1 >= b.len() {
            break;
        }
        let len = usize::from(b[i + 1]);
        let Some(v) = b.get(i + 2..i + 2 + len) else {
            break;
        };
        match (code, len) {
            (53, 1) => kind = v[0],
            (54, 4) => server = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            _ => {}
        }
        i += 2 + len;
    }
    Some(Reply {
        xid,
        kind,
        yiaddr,
        server,
    })
}

/// A raw packet socket bound to one interface, non-blocking.
struct RawSocket(i32);

impl RawSocket {
    fn open(iface: &str) -> anyhow::Result<RawSocket> {
        let name = CString::new(iface).context("bad interface name")?;
        // SAFETY: plain libc calls on a NUL-terminated name and a zeroed sockaddr_ll of the
        // right size; the fd is owned by RawSocket and closed on drop.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                bail!("failed to find interface {iface}");
            }
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_IP.to_be()),
            );
            if fd < 0 {
                bail!(
                    "failed to open a packet socket: {}",
                    std::io::Error::last_os_error()
                );
            }
            let sock = RawSocket(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_IP.to_be();
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if rc != 0 {
                bail!(
                    "failed to bind to {iface}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let size: i32 = 8 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const i32 as *const libc::c_void,
                4,
            );
            Ok(sock)
        }
    }

    fn send(&self, f: &[u8]) -> bool {
        // SAFETY: f is a valid buffer of f.len() bytes.
        unsafe { libc::send(self.0, f.as_ptr() as *const libc::c_void, f.len(), 0) >= 0 }
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }

    fn wait_readable(&self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: the fd is ours.
        unsafe { libc::close(self.0) };
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.macs)
        .with_context(|| format!("failed to read {}", args.macs.display()))?;
    let mut clients: Vec<Client> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_mac(l).with_context(|| format!("bad MAC {l:?}")))
        .map(|m| {
            m.map(|mac| Client {
                mac,
                state: State::Idle,
                leased: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if clients.is_empty() || clients.len() > 0xffff {
        bail!("need 1..=65535 client MACs, got {}", clients.len());
    }
    let sock = RawSocket::open(&args.iface)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut idle: VecDeque<usize> = (0..clients.len()).collect();
    let mut in_flight = 0usize;
    let mut generation: u32 = 0;
    let (mut dora, mut d_o, mut r_a) = (Vec::new(), Vec::new(), Vec::new());
    let (mut timeouts, mut naks, mut sent, mut send_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut last_scan = start;
    while Instant::now() < end {
        while in_flight < args.window {
            let Some(i) = idle.pop_front() else { break };
            generation = generation.wrapping_add(1);
            let xid = (generation << 16) | i as u32;
            if sock.send(&discover(&clients[i].mac, xid)) {
                sent += 1;
            } else {
                send_errors += 1;
            }
            clients[i].state = State::Discovering {
                xid,
                t0: Instant::now(),
            };
            in_flight += 1;
        }
        sock.wait_readable(2);
        while let Some(n) = sock.recv(&mut buf) {
            let Some(r) = parse_reply(&buf[..n]) else {
                continue;
            };
            let i = (r.xid & 0xffff) as usize;
            let Some(c) = clients.get_mut(i) else {
                continue;
            };
            let now = Instant::now();
            match (c.state, r.kind) {
                (State::Discovering { xid, t0 }, 2) if xid == r.xid => {
                    d_o.push(now - t0);
                    let server = r.server.unwrap_or(Ipv4Addr::BROADCAST);
                    if sock.send(&request(&c.mac, xid, server, r.yiaddr)) {
                        sent += 1;
                    } else {
                        send_errors += 1;
                    }
                    c.state = State::Requesting {
                        xid,
                        t0,
                        t_req: now,
                    };
                }
                (State::Requesting { xid, t0, t_req }, 5) if xid == r.xid => {
                    r_a.push(now - t_req);
                    dora.push(now - t0);
                    c.leased = Some(r.yiaddr);
                    c.state = State::Idle;
                    idle.push_back(i);
                    in_flight -= 1;
                }
                (State::Requesting { xid, .. }, 6) if xid == r.xid => {
                    naks += 1;
                    c.state = State::Idle;
                    idle.push_back(i);
                    in_flight -= 1;
                }
                _ => {}
            }
        }
        let now = Instant::now();
        if now - last_scan >= Duration::from_millis(10) {
            last_scan = now;
            for (i, c) in clients.iter_mut().enumerate() {
                let since = match c.state {
                    State::Idle => continue,
                    State::Discovering { t0, .. } => t0,
                    State::Requesting { t_req, .. } => t_req,
                };
                if now - since > timeout {
                    timeouts += 1;
                    c.state = State::Idle;
                    idle.push_back(i);
                    in_flight -= 1;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let leases: BTreeMap<String, String> = clients
        .iter()
        .filter_map(|c| c.leased.map(|ip| (mac_str(&c.mac), ip.to_string())))
        .collect();
    let out = json!({
        "clients": clients.len(),
        "window": args.window,
        "seconds": secs,
        "dora_completed": dora.len(),
        "dora_per_sec": dora.len() as f64 / secs,
        "messages_sent": sent,
        "send_errors": send_errors,
        "timeouts": timeouts,
        "naks": naks,
        "latency_dora": Latency::of(&mut dora),
        "latency_discover_offer": Latency::of(&mut d_o),
        "latency_request_ack": Latency::of(&mut r_a),
        "leases": leases,
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
