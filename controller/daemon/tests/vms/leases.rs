//! Every VM's real dhclient binds to its port's address, and the namespace ends up
//! configured with what wyvern's DHCP server handed out.

use crate::lab::*;

/// `"a b"` -> `"a,b"`: lease files list DNS servers comma-separated.
fn commas(s: &str) -> String {
    s.replace(' ', ",")
}

#[tokio::test]
async fn dhclient_gets_ip_route_dns_and_mtu_from_wyvern() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Proactive).await?;
    lab.lease_all()?;
    for vm in &lab.vms {
        let (gw, dns, mtu) = if vm.name == "vm3" {
            (GW_B, DEFAULT_DNS.to_owned(), MTU_B - OVERHEAD)
        } else {
            (GW_A, DNS_A.to_owned(), MTU_A - OVERHEAD)
        };
        let ip = vm.ip().to_string();
        let env = vm.env("BOUND").expect("BOUND seen by wait_bound");
        let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("new_ip_address"), ip, "{}: {env:?}", vm.name);
        assert_eq!(get("new_subnet_mask"), "255.255.255.0");
        assert_eq!(get("new_routers"), gw);
        assert_eq!(get("new_domain_name_servers"), dns);
        assert_eq!(get("new_domain_name"), DOMAIN);
        assert_eq!(get("new_interface_mtu"), mtu.to_string());
        assert_eq!(get("new_dhcp_server_identifier"), gw);
        // Option 121 carries the default route too (clients that honour it ignore option 3).
        let gw_bytes = gw.replace('.', " ");
        assert_eq!(
            get("new_rfc3442_classless_static_routes"),
            format!("0 {gw_bytes}")
        );

        // Read back from the namespace.
        let addr = vm.exec(&["ip", "-4", "addr", "show", "dev", "eth0"])?;
        assert!(
            addr.contains(&format!("inet {ip}/24")),
            "{}: {addr}",
            vm.name
        );
        let link = vm.exec(&["ip", "link", "show", "dev", "eth0"])?;
        assert!(link.contains(&format!("mtu {mtu} ")), "{}: {link}", vm.name);
        let routes = vm.exec(&["ip", "-4", "route"])?;
        assert!(
            routes.contains(&format!("default via {gw} dev eth0")),
            "{}: {routes}",
            vm.name
        );
        let lease = vm.lease_file();
        for want in [
            format!("fixed-address {ip};"),
            format!("option routers {gw};"),
            format!("option domain-name-servers {};", commas(&dns)),
            format!("option interface-mtu {mtu};"),
            format!("option domain-name \"{DOMAIN}\";"),
        ] {
            assert!(
                lease.contains(&want),
                "{}: no {want:?} in\n{lease}",
                vm.name
            );
        }
    }
    assert!(lab.wyvernd_alive().await);
    Ok(())
}
