//! Logical port bindings: which local ofport carries each logical port
//! (`Interface.external_ids:iface-id`), derived from the interface monitor.
//!
//! A logical port is bound while some interface with its iface-id has an ofport. If several
//! do (a VM being replaced), the one with the lowest ofport wins, so the choice does not
//! depend on event order. A resync snapshot is diffed against the current view: a reconnect
//! yields events only for what really changed while the connection was down.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use uuid::Uuid;

use crate::client::Remote;
use crate::monitor::{Backoff, InterfaceChange, InterfaceEvent, InterfaceMonitor, InterfaceState};

/// Where a logical port is attached on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The OVS interface name (`tap...`, `p1`).
    pub iface: String,
    pub ofport: u32,
    /// `link_state == up`: the port's status is ACTIVE, otherwise DOWN.
    pub link_up: bool,
}

/// A change in the binding view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingEvent {
    Bound {
        lport: String,
        binding: Binding,
    },
    /// Unbound: no interface with this iface-id has an ofport any more.
    Unbound {
        lport: String,
        last: Binding,
    },
    /// Still bound, but to another ofport/interface or with another link state.
    Changed {
        lport: String,
        old: Binding,
        new: Binding,
    },
    /// The view equals the server's table again (after each snapshot).
    Synced,
    /// The OVSDB connection is down; bindings are kept as last known until `Synced`.
    Disconnected,
}

/// The binding view, fed with interface events. Pure: no I/O.
#[derive(Debug, Default)]
pub struct Bindings {
    ifaces: HashMap<Uuid, InterfaceState>,
    by_lport: HashMap<String, BTreeSet<Uuid>>,
    bound: BTreeMap<String, Binding>,
}

impl Bindings {
    /// Empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current binding of `lport`.
    pub fn get(&self, lport: &str) -> Option<&Binding> {
        self.bound.get(lport)
    }

    /// All bound logical ports, by id.
    pub fn bound(&self) -> &BTreeMap<String, Binding> {
        &self.bound
    }

    /// Every interface row known, bound or not.
    pub fn interfaces(&self) -> impl Iterator<Item = &InterfaceState> {
        self.ifaces.values()
    }

    /// Applies one monitor event and returns the binding changes it caused.
    pub fn apply(&mut self, event: InterfaceEvent) -> Vec<BindingEvent> {
        let mut touched = BTreeSet::new();
        match event {
            InterfaceEvent::Disconnected => return vec![BindingEvent::Disconnected],
            InterfaceEvent::Snapshot(rows) => {
                touched.extend(self.bound.keys().cloned());
                self.ifaces.clear();
                self.by_lport.clear();
                for row in rows {
                    self.upsert(row, &mut touched);
                }
            }
            InterfaceEvent::Changed(changes) => {
                for change in changes {
                    match change {
                        InterfaceChange::Upsert(row) => self.upsert(row, &mut touched),
                        InterfaceChange::Removed(uuid) => self.remove(uuid, &mut touched),
                    }
                }
            }
        }
        touched
            .into_iter()
            .filter_map(|lport| self.rederive(lport))
            .collect()
    }

    fn upsert(&mut self, row: InterfaceState, touched: &mut BTreeSet<String>) {
        self.remove(row.uuid, touched);
        if let Some(id) = row.iface_id() {
            touched.insert(id.to_owned());
            self.by_lport
                .entry(id.to_owned())
                .or_default()
                .insert(row.uuid);
        }
        self.ifaces.insert(row.uuid, row);
    }

    fn remove(&mut self, uuid: Uuid, touched: &mut BTreeSet<String>) {
        let Some(old) = self.ifaces.remove(&uuid) else {
            return;
        };
        if let Some(id) = old.iface_id() {
            touched.insert(id.to_owned());
            if let Some(set) = self.by_lport.get_mut(id) {
                set.remove(&uuid);
                if set.is_empty() {
                    self.by_lport.remove(id);
                }
            }
        }
    }

    /// Recomputes one logical port's binding; the event if it differs from before.
    fn rederive(&mut self, lport: String) -> Option<BindingEvent> {
        let old = self.bound.get(&lport).cloned();
        let new = self.by_lport.get(&lport).and_then(|uuids| {
            uuids
                .iter()
                .filter_map(|u| self.ifaces.get(u))
                .filter_map(|s| {
                    // link_state is ephemeral: empty right after an ovsdb-server restart
                    // until ovs-vswitchd writes it again. Unknown keeps the last known
                    // state of the same interface instead of flapping the port DOWN.
                    let last = old
                        .as_ref()
                        .filter(|o| o.iface == s.name)
                        .map(|o| o.link_up);
                    s.ofport.map(|ofport| Binding {
                        iface: s.name.clone(),
                        ofport,
                        link_up: s.link_up.or(last).unwrap_or(false),
                    })
                })
                .min_by(|a, b| (a.ofport, &a.iface).cmp(&(b.ofport, &b.iface)))
        });
        match (old, new) {
            (None, None) => None,
            (None, Some(binding)) => {
                self.bound.insert(lport.clone(), binding.clone());
                Some(BindingEvent::Bound { lport, binding })
            }
            (Some(last), None) => {
                self.bound.remove(&lport);
                Some(BindingEvent::Unbound { lport, last })
            }
            (Some(old), Some(new)) if old == new => None,
            (Some(old), Some(new)) => {
                self.bound.insert(lport.clone(), new.clone());
                Some(BindingEvent::Changed { lport, old, new })
            }
        }
    }
}

