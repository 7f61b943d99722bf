//! wyvern-ovsdb against a real ovsdb-server and ovs-vswitchd (dummy datapath).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use wyvern_ovsdb::{
    add_port, chassis_info, del_port, ensure_bridge, Backoff, Binding, BindingEvent, BindingWatch,
    BridgeConfig, BridgeOutcome, Client, DatapathType, InterfaceType, Remote,
};
use wyvern_testkit::ovs::OvsSandbox;

const DEADLINE: Duration = Duration::from_secs(15);

fn remote(ovs: &OvsSandbox) -> Remote {
    Remote::Unix(ovs.db_socket())
}

/// Reads binding events until one satisfies `pred`; fails after the deadline. Returns the
/// events seen before it too, so tests can assert what did NOT happen.
async fn until_event(
    watch: &mut BindingWatch,
    what: &str,
    mut pred: impl FnMut(&BindingEvent) -> bool,
) -> anyhow::Result<(BindingEvent, Vec<BindingEvent>)> {
    let mut seen = Vec::new();
    let res = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = watch.next().await {
            if pred(&ev) {
                return Some(ev);
            }
            seen.push(ev);
        }
        None
    })
    .await;
    match res {
        Ok(Some(ev)) => Ok((ev, seen)),
        Ok(None) => bail!("binding watch ended while waiting for {what}"),
        Err(_) => bail!("timed out waiting for {what}; saw {seen:?}"),
    }
}

