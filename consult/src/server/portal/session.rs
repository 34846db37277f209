//! Portal sessions: who is logged in, kept on the server; the browser holds only a random
//! session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` and `__Host-` named over
//! HTTPS). Each session has its own CSRF token, which every form carries and every POST
//! checks (constant-time), and, for a professional, the break-the-glass they declared for
//! one DMP.
//!
//! In memory, bounded ([`MAX_SESSIONS`]; the oldest expiry goes first) and expiring with the
//! token that opened it or after [`SESSION_HOURS`], whichever is sooner. A restart logs
//! everyone out, and several `serve` processes behind one address need sticky sessions:
//! both acceptable for a portal whose login is one redirect away, and no session store to
//! secure besides the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;

use crate::authz::Principal;

/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Longest a session lasts, whatever its token says.
pub const SESSION_HOURS: u64 = 8;

/// A logged-in user.
#[derive(Clone)]
pub(super) struct Session {
    pub principal: Principal,
    pub csrf: String,
    expires: Instant,
    /// A professional's declared break-the-glass: (INS of the DMP, reason).
    pub break_glass: Option<(String, String)>,
}

#[derive(Default)]
pub(super) struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `principal` lasting `ttl` (capped at [`SESSION_HOURS`]);
    /// answers its id (the cookie's value).
    pub fn open(&self, principal: Principal, ttl: Duration) -> String {
        let ttl = ttl.min(Duration::from_secs(SESSION_HOURS * 3600));
        let id = random_token();
        let session = Session {
            principal,
            csrf: random_token(),
            expires: Instant::now() + ttl,
            break_glass: None,
        };
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        id
    }

    /// The live session `id`, if any (an expired one is dropped).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Records a professional's break-the-glass on the DMP of `ins` (one at a time).
    pub fn set_break_glass(&self, id: &str, ins: &str, reason: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(id) {
            s.break_glass = Some((ins.to_owned(), reason.to_owned()));
        }
    }

    pub fn close(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// 256 random bits, base64url: session ids, CSRF tokens, login nonces.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality of two tokens (a CSRF check must not leak a prefix by timing),
/// with `subtle` as the OIDC state check (a length difference is not secret).
pub(super) fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The session cookie's name: `__Host-` prefixed over HTTPS (the browser then insists on
/// `Secure`, `Path=/` and no `Domain`), plain otherwise (a `__Host-` cookie is refused
/// without `Secure`).
pub(super) fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-dmpflow-session"
    } else {
        "dmpflow-session"
    }
}

/// The cookie of the login form (double-submit token against login CSRF).
pub(super) fn login_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-dmpflow-login"
    } else {
        "dmpflow-login"
    }
}

/// The value of cookie `name` in the request, if sent.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` over HTTPS;
/// `max_age` 0 deletes it.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .expect("cookie names and tokens are visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Principal {
        Principal::Patient {
            ins: "248035912345678".into(),
        }
    }

    #[test]
    fn sessions_open_expire_and_close() {
        let s = Sessions::default();
        let id = s.open(patient(), Duration::from_secs(60));
        let got = s.get(&id).expect("open session");
        assert!(got.principal == patient());
        assert_eq!(got.csrf.len(), 43);
        assert_ne!(got.csrf, id);
        s.set_break_glass(&id, "1", "urgence");
        assert_eq!(
            s.get(&id).unwrap().break_glass,
            Some(("1".into(), "urgence".into()))
        );
        s.close(&id);
        assert!(s.get(&id).is_none());
        let gone = s.open(patient(), Duration::ZERO);
        assert!(s.get(&gone).is_none(), "an expired session is not served");
        assert!(s.get("forged").is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let first = s.open(patient(), Duration::from_secs(10));
        for _ in 0..MAX_SESSIONS {
            s.open(patient(), Duration::from_secs(60));
        }
        assert_eq!(s.inner.lock().unwrap().len(), MAX_SESSIONS);
        assert!(s.get(&first).is_none(), "the soonest to expire went first");
    }

    #[test]
    fn cookies_are_read_and_written_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dmpflow-session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "dmpflow-session"), Some("abc"));
        assert_eq!(cookie(&h, "dmpflow"), None);
        let v = set_cookie("__Host-x", "v", Duration::from_secs(5), true);
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-x=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=5; Secure"
        );
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
