//! How the authenticated caller shows in logs: the one `Principal` is the authorisation
//! module's (`authz::Principal`); here its role name and a `Debug` that prints no identifier.

pub use crate::authz::Principal;

impl Principal {
    /// The role's name, for logs: never an identifier.
    pub fn role_name(&self) -> &'static str {
        match self {
            Principal::Patient { .. } => "patient",
            Principal::Representative { .. } => "representative",
            Principal::Professional { .. } => "professional",
        }
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Professional { profession, .. } => f
                .debug_struct("Professional")
                .field("profession", profession)
                .finish_non_exhaustive(),
            other => f.debug_struct(other.role_name()).finish_non_exhaustive(),
        }
    }
}