fn vsctl_get(ovs: &OvsSandbox, table: &str, record: &str, column: &str) -> anyhow::Result<String> {
    Ok(ovs
        .vsctl(&["get", table, record, column])?
        .trim()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_bridge_creates_br_int_and_is_idempotent() -> anyhow::Result<()> {
    let ovs = OvsSandbox::dummy()?;
    let (client, _notes) = Client::connect(&remote(&ovs)).await?;
    assert!(client
        .list_dbs()
        .await?
        .contains(&"Open_vSwitch".to_owned()));
    let schema = client.get_schema("Open_vSwitch").await?;
    assert_eq!(schema["name"], "Open_vSwitch");

    let cfg = BridgeConfig::new(DatapathType::Dummy, Some("tcp:127.0.0.1:6653"));
    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Created
    );
    assert_eq!(
        vsctl_get(&ovs, "Bridge", "br-int", "datapath_type")?,
        "dummy"
    );
    assert_eq!(vsctl_get(&ovs, "Bridge", "br-int", "fail_mode")?, "secure");
    assert_eq!(
        vsctl_get(&ovs, "Bridge", "br-int", "protocols")?,
        "[OpenFlow13, OpenFlow15]"
    );
    assert_eq!(
        ovs.vsctl(&["get-controller", "br-int"])?.trim(),
        "tcp:127.0.0.1:6653"
    );
    assert_eq!(vsctl_get(&ovs, "Interface", "br-int", "type")?, "internal");
    // ovs-vswitchd really built it: the LOCAL port and an OpenFlow 1.3 management socket.
    assert_eq!(ovs.ofport("br-int")?, Some(65534));
    assert!(
        ovs.dump_flows("br-int")?.is_empty(),
        "fail-mode secure: no flows"
    );

    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Unchanged
    );
    assert_eq!(ovs.vsctl(&["list-br"])?.trim(), "br-int");

    // Someone changed it behind our back: the next call puts it right.
    ovs.vsctl(&[
        "set",
        "bridge",
        "br-int",
        "fail_mode=standalone",
        "protocols=OpenFlow10",
        "--",
        "del-controller",
        "br-int",
    ])?;
    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Updated(vec!["protocols", "fail_mode", "controller"])
    );
    assert_eq!(vsctl_get(&ovs, "Bridge", "br-int", "fail_mode")?, "secure");
    assert_eq!(
        ovs.vsctl(&["get-controller", "br-int"])?.trim(),
        "tcp:127.0.0.1:6653"
    );
    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Unchanged
    );
    // The replaced Controller row was garbage-collected, not left behind.
    assert_eq!(
        ovs.vsctl(&["--bare", "--columns=target", "list", "Controller"])?
            .trim(),
        "tcp:127.0.0.1:6653"
    );

    ovs.vsctl(&[
        "set",
        "Open_vSwitch",
        ".",
        "external_ids:system-id=chassis-1",
        "external_ids:hostname=host-a",
    ])?;
    let info = chassis_info(&client).await?;
    assert_eq!(info.system_id.as_deref(), Some("chassis-1"));
    assert_eq!(info.hostname.as_deref(), Some("host-a"));
    // ovs_version is written by the ovs-ctl start script, which the harness does not run.
    assert_eq!(info.ovs_version, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_bind_to_their_ofport_and_unbind_on_delete() -> anyhow::Result<()> {
    let ovs = OvsSandbox::dummy()?;
    let (client, _notes) = Client::connect(&remote(&ovs)).await?;
    ensure_bridge(
        &client,
        "br-int",
        &BridgeConfig::new(DatapathType::Dummy, None),
    )
    .await?;
    let mut watch = BindingWatch::spawn(remote(&ovs));
    until_event(&mut watch, "initial sync", |e| *e == BindingEvent::Synced).await?;

    // A port added by someone else (ovs-vsctl), as a hypervisor agent would.
    let p1 = ovs.add_dummy_port("br-int", "p1", Some("lp-1"))?;
    let (ev, _) = until_event(
        &mut watch,
        "lp-1 bound",
        |e| matches!(e, BindingEvent::Bound { lport, .. } if lport == "lp-1"),
    )
    .await?;
    let BindingEvent::Bound { binding, .. } = ev else {
        unreachable!()
    };
    assert_eq!(binding.ofport, p1);
    assert_eq!(binding.iface, "p1");

    // A port added through our own client.
    let ids = BTreeMap::from([("iface-id".to_owned(), "lp-2".to_owned())]);
    add_port(
        &client,
        "br-int",
        "p2",
        &InterfaceType::Dummy,
        &BTreeMap::new(),
        &ids,
    )
    .await?;
    let (ev, _) = until_event(
        &mut watch,
        "lp-2 bound",
        |e| matches!(e, BindingEvent::Bound { lport, .. } if lport == "lp-2"),
    )
    .await?;
    let want = ovs.ofport("p2")?.context("p2 has an ofport")?;
    assert!(
        matches!(ev, BindingEvent::Bound { binding: Binding { ofport, .. }, .. } if ofport == want)
    );
    assert_eq!(vsctl_get(&ovs, "Interface", "p2", "type")?, "dummy");
    assert!(matches!(
        add_port(
            &client,
            "br-int",
            "p2",
            &InterfaceType::Dummy,
            &BTreeMap::new(),
            &ids
        )
        .await,
        Err(wyvern_ovsdb::VswitchError::PortExists { .. })
    ));
    assert!(matches!(
        add_port(
            &client,
            "br-nope",
            "p3",
            &InterfaceType::Dummy,
            &BTreeMap::new(),
            &ids
        )
        .await,
        Err(wyvern_ovsdb::VswitchError::BridgeNotFound { .. })
    ));
    assert!(ovs
        .vsctl(&["--if-exists", "get", "Interface", "p3", "name"])?
        .trim()
        .is_empty());

    // Link down on the dummy netdev -> the binding changes to link_up = false.
    wyvern_testkit::poll::wait_until("p1 link up", DEADLINE, || {
        vsctl_get(&ovs, "Interface", "p1", "link_state").is_ok_and(|s| s == "up")
    })?;
    if !watch.bindings().get("lp-1").is_some_and(|b| b.link_up) {
        until_event(&mut watch, "lp-1 link up", |e| {
            matches!(e, BindingEvent::Changed { lport, new, .. } if lport == "lp-1" && new.link_up)
        })
        .await?;
    }
    ovs.appctl(&["netdev-dummy/set-admin-state", "p1", "down"])?;
    until_event(&mut watch, "lp-1 link down", |e| {
        matches!(e, BindingEvent::Changed { lport, new, .. } if lport == "lp-1" && !new.link_up)
    })
    .await?;

    assert!(del_port(&client, "br-int", "p1").await?);
    let (ev, _) = until_event(&mut watch, "lp-1 unbound", |e| {
        matches!(e, BindingEvent::Unbound { .. })
    })
    .await?;
    assert!(
        matches!(ev, BindingEvent::Unbound { ref lport, ref last } if lport == "lp-1" && last.ofport == p1)
    );
    assert!(!del_port(&client, "br-int", "p1").await?, "already gone");
    assert!(ovs.vsctl(&["list-ports", "br-int"])?.trim() == "p2");
    assert!(watch.bindings().get("lp-1").is_none());
    assert_eq!(watch.bindings().bound().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_reconnects_and_resyncs_after_restarts() -> anyhow::Result<()> {
    let mut ovs = OvsSandbox::dummy()?;
    ovs.add_bridge("br-int", None)?;
    let p1 = ovs.add_dummy_port("br-int", "p1", Some("lp-1"))?;
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    let mut watch = BindingWatch::with_backoff(remote(&ovs), backoff);
    let (_, before) =
        until_event(&mut watch, "initial sync", |e| *e == BindingEvent::Synced).await?;
    assert!(before
        .iter()
        .any(|e| matches!(e, BindingEvent::Bound { lport, .. } if lport == "lp-1")));

    // ovsdb-server restart: the watch notices, reconnects, resyncs, and since nothing changed
    // it reports no binding change at all.
    ovs.restart_ovsdb()?;
    until_event(&mut watch, "disconnect", |e| {
        *e == BindingEvent::Disconnected
    })
    .await?;
    let (_, between) = until_event(&mut watch, "resync", |e| *e == BindingEvent::Synced).await?;
    assert!(
        between.is_empty(),
        "unchanged table gives no events: {between:?}"
    );
    assert_eq!(watch.bindings().get("lp-1").map(|b| b.ofport), Some(p1));

    // The new monitor is live: a port added after the resync is seen.
    let p2 = ovs.add_dummy_port("br-int", "p2", Some("lp-2"))?;
    let (ev, _) = until_event(
        &mut watch,
        "lp-2 bound",
        |e| matches!(e, BindingEvent::Bound { lport, .. } if lport == "lp-2"),
    )
    .await?;
    assert!(matches!(ev, BindingEvent::Bound { binding, .. } if binding.ofport == p2));

    // ovs-vswitchd restart: the database connection stays; the view converges to whatever
    // ofports the new ovs-vswitchd assigns.
    ovs.restart_vswitchd()?;
    wyvern_testkit::poll::wait_until("ofports after vswitchd restart", DEADLINE, || {
        ovs.ofport("p1").ok().flatten().is_some() && ovs.ofport("p2").ok().flatten().is_some()
    })?;
    let want1 = ovs.ofport("p1")?;
    let want2 = ovs.ofport("p2")?;
    let converged = tokio::time::timeout(DEADLINE, async {
        loop {
            let b = watch.bindings();
            if b.get("lp-1").map(|b| b.ofport) == want1 && b.get("lp-2").map(|b| b.ofport) == want2
            {
                return;
            }
            if watch.next().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(
        converged.is_ok(),
        "bindings converge after vswitchd restart: {:?}",
        watch.bindings().bound()
    );

    // Killing ovsdb-server for good: pending calls fail cleanly, no panic.
    let (client, _notes) = Client::connect(&remote(&ovs)).await?;
    ovs.stop_ovsdb()?;
    let err = tokio::time::timeout(DEADLINE, client.list_dbs()).await?;
    assert!(matches!(
        err,
        Err(wyvern_ovsdb::ClientError::Disconnected { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_remote_works_like_unix() -> anyhow::Result<()> {
    let ovs = OvsSandbox::dummy()?;
    // Pick a free port, then let ovsdb-server listen on it (the gap is tiny and local).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    ovs.appctl_ovsdb(&["ovsdb-server/add-remote", &format!("ptcp:{port}:127.0.0.1")])?;
    let remote: Remote = format!("tcp:127.0.0.1:{port}").parse()?;
    let client = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok((c, _)) = Client::connect(&remote).await {
                return c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await?;
    assert_eq!(
        client.echo(serde_json::json!(["hi", 1])).await?,
        serde_json::json!(["hi", 1])
    );
    let cfg = BridgeConfig::new(DatapathType::Dummy, None);
    assert_eq!(
        ensure_bridge(&client, "br-tcp", &cfg).await?,
        BridgeOutcome::Created
    );
    assert_eq!(
        vsctl_get(&ovs, "Bridge", "br-tcp", "datapath_type")?,
        "dummy"
    );
    Ok(())
}

/// 500 ports created in one ovs-vsctl transaction: all bound, with the ofports OVS shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_ports_bind() -> anyhow::Result<()> {
    const N: usize = 500;
    let ovs = OvsSandbox::dummy()?;
    ovs.add_bridge("br-int", None)?;
    let mut watch = BindingWatch::spawn(remote(&ovs));
    until_event(&mut watch, "initial sync", |e| *e == BindingEvent::Synced).await?;
    let mut args: Vec<String> = Vec::new();
    for i in 0..N {
        args.extend(
            [
                "--",
                "add-port",
                "br-int",
                &format!("d{i}"),
                "--",
                "set",
                "interface",
                &format!("d{i}"),
                "type=dummy",
                &format!("external_ids:iface-id=lp{i}"),
            ]
            .map(str::to_owned),
        );
    }
    let start = std::time::Instant::now();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ovs.vsctl(&argv)?;
    eprintln!(
        "ovs-vsctl (waits for ovs-vswitchd) returned after {:?}",
        start.elapsed()
    );
    let mut bound = 0;
    until_event(&mut watch, "all ports bound", |e| {
        bound += usize::from(matches!(e, BindingEvent::Bound { .. }));
        bound == N
    })
    .await?;
    let elapsed = start.elapsed();
    eprintln!("{N} ports: write to all bound in {elapsed:?}");
    let out = ovs.vsctl(&["--bare", "--columns=name,ofport", "list", "Interface"])?;
    let mut checked = 0;
    let fields: Vec<&str> = out.split_whitespace().collect();
    for pair in fields.chunks(2) {
        if let [name, ofport] = pair {
            if let Some(i) = name.strip_prefix('d') {
                let b = watch.bindings().get(&format!("lp{i}")).context("bound")?;
                assert_eq!(b.ofport.to_string(), *ofport, "{name}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, N);
    Ok(())
}

/// The userspace datapath (real tap devices), in the sandbox's own network namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_bridge_on_the_netdev_datapath() -> anyhow::Result<()> {
    let ovs = OvsSandbox::netdev_in_new_netns()?;
    let (client, _notes) = Client::connect(&remote(&ovs)).await?;
    let cfg = BridgeConfig::new(DatapathType::Netdev, Some("unix:/nonexistent.sock"));
    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Created
    );
    wyvern_testkit::poll::wait_until("br-int LOCAL port", DEADLINE, || {
        ovs.ofport("br-int").ok().flatten() == Some(65534)
    })?;
    let ns = ovs.netns().context("netns")?.to_owned();
    let links = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "ip", "-o", "link", "show", "br-int"])
        .output()?;
    assert!(
        links.status.success(),
        "br-int tap exists in the sandbox namespace"
    );
    assert_eq!(
        ensure_bridge(&client, "br-int", &cfg).await?,
        BridgeOutcome::Unchanged
    );
    Ok(())
}
