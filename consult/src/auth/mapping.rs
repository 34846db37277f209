//! From verified claims to a [`Principal`]: which claims carry the role and the identifiers
//! is configuration ([`RoleMapping`]), since each issuer names them its own way.
//!
//! Defaults follow Pro Santé Connect for professionals. PSC's public documentation (ANS)
//! describes the national identifier (RPPS, or ADELI) in `SubjectNameID` and the sectoral
//! identity (profession, practice, place of activity) in `SubjectRefPro`; the nested names
//! used below (`exercices[0].codeProfession`, `exercices[0].activities[0]
//! .identifiantStructure`) are our reading of its userinfo shape and are an assumption to
//! confirm against the PSC sandbox: they are configuration, not code. PSC tokens carry no role
//! (every PSC user is a professional), hence [`RoleMapping::pro_sante_connect`] with a fixed
//! role. The patient-side names (`ins`, `represented_ins`) are ours: no public spec of the
//! patient login's claims was found.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AuthError, Claims, Principal};

/// A claim's location: a top-level name (`SubjectNameID`) or, starting with `/`, a JSON
/// pointer (RFC 6901) into nested claims (`/SubjectRefPro/exercices/0/codeProfession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimPath(pub String);

impl ClaimPath {
    /// A path from its text.
    pub fn new(path: impl Into<String>) -> Self {
        ClaimPath(path.into())
    }

    /// The pointer's segments, unescaped (`~1` is `/`, `~0` is `~`); one for a plain name.
    fn segments(&self) -> Vec<String> {
        match self.0.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
            None => vec![self.0.clone()],
        }
    }

    /// The value at this path in a claims object.
    pub(crate) fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let segments = self.segments();
        let (first, rest) = segments.split_first()?;
        let mut value = claims.get(first)?;
        for segment in rest {
            value = match value {
                Value::Object(map) => map.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Writes `value` at this path, creating objects (and arrays for numeric segments).
    fn insert(&self, claims: &mut Map<String, Value>, value: Value) -> Result<(), AuthError> {
        let segments = self.segments();
        let (first, rest) = segments.split_first().ok_or_else(|| self.mint_error())?;
        let mut slot = claims.entry(first.clone()).or_insert(Value::Null);
        for segment in rest {
            if let Ok(index) = segment.parse::<usize>() {
                if slot.is_null() {
                    *slot = Value::Array(Vec::new());
                }
                let Value::Array(items) = slot else {
                    return Err(self.mint_error());
                };
                if items.len() <= index {
                    items.resize(index + 1, Value::Null);
                }
                slot = &mut items[index];
            } else {
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(map) = slot else {
                    return Err(self.mint_error());
                };
                slot = map.entry(segment.clone()).or_insert(Value::Null);
            }
        }
        *slot = value;
        Ok(())
    }

    fn mint_error(&self) -> AuthError {
        AuthError::Mint {
            reason: format!("claim path {} collides with another claim", self.0),
        }
    }
}

impl From<&str> for ClaimPath {
    fn from(path: &str) -> Self {
        ClaimPath::new(path)
    }
}

/// A dmpflow role, before its identifiers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The patient, on their own record.
    Patient,
    /// A legal representative, on the represented patient's record.
    Representative,
    /// A health professional.
    Professional,
}

/// Which claims carry the role and the identifiers. Deserialisable from the server's
/// configuration; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleMapping {
    /// When set, every token of this issuer has this role and `role_claim` is not read
    /// (Pro Santé Connect: all its users are professionals).
    pub fixed_role: Option<Role>,
    /// The claim holding the role: a string, or an array of strings of which exactly one maps.
    pub role_claim: ClaimPath,
    /// Role claim values and the role each one means; values not listed are unmapped.
    pub roles: BTreeMap<String, Role>,
    /// Professional's national identifier (RPPS / ADELI).
    pub professional_id: ClaimPath,
    /// Professional's profession code.
    pub profession: ClaimPath,
    /// Professional's organisation; optional in tokens.
    pub organisation: ClaimPath,
    /// Patient's own INS.
    pub ins: ClaimPath,
    /// INS of the patient a representative acts for.
    pub represented_ins: ClaimPath,
    /// Representative's own identifier.
    pub representative_id: ClaimPath,
}