/// A live binding view over a reconnecting interface monitor.
#[derive(Debug)]
pub struct BindingWatch {
    monitor: InterfaceMonitor,
    view: Bindings,
    pending: VecDeque<BindingEvent>,
}

impl BindingWatch {
    /// Starts watching `remote` (default backoff).
    pub fn spawn(remote: Remote) -> Self {
        Self::with_backoff(remote, Backoff::default())
    }

    /// Starts watching `remote` with the given reconnect pacing.
    pub fn with_backoff(remote: Remote, backoff: Backoff) -> Self {
        Self {
            monitor: InterfaceMonitor::spawn(remote, backoff),
            view: Bindings::new(),
            pending: VecDeque::new(),
        }
    }

    /// The next binding event (a `Synced` follows each snapshot's changes).
    pub async fn next(&mut self) -> Option<BindingEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            let ev = self.monitor.next().await?;
            let snapshot = matches!(ev, InterfaceEvent::Snapshot(_));
            self.pending.extend(self.view.apply(ev));
            if snapshot {
                self.pending.push_back(BindingEvent::Synced);
            }
        }
    }

    /// The current view.
    pub fn bindings(&self) -> &Bindings {
        &self.view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vswitch::InterfaceType;

    fn iface(uuid: Uuid, name: &str, lport: &str, ofport: Option<u32>, up: bool) -> InterfaceState {
        InterfaceState {
            uuid,
            name: name.into(),
            iface_type: InterfaceType::Dummy,
            ofport,
            external_ids: [("iface-id".to_owned(), lport.to_owned())].into(),
            admin_up: Some(true),
            link_up: Some(up),
        }
    }

    fn b(iface: &str, ofport: u32, link_up: bool) -> Binding {
        Binding {
            iface: iface.into(),
            ofport,
            link_up,
        }
    }

    #[test]
    fn bind_change_unbind_and_quiet_resync() {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        let mut v = Bindings::new();
        // No ofport yet: not bound.
        let snap = vec![iface(u1, "p1", "lp1", None, false)];
        assert!(v.apply(InterfaceEvent::Snapshot(snap)).is_empty());
        let ev = v.apply(InterfaceEvent::Changed(vec![InterfaceChange::Upsert(
            iface(u1, "p1", "lp1", Some(3), false),
        )]));
        assert_eq!(
            ev,
            vec![BindingEvent::Bound {
                lport: "lp1".into(),
                binding: b("p1", 3, false)
            }]
        );
        let ev = v.apply(InterfaceEvent::Changed(vec![InterfaceChange::Upsert(
            iface(u1, "p1", "lp1", Some(3), true),
        )]));
        assert_eq!(
            ev,
            vec![BindingEvent::Changed {
                lport: "lp1".into(),
                old: b("p1", 3, false),
                new: b("p1", 3, true)
            }]
        );
        // A second interface with the same iface-id and a lower ofport takes over.
        let ev = v.apply(InterfaceEvent::Changed(vec![InterfaceChange::Upsert(
            iface(u2, "p0", "lp1", Some(2), true),
        )]));
        assert!(matches!(&ev[..], [BindingEvent::Changed { new, .. }] if new.ofport == 2));
        // Reconnect with an identical table, link state not yet rewritten: no events.
        let same = v
            .interfaces()
            .cloned()
            .map(|mut s| {
                s.link_up = None;
                s
            })
            .collect();
        assert_eq!(
            v.apply(InterfaceEvent::Disconnected),
            vec![BindingEvent::Disconnected]
        );
        assert!(v.apply(InterfaceEvent::Snapshot(same)).is_empty());
        // Reconnect after both went away: one Unbound.
        let ev = v.apply(InterfaceEvent::Snapshot(vec![]));
        assert_eq!(
            ev,
            vec![BindingEvent::Unbound {
                lport: "lp1".into(),
                last: b("p0", 2, true)
            }]
        );
        assert!(v.bound().is_empty());
    }

    #[test]
    fn iface_id_change_moves_the_binding() {
        let u1 = Uuid::new_v4();
        let mut v = Bindings::new();
        v.apply(InterfaceEvent::Snapshot(vec![iface(
            u1,
            "p1",
            "a",
            Some(1),
            true,
        )]));
        let ev = v.apply(InterfaceEvent::Changed(vec![InterfaceChange::Upsert(
            iface(u1, "p1", "b", Some(1), true),
        )]));
        assert_eq!(ev.len(), 2);
        assert!(ev.contains(&BindingEvent::Unbound {
            lport: "a".into(),
            last: b("p1", 1, true)
        }));
        assert!(ev.contains(&BindingEvent::Bound {
            lport: "b".into(),
            binding: b("p1", 1, true)
        }));
        let ev = v.apply(InterfaceEvent::Changed(vec![InterfaceChange::Removed(u1)]));
        assert!(matches!(&ev[..], [BindingEvent::Unbound { lport, .. }] if lport == "b"));
    }
}
