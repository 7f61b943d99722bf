//! The apps against real Linux clients: a network namespace (the "VM") on a veth whose
//! other end is read and written with a raw AF_PACKET socket by a responder that only calls
//! this crate's pure functions. The real ISC `dhclient` must bind, get every option, and
//! renew (unicast, after ARP answered by `arp_reply`); real `ping` must get echo replies
//! and, with TTL 1 towards another subnet, time-exceeded from the gateway.
//!
//! Needs root, iproute2, isc-dhcp-client and iputils-ping (all on the dev machines and CI).

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wyvern_apps::fuzzing::fuzz_context;
use wyvern_apps::{
    arp_reply, handle_dhcp, icmp_echo_reply, icmp_time_exceeded, parse_packet_in, DhcpConfig,
    DhcpPortContext, L4Summary,
};

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with one veth; removed on drop.
struct Vm {
    ns: String,
    host_if: String,
    dir: PathBuf,
}

impl Vm {
    fn new(mac: &str) -> Vm {
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let vm = Vm {
            ns: format!("wyapps-{id}"),
            host_if: format!("wyah{id}"),
            dir: std::env::temp_dir().join(format!("wyvern-apps-real-{id}")),
        };
        let _ = fs::remove_dir_all(&vm.dir);
        fs::create_dir_all(&vm.dir).unwrap();
        run(&["ip", "netns", "add", &vm.ns]);
        let peer = format!("wyav{id}");
        run(&[
            "ip",
            "link",
            "add",
            &vm.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        run(&["ip", "link", "set", &peer, "netns", &vm.ns]);
        run(&["ip", "link", "set", &vm.host_if, "up"]);
        vm.exec(&["ip", "link", "set", &peer, "name", "eth0"]);
        vm.exec(&["ip", "link", "set", "eth0", "address", mac]);
        vm.exec(&["ip", "link", "set", "eth0", "up"]);
        vm.exec(&["ip", "link", "set", "lo", "up"]);
        vm
    }

    fn exec(&self, cmd: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(cmd);
        run(&full)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A raw socket on one interface, receiving every frame with a short timeout.
struct RawSocket(libc::c_int);

impl RawSocket {
    fn bind(ifname: &str) -> RawSocket {
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: plain socket syscalls on a descriptor this struct owns.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "failed to open AF_PACKET socket (root needed)");
            let name = CString::new(ifname).unwrap();
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert!(ifindex > 0, "no interface {ifname}");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "failed to bind AF_PACKET socket");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            RawSocket(fd)
        }
    }

    /// One incoming frame (outgoing copies of our own sends are skipped).
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: buf and sll are valid for the lengths passed.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                self.0,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            );
            (n > 0 && sll.sll_pkttype != libc::PACKET_OUTGOING).then_some(n as usize)
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: frame is valid for its length; the socket is bound to one interface.
        let n = unsafe {
            libc::send(
                self.0,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(n as usize, frame.len(), "failed to send frame");
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this struct owns.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// The controller side: packet-ins are frames read from the veth, packet-outs are sends.
struct Responder {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(ifname: &str, ctx: DhcpPortContext, cfg: DhcpConfig) -> Responder {
        let sock = RawSocket::bind(ifname);
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let Some(n) = sock.recv(&mut buf) else {
                    continue;
                };
                let frame = &buf[..n];
                let Ok(sum) = parse_packet_in(frame) else {
                    continue;
                };
                let note = |x: String| l.lock().unwrap().push(x);
                if sum.arp.is_some() {
                    if let Some(r) = arp_reply(frame, ctx.server_ip, ctx.server_mac) {
                        sock.send(&r);
                        note("arp_reply".into());
                    }
                    continue;
                }
                let Some(ip) = sum.ipv4 else { continue };
                match ip.l4 {
                    Some(L4Summary::Udp {
                        src_port: 68,
                        dst_port: 67,
                    }) => match handle_dhcp(frame, &ctx, &cfg) {
                        Ok(out) => {
                            if let Some(r) = out.reply_frame() {
                                sock.send(r);
                            }
                            note(format!(
                                "dhcp {} -> {}",
                                out.request.label(),
                                out.reply_kind().map_or("none", |k| k.label())
                            ));
                        }
                        Err(d) => note(format!("dhcp drop {}", d.label())),
                    },
                    _ if ip.dst == ctx.server_ip => {
                        if let Some(r) = icmp_echo_reply(frame, ctx.server_ip, ctx.server_mac) {
                            sock.send(&r);
                            note("echo_reply".into());
                        }
                    }
                    _ if ip.ttl <= 1 => {
                        if let Some(r) = icmp_time_exceeded(frame, ctx.server_ip, ctx.server_mac) {
                            sock.send(&r);
                            note("time_exceeded".into());
                        }
                    }
                    _ => {}
                }
            }
        });
        Responder {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env_file(dir: &std::path::Path, reason: &str) -> Option<Vec<(String, String)>> {
    let text = fs::read_to_string(dir.join(format!("env.{reason}"))).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect(),
    )
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("dhclient gave no {key}: {env:?}"))
}

#[test]
fn real_dhclient_binds_renews_and_ping_gets_answers() {
    let (ctx, mut cfg) = fuzz_context();
    // Short lease so dhclient renews (T1 = 3 s) within the test.
    cfg.lease_time_secs = 6;
    let vm = Vm::new(&ctx.port_mac.to_string());
    let responder = Responder::start(&vm.host_if, ctx.clone(), cfg.clone());

    // dhclient-script stand-in: record what dhclient parsed, configure the interface the
    // way dhclient-script would (address, MTU, default route), never touch the host's files.
    let script = vm.dir.join("script.sh");
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
D={dir}
env | grep -E '^(reason|interface|new_)' | sort > "$D/env.$reason.tmp" && mv "$D/env.$reason.tmp" "$D/env.$reason"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" broadcast "$new_broadcast_address" dev "$interface"
    ip link set dev "$interface" mtu "$new_interface_mtu"
    ip route replace default via "$new_routers" dev "$interface"
    ;;
esac
"#,
            dir = vm.dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let lease = vm.dir.join("lease");
    let pid = vm.dir.join("pid");
    let child = Command::new("ip")
        .args(["netns", "exec", &vm.ns, "dhclient", "-d", "-1", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(&lease)
        .arg("-pf")
        .arg(&pid)
        .arg("eth0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("failed to start dhclient");
    let _dhclient = Killed(child);

    let bound = wait_until("dhclient BOUND", Duration::from_secs(20), || {
        env_file(&vm.dir, "BOUND")
    });
    assert_eq!(get(&bound, "new_ip_address"), "10.0.0.5");
    assert_eq!(get(&bound, "new_subnet_mask"), "255.255.255.0");
    assert_eq!(get(&bound, "new_broadcast_address"), "10.0.0.255");
    assert_eq!(get(&bound, "new_routers"), "10.0.0.1");
    assert_eq!(get(&bound, "new_domain_name_servers"), "10.0.0.2");
    assert_eq!(get(&bound, "new_domain_name"), "openstacklocal");
    assert_eq!(get(&bound, "new_interface_mtu"), "1450");
    assert_eq!(get(&bound, "new_dhcp_lease_time"), "6");
    assert_eq!(get(&bound, "new_dhcp_server_identifier"), "10.0.0.1");
    assert_eq!(
        get(&bound, "new_rfc3442_classless_static_routes"),
        "16 192 168 10 0 0 254 0 10 0 0 1"
    );
    let addr = vm.exec(&["ip", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.0.0.5/24"), "{addr}");
    assert!(addr.contains("mtu 1450"), "{addr}");
    let leases = fs::read_to_string(&lease).unwrap_or_default();
    assert!(leases.contains("fixed-address 10.0.0.5;"), "{leases}");

    // Renewal: unicast REQUEST from 10.0.0.5 to 10.0.0.1 (needs our ARP answer first).
    let renew = wait_until("dhclient RENEW", Duration::from_secs(20), || {
        env_file(&vm.dir, "RENEW")
    });
    assert_eq!(get(&renew, "new_ip_address"), "10.0.0.5");

    // Ping the gateway: echo replies from icmp_echo_reply.
    let ping = vm.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.1"]);
    assert!(ping.contains("2 received"), "{ping}");
    // TTL 1 towards another subnet: time exceeded from the gateway.
    let out = Command::new("ip")
        .args([
            "netns", "exec", &vm.ns, "ping", "-c", "1", "-t", "1", "-W", "2", "10.1.0.7",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 10.0.0.1") && text.contains("Time to live exceeded"),
        "{text}"
    );

    let log = responder.log();
    eprintln!("responder log: {log:?}");
    for expected in [
        "dhcp discover -> offer",
        "dhcp request_selecting -> ack",
        "dhcp request_renewing -> ack",
        "arp_reply",
        "echo_reply",
        "time_exceeded",
    ] {
        assert!(
            log.iter().any(|l| l == expected),
            "no {expected:?} in {log:?}"
        );
    }
    assert!(!log.iter().any(|l| l.contains("drop")), "{log:?}");
}
