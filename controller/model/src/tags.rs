//! The standard-attr tag API (`/v2.0/{resource}/{id}/tags[/{tag}]`): tags are a sorted set of
//! short strings on every object; changing them is a write like any other (owner or admin,
//! not a reader) and bumps `revision_number` and `updated_at`.

use std::sync::Arc;

use crate::context::RequestContext;
use crate::error::ModelError;
use crate::topology::{Change, Kind, Object, Topology};

/// Neutron's `MAX_TAG_LEN`.
pub const MAX_TAG_LEN: usize = 255;
/// Neutron's limit of tags per resource.
pub const MAX_TAGS: usize = 50;

/// Checks and normalises a tag list: no empty, over-long or comma-holding tags (a comma
/// could never be filtered on); sorted, duplicates dropped.
pub fn normalize_tags(tags: Vec<String>) -> Result<Vec<String>, ModelError> {
    for t in &tags {
        if t.is_empty() || t.len() > MAX_TAG_LEN || t.contains(',') {
            return Err(ModelError::InvalidInput(format!(
                "'{t}' is not a valid tag: 1 to {MAX_TAG_LEN} characters without ','"
            )));
        }
    }
    let mut tags = tags;
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(ModelError::InvalidInput(format!(
            "Number of tags exceeds the limit {MAX_TAGS}"
        )));
    }
    Ok(tags)
}

impl Topology {
    /// The tags of an object the caller can see.
    pub fn tags_of(
        &self,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
    ) -> Result<Vec<String>, ModelError> {
        Ok(match kind {
            Kind::Network => self.visible_network(ctx, id)?.tags.clone(),
            Kind::Subnet => self.visible_subnet(ctx, id)?.tags.clone(),
            Kind::Port => self.visible_port(ctx, id)?.tags.clone(),
            Kind::Router => self.visible_router(ctx, id)?.tags.clone(),
        })
    }

    /// Replaces the tags of an object the caller may change; returns the new tag list.
    pub fn set_tags(
        &self,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
        tags: Vec<String>,
    ) -> Result<(Change, Vec<String>), ModelError> {
        let tags = normalize_tags(tags)?;
        let mut c = Change::default();
        macro_rules! retag {
            ($old:expr, $variant:ident) => {{
                let old = $old;
                if old.tags != tags {
                    let mut o = (**old).clone();
                    o.tags = tags.clone();
                    o.updated_at = ctx.now;
                    o.revision_number += 1;
                    c.put(
                        Some(Object::$variant(old.clone())),
                        Object::$variant(Arc::new(o)),
                    );
                }
            }};
        }
        match kind {
            Kind::Network => retag!(
                self.writable_network(ctx, id, "update_network:tags")?,
                Network
            ),
            Kind::Subnet => retag!(self.writable_subnet(ctx, id, "update_subnet:tags")?, Subnet),
            Kind::Port => {
                let p = self.visible_port(ctx, id)?;
                ctx.check_write("update_port:tags")?;
                retag!(p, Port)
            }
            Kind::Router => {
                let r = self.visible_router(ctx, id)?;
                ctx.check_write("update_router:tags")?;
                retag!(r, Router)
            }
        }
        Ok((c, tags))
    }
}
