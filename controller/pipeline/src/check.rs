//! Checks every compiled flow against its stage's declaration before a back end sees it:
//! allowed fields, OpenFlow-style prerequisites (an ARP field needs an ARP ethertype, and so
//! on), and well-formed action lists. A violation is a typed error naming the flow.

use crate::ir::{
    Action, FieldKind, Flow, Match, ETH_TYPE_ARP, ETH_TYPE_IPV4, IP_PROTO_ICMP, IP_PROTO_UDP,
};

/// Why a flow does not fit its stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("flow [{flow}]: stage {stage} does not match on {field:?}")]
    FieldNotAllowed {
        flow: String,
        stage: &'static str,
        field: FieldKind,
    },
    #[error("flow [{flow}]: field {field:?} matched twice")]
    DuplicateField { flow: String, field: FieldKind },
    #[error("flow [{flow}]: {what} needs a match on {needs}")]
    MissingPrerequisite {
        flow: String,
        what: String,
        needs: &'static str,
    },
    #[error("flow [{flow}]: stage {stage} may not continue at {target}")]
    GotoNotAllowed {
        flow: String,
        stage: &'static str,
        target: &'static str,
    },
    #[error("flow [{flow}]: terminal action {action} is not the last one")]
    TerminalNotLast { flow: String, action: String },
}

fn has(flow: &Flow, m: Match) -> bool {
    flow.matches.contains(&m)
}

/// Checks one flow; `Ok(())` means every back end may take it.
pub fn check_flow(flow: &Flow) -> Result<(), CheckError> {
    let decl = flow.stage.decl();
    let name = || flow.to_string();
    let mut seen: Vec<FieldKind> = Vec::with_capacity(flow.matches.len());
    for m in &flow.matches {
        let kind = m.kind();
        if !decl.matches.contains(&kind) {
            return Err(CheckError::FieldNotAllowed {
                flow: name(),
                stage: decl.name,
                field: kind,
            });
        }
        if seen.contains(&kind) {
            return Err(CheckError::DuplicateField {
                flow: name(),
                field: kind,
            });
        }
        seen.push(kind);
        let needs = match m {
            Match::ArpOp(_) | Match::ArpSpa(_) | Match::ArpTpa(_) | Match::ArpSha(_) => {
                (!has(flow, Match::EthType(ETH_TYPE_ARP))).then_some("eth_type=arp")
            }
            Match::Ipv4Src(_) | Match::Ipv4Dst(_) | Match::IpProto(_) | Match::IpTtl(_) => {
                (!has(flow, Match::EthType(ETH_TYPE_IPV4))).then_some("eth_type=ipv4")
            }
            Match::UdpSrc(_) | Match::UdpDst(_) => {
                (!has(flow, Match::IpProto(IP_PROTO_UDP))).then_some("ip_proto=udp")
            }
            Match::IcmpType(_) => {
                (!has(flow, Match::IpProto(IP_PROTO_ICMP))).then_some("ip_proto=icmp")
            }
            _ => None,
        };
        if let Some(needs) = needs {
            return Err(CheckError::MissingPrerequisite {
                flow: name(),
                what: format!("{kind:?}"),
                needs,
            });
        }
    }
    let last = flow.actions.len().saturating_sub(1);
    for (i, a) in flow.actions.iter().enumerate() {
        if a.is_terminal() && i != last {
            return Err(CheckError::TerminalNotLast {
                flow: name(),
                action: format!("{a:?}"),
            });
        }
        match a {
            Action::Goto(target) if !decl.next.contains(target) => {
                return Err(CheckError::GotoNotAllowed {
                    flow: name(),
                    stage: decl.name,
                    target: target.name(),
                });
            }
            Action::DecTtl if !has(flow, Match::EthType(ETH_TYPE_IPV4)) => {
                return Err(CheckError::MissingPrerequisite {
                    flow: name(),
                    what: "dec_ttl".into(),
                    needs: "eth_type=ipv4",
                });
            }
            Action::ArpReply { .. } if !has(flow, Match::ArpOp(crate::ir::ARP_OP_REQUEST)) => {
                return Err(CheckError::MissingPrerequisite {
                    flow: name(),
                    what: "arp_reply".into(),
                    needs: "arp_op=1",
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Owner, PortKey};
    use crate::stage::Stage;

    #[test]
    fn refuses_what_the_stage_does_not_declare() {
        let f = Flow::new(Stage::Egress, 1, Owner::Static).m(Match::EthType(ETH_TYPE_ARP));
        assert!(matches!(
            check_flow(&f),
            Err(CheckError::FieldNotAllowed { .. })
        ));
    }

    #[test]
    fn refuses_missing_prerequisites_and_backward_gotos() {
        let f = Flow::new(Stage::ArpResponder, 1, Owner::Static).m(Match::ArpOp(1));
        assert!(matches!(
            check_flow(&f),
            Err(CheckError::MissingPrerequisite { .. })
        ));
        let f = Flow::new(Stage::L2Lookup, 1, Owner::Static).a(Action::Goto(Stage::Classify));
        assert!(matches!(
            check_flow(&f),
            Err(CheckError::GotoNotAllowed { .. })
        ));
        let f = Flow::new(Stage::Egress, 1, Owner::Static)
            .m(Match::OutPort(PortKey(1)))
            .a(Action::Output(1))
            .a(Action::DecTtl);
        assert!(matches!(
            check_flow(&f),
            Err(CheckError::TerminalNotLast { .. })
        ));
    }

    #[test]
    fn accepts_a_well_formed_flow() {
        let f = Flow::new(Stage::Egress, 100, Owner::Static)
            .m(Match::OutPort(PortKey(3)))
            .a(Action::Output(7));
        assert_eq!(check_flow(&f), Ok(()));
    }
}
