//! Hostile DHCP from one VM: malformed packets and a DISCOVER flood, sent from a raw socket
//! in the VM's namespace with the VM's own MAC (so port security lets them through to the
//! controller). Other VMs must still get their leases, wyvernd must stay up and answer.

use std::process::{Child, Stdio};

use serde_json::json;

use crate::lab::*;
use wyvern_testkit::poll::wait_until;

/// Raw-socket sender: `injector.py IFACE MAC FLOOD` sends every malformed case once, then
/// `FLOOD` well-formed DISCOVERs as fast as it can (0: until killed), and prints the count
/// of malformed cases. Every IPv4 header checksum is right, so the packets reach the
/// DHCP parser instead of being dropped at the first check.
const INJECTOR: &str = r#"
import socket, struct, sys
iface, mac_s, flood = sys.argv[1], sys.argv[2], int(sys.argv[3])
mac = bytes.fromhex(mac_s.replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))

def csum(b):
    if len(b) % 2:
        b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return (~t) & 0xffff

def frame(bootp, udp_len=None, ip_len=None):
    udp = struct.pack('!HHHH', 68, 67, 8 + len(bootp) if udp_len is None else udp_len, 0) + bootp
    tot = 20 + len(udp) if ip_len is None else ip_len
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, tot, 1, 0, 64, 17, 0, bytes(4), b'\xff' * 4)
    hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
    return b'\xff' * 6 + mac + b'\x08\x00' + hdr + udp

def bootp(op=1, htype=1, hlen=6, chaddr=None, cookie=b'\x63\x82\x53\x63',
          options=b'\x35\x01\x01\xff', xid=0x1234):
    chaddr = mac if chaddr is None else chaddr
    b = struct.pack('!BBBBIHH4s4s4s4s', op, htype, hlen, 0, xid, 0, 0x8000,
                    bytes(4), bytes(4), bytes(4), bytes(4))
    return b + chaddr + bytes(10) + bytes(64) + bytes(128) + cookie + options

cases = [
    frame(bootp()[:100]),                                # BOOTP header cut short
    frame(b''),                                          # UDP header only
    frame(bootp()[:239]),                                # one byte short of the cookie
    frame(bootp(op=2)),                                  # BOOTREPLY from a client
    frame(bootp(op=0)),
    frame(bootp(op=255)),
    frame(bootp(htype=6, hlen=16)),                      # not Ethernet
    frame(bootp(cookie=b'\0\0\0\0')),                    # no magic cookie
    frame(bootp(options=b'\x35\x01\x01\x0c\xc8abc')),    # hostname: length 200, 3 bytes left
    frame(bootp(options=b'\x35\x09\x01')),               # message type: length past the end
    frame(bootp(options=b'\x35\x00\xff')),               # message type: length 0
    frame(bootp(options=b'\x35')),                       # option code, no length byte
    frame(bootp(options=b'\xff')),                       # no message type
    frame(bootp(options=b'\x35\x01\x02\xff')),           # OFFER sent by a client
    frame(bootp(options=b'\x35\x01\x05\xff')),           # ACK sent by a client
    frame(bootp(options=b'\x35\x01\xfe\xff')),           # unknown message type
    frame(bootp(options=b'\x35\x01\x03\xff')),           # REQUEST without any address
    frame(bootp(options=b'\x35\x01\x01\x37\xff\x01')),   # parameter list past the end
    frame(bootp(options=b'\x00' * 300)),                 # padding, no end
    frame(bootp(), udp_len=2000),                        # UDP length beyond the packet
    frame(bootp(), udp_len=3),                           # UDP length below its header
    frame(bootp(), ip_len=1400),                         # IP length beyond the frame
    frame(bootp(chaddr=b'\x02\x00\x00\x00\x00\x01')),    # someone else's chaddr
]
for f in cases:
    s.send(f)
print(len(cases), flush=True)
d = frame(bootp())
n = 0
while flood == 0 or n < flood:
    try:
        s.send(d)
    except OSError:
        pass
    n += 1
"#;

/// Kills and reaps the injector on drop.
struct Injector(Child);

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Received packets on a bridge port (`ovs-ofctl dump-ports br-int PORT`).
fn rx_packets(lab: &Lab, port: &str) -> u64 {
    lab.ovs
        .ofctl(&["dump-ports", "br-int", port])
        .ok()
        .and_then(|out| {
            out.split("rx pkts=")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn malformed_dhcp_and_a_discover_flood_do_not_starve_other_vms() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Proactive).await?;
    let (mac1, tap1) = (lab.vm("vm1").mac(), lab.vm("vm1").tap.clone());
    let script = lab.dir.path().join("injector.py");
    std::fs::write(&script, INJECTOR)?;

    // Malformed cases first, then DISCOVERs until killed.
    let mut cmd = lab.vm("vm1").ns.command("python3");
    cmd.arg(&script)
        .args(["eth0", &mac1, "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let injector = Injector(cmd.spawn()?);
    // The flood is under way (thousands of frames into br-int from vm1)...
    wait_until("the flood to reach br-int", LONG, || {
        rx_packets(&lab, &tap1) > 5_000
    })?;

    // ...while the other VMs, on both networks, get their leases.
    for name in ["vm2", "vm3"] {
        lab.vm_mut(name).start_dhclient()?;
    }
    for name in ["vm2", "vm3"] {
        let vm = lab.vm(name);
        let env = vm.wait_bound(LONG)?;
        assert_eq!(
            env.get("new_ip_address").map(String::as_str),
            Some(vm.ip().to_string().as_str()),
            "{name} under flood: {env:?}"
        );
    }
    let flooded = rx_packets(&lab, &tap1);
    // wyvernd is alive and still takes writes.
    assert!(lab.wyvernd_alive().await, "{}", lab.wyvernd.log_tail());
    lab.api
        .create("network", json!({"name": "after-the-flood"}))
        .await?;
    drop(injector);
    eprintln!("vm1 sent {flooded} frames into br-int before the others had their leases");

    // The flooding VM is rate-limited, not banned: once it stops, its own dhclient binds.
    lab.vm_mut("vm1").start_dhclient()?;
    let env = lab.vm("vm1").wait_bound(LONG)?;
    assert_eq!(
        env.get("new_ip_address").map(String::as_str),
        Some(lab.vm("vm1").ip().to_string().as_str())
    );
    let vm1_ip = lab.vm("vm1").ip().to_string();
    lab.vm("vm3").ping_until_ok(&vm1_ip)?;

    let log = std::fs::read_to_string(lab.wyvernd.log_path())?;
    assert!(!log.contains("panicked"), "{}", lab.wyvernd.log_tail());
    Ok(())
}