impl Default for RoleMapping {
    fn default() -> Self {
        RoleMapping {
            fixed_role: None,
            role_claim: "role".into(),
            roles: BTreeMap::from([
                ("patient".to_owned(), Role::Patient),
                ("professional".to_owned(), Role::Professional),
                ("representative".to_owned(), Role::Representative),
            ]),
            professional_id: "SubjectNameID".into(),
            profession: "/SubjectRefPro/exercices/0/codeProfession".into(),
            organisation: "/SubjectRefPro/exercices/0/activities/0/identifiantStructure".into(),
            ins: "ins".into(),
            represented_ins: "represented_ins".into(),
            representative_id: "sub".into(),
        }
    }
}

impl RoleMapping {
    /// The defaults with every token a professional's, for Pro Santé Connect.
    pub fn pro_sante_connect() -> Self {
        RoleMapping {
            fixed_role: Some(Role::Professional),
            ..RoleMapping::default()
        }
    }

    /// The role the claims map to.
    pub fn role(&self, claims: &Claims) -> Result<Role, AuthError> {
        if let Some(role) = self.fixed_role {
            return Ok(role);
        }
        let mapped = |v: &Value| v.as_str().and_then(|s| self.roles.get(s)).copied();
        match claims.get(&self.role_claim) {
            Some(Value::Array(values)) => {
                let mut roles: Vec<Role> = values.iter().filter_map(mapped).collect();
                roles.dedup();
                // Two roles in one token would let the caller pick the more permissive one.
                match roles.as_slice() {
                    [role] => Ok(*role),
                    _ => Err(AuthError::RoleUnmapped),
                }
            }
            Some(value) => mapped(value).ok_or(AuthError::RoleUnmapped),
            None => Err(AuthError::RoleUnmapped),
        }
    }

    /// The principal the claims describe.
    pub fn principal(&self, claims: &Claims) -> Result<Principal, AuthError> {
        let text = |path: &ClaimPath| required(claims, path);
        Ok(match self.role(claims)? {
            Role::Patient => Principal::Patient {
                ins: text(&self.ins)?,
            },
            Role::Representative => Principal::Representative {
                represented_ins: text(&self.represented_ins)?,
                id: text(&self.representative_id)?,
            },
            Role::Professional => Principal::Professional {
                id: text(&self.professional_id)?,
                profession: text(&self.profession)?,
                // Absent is fine; present but not a string is a malformed token.
                organisation: match claims.get(&self.organisation) {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(text(&self.organisation)?),
                },
            },
        })
    }

    /// The claims that express `principal` under this mapping (dev tokens).
    pub(crate) fn claims_for(
        &self,
        principal: &Principal,
    ) -> Result<Map<String, Value>, AuthError> {
        let role = match principal {
            Principal::Patient { .. } => Role::Patient,
            Principal::Representative { .. } => Role::Representative,
            Principal::Professional { .. } => Role::Professional,
        };
        let mut claims = Map::new();
        match self.fixed_role {
            Some(fixed) if fixed != role => {
                return Err(AuthError::Mint {
                    reason: format!("this mapping's role is fixed to {fixed:?}"),
                });
            }
            Some(_) => {}
            None => {
                let value = self
                    .roles
                    .iter()
                    .find(|(_, r)| **r == role)
                    .map(|(value, _)| value.clone())
                    .ok_or_else(|| AuthError::Mint {
                        reason: format!("no role claim value maps to {role:?}"),
                    })?;
                self.role_claim.insert(&mut claims, Value::String(value))?;
            }
        }
        let mut put = |path: &ClaimPath, value: &str| path.insert(&mut claims, value.into());
        match principal {
            Principal::Patient { ins } => put(&self.ins, ins)?,
            Principal::Representative {
                represented_ins: ins,
                id,
            } => {
                put(&self.represented_ins, ins)?;
                put(&self.representative_id, id)?;
            }
            Principal::Professional {
                id,
                profession,
                organisation,
            } => {
                put(&self.professional_id, id)?;
                put(&self.profession, profession)?;
                if let Some(organisation) = organisation {
                    put(&self.organisation, organisation)?;
                }
            }
        }
        Ok(claims)
    }
}

/// A non-empty string claim; the error names the claim, never its value.
fn required(claims: &Claims, path: &ClaimPath) -> Result<String, AuthError> {
    match claims.get(path) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(AuthError::ClaimMissing {
            claim: path.0.clone(),
        }),
    }
}
