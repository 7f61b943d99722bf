//! Who is asking: the project, its roles and the time of the request.

use crate::error::ModelError;
use crate::types::Timestamp;

/// The caller of an operation, as established by authentication.
///
/// Visibility follows Neutron's default policy: an admin sees and changes everything; anyone
/// else sees only their project's objects (plus shared networks and their subnets) and gets
/// "not found" for the rest, so that the existence of other projects' objects never leaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub project_id: String,
    pub roles: Vec<String>,
    pub is_admin: bool,
    /// The time stamped on created/updated objects (the model never reads the clock).
    pub now: Timestamp,
}

impl RequestContext {
    /// An admin context (no-auth mode, tests, internal callers).
    pub fn admin(project_id: impl Into<String>, now: Timestamp) -> Self {
        RequestContext {
            project_id: project_id.into(),
            roles: vec!["admin".into()],
            is_admin: true,
            now,
        }
    }

    /// A non-admin member of `project_id`.
    pub fn member(project_id: impl Into<String>, now: Timestamp) -> Self {
        RequestContext {
            project_id: project_id.into(),
            roles: vec!["member".into()],
            is_admin: false,
            now,
        }
    }

    /// Whether this caller may see an object owned by `project_id`.
    pub fn owns(&self, project_id: &str) -> bool {
        self.is_admin || self.project_id == project_id
    }

    /// Neutron's default policy: writes need the `member` role (admins may everything); a
    /// caller with only `reader` (or no role) may read what it can see, nothing more.
    /// Keystone's implied roles put `member` and `reader` in an admin's token too.
    pub fn can_write(&self) -> bool {
        self.is_admin
            || self
                .roles
                .iter()
                .any(|r| r.eq_ignore_ascii_case("member") || r == "_member_")
    }

    /// `PolicyNotAuthorized` (403) naming `action` unless the caller may write.
    pub fn check_write(&self, action: &str) -> Result<(), ModelError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(ModelError::PolicyNotAuthorized(action.to_string()))
        }
    }
}
