//! Who a verified token says the caller is. Deliberately small: the authorisation module has
//! its own principal type, and a later merge unifies the two.

/// The authenticated caller, as the token's claims describe them.
///
/// `Debug` is written by hand: identifiers (INS, RPPS) must not reach logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// A patient logged in to their own record.
    Patient {
        /// The patient's INS (identifiant national de santé).
        ins: String,
    },
    /// A legal representative (parent, guardian) acting for a patient.
    Representative {
        /// The INS of the represented patient, not of the representative.
        ins: String,
        /// The representative's own identifier, as the issuer gives it.
        id: String,
    },
    /// A health professional, as Pro Santé Connect describes them.
    Professional {
        /// National identifier: RPPS or ADELI, as carried by the token.
        id: String,
        /// Profession code (nomenclature TRE_G15 / R48, e.g. "10" for a physician).
        profession: String,
        /// Organisation (structure) the professional acts for, when the token names one.
        organisation: Option<String>,
    },
}

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
