//! wyvern.p4's `@controller_header`s in IR terms (p4/README.md, "Packet I/O"): a PacketIn
//! becomes the punt the apps answer, and their answers become PacketOuts. Field names are
//! the program's; ids come from the P4Info via [`crate::backend`].

use wyvern_pipeline::ir::{NetKey, PortKey, PuntReason, RouterKey};

use crate::backend::{PacketIn, PacketOut};

/// `packet_out.mode`: send the frame out of `egress_port` as it is.
pub const MODE_DIRECT: u128 = 0;
/// `packet_out.mode`: run the frame through the pipeline as if it came in on
/// `ingress_port` (OpenFlow's `output:TABLE`).
pub const MODE_PIPELINE: u128 = 1;

/// What the pipeline knew about a punted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punt {
    /// The switch port it came in on.
    pub ingress_port: u32,
    pub reason: PuntReason,
    pub inport: PortKey,
    pub network: NetKey,
    pub router: RouterKey,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PuntError {
    #[error("failed to decode a PacketIn: field {0} is missing")]
    MissingField(&'static str),
    #[error("failed to decode a PacketIn: field {field} = {value} does not fit 32 bits")]
    TooWide { field: &'static str, value: u128 },
    #[error("failed to decode a PacketIn: reason {0} is not a PuntReason")]
    UnknownReason(u128),
}

impl PacketIn {
    fn field(&self, name: &'static str) -> Result<u32, PuntError> {
        let v = *self
            .metadata
            .get(name)
            .ok_or(PuntError::MissingField(name))?;
        u32::try_from(v).map_err(|_| PuntError::TooWide {
            field: name,
            value: v,
        })
    }

    /// The punt this PacketIn carries.
    pub fn punt(&self) -> Result<Punt, PuntError> {
        let reason = self.field("reason")?;
        Ok(Punt {
            ingress_port: self.field("ingress_port")?,
            reason: u8::try_from(reason)
                .ok()
                .and_then(PuntReason::from_code)
                .ok_or(PuntError::UnknownReason(reason.into()))?,
            inport: PortKey(self.field("inport")?),
            network: NetKey(self.field("network")?),
            router: RouterKey(self.field("router")?),
        })
    }
}

impl PacketOut {
    /// A frame for one switch port, untouched by the pipeline (DHCP and ARP replies).
    pub fn to_port(port: u32, payload: Vec<u8>) -> Self {
        PacketOut {
            payload,
            metadata: vec![
                ("egress_port".into(), port.into()),
                ("ingress_port".into(), 0),
                ("mode".into(), MODE_DIRECT),
            ],
        }
    }

    /// A frame to run through the pipeline as if it had arrived on `ingress_port` (to
    /// release a packet once its flow is installed).
    pub fn through_pipeline(ingress_port: u32, payload: Vec<u8>) -> Self {
        PacketOut {
            payload,
            metadata: vec![
                ("egress_port".into(), 0),
                ("ingress_port".into(), ingress_port.into()),
                ("mode".into(), MODE_PIPELINE),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(fields: &[(&str, u128)]) -> PacketIn {
        PacketIn {
            payload: vec![],
            metadata: fields.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn punts_decode_by_name() {
        let p = pin(&[
            ("ingress_port", 3),
            ("reason", 1),
            ("inport", 7),
            ("network", 5),
            ("router", 0),
        ]);
        assert_eq!(
            p.punt(),
            Ok(Punt {
                ingress_port: 3,
                reason: PuntReason::Dhcp,
                inport: PortKey(7),
                network: NetKey(5),
                router: RouterKey(0),
            })
        );
        let mut bad = p.clone();
        bad.metadata.insert("reason".into(), 9);
        assert_eq!(bad.punt(), Err(PuntError::UnknownReason(9)));
        bad.metadata.insert("reason".into(), 2);
        bad.metadata.remove("router");
        assert_eq!(bad.punt(), Err(PuntError::MissingField("router")));
    }
}
