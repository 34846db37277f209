//! The portal's HTTP contract (issue #14), on SQLite and PostgreSQL: logins protected
//! against login CSRF, the session cookie's flags, the CSP and other headers of every
//! answer, CSRF checks of every form, and the patient's masking: an audited change (its row
//! and its trace, append-only) that the FHIR API honours at once. The browser tests
//! (`portal_browser.rs`) show the same in Chromium.

mod support;

use support::{Answer, Backend, Doc, Fixture, INS_1, INS_2, OTHER_PRO, professional};

/// The value of `name=` in an HTML attribute list after `marker`.
fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name} field"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// `name=value` of a Set-Cookie answer.
fn set_cookie(a: &Answer, name: &str) -> Option<String> {
    a.all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Logs in through the dev form; answers the session cookie (`name=value`).
async fn login(f: &Fixture, form: &str) -> String {
    let page = f.get("/portal/login", None, &[]).await;
    assert_eq!(page.status, 200);
    let login_cookie = cookie_value(&set_cookie(&page, "dmpflow-login").expect("login cookie"));
    let token = hidden(&page.text(), "login");
    let a = f
        .post_form(
            "/portal/login/dev",
            &[("Cookie", login_cookie)],
            &format!("login={token}&{form}"),
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.text());
    let session = set_cookie(&a, "dmpflow-session").expect("session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Path=/"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain HTTP here: Secure only over TLS"
    );
    cookie_value(&session)
}

/// The CSRF token of the session's pages.
async fn csrf(f: &Fixture, cookie: &str) -> String {
    let a = f.get("/portal/dmp", None, &[("Cookie", cookie)]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    hidden(&a.text(), "csrf")
}

async fn contract(backend: Backend) {
    let f = Fixture::start(backend).await;
    f.put(&[
        Doc::new("1.2.250.77.1", INS_1, "20260101100000", 1),
        Doc::new("1.2.250.77.2", INS_1, "20260102100000", 2),
    ])
    .await;

    // Headers of every answer.
    let login_page = f.get("/portal/login", None, &[]).await;
    let csp = login_page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
    assert_eq!(
        login_page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        login_page.header("cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(
        login_page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    let css = f.get("/portal/portal.css", None, &[]).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    // Login CSRF: a login form posted without its cookie, or with another one, is refused.
    let token = hidden(&login_page.text(), "login");
    let forged = f
        .post_form(
            "/portal/login/dev",
            &[],
            &format!("login={token}&role=patient&ins={INS_1}"),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(set_cookie(&forged, "dmpflow-session").is_none());
    let other = f
        .post_form(
            "/portal/login/dev",
            &[("Cookie", "dmpflow-login=somethingelse".into())],
            &format!("login={token}&role=patient&ins={INS_1}"),
        )
        .await;
    assert_eq!(other.status, 403);

    // A patient's session; a forged session id is no session.
    let patient = login(&f, &format!("role=patient&ins={INS_1}")).await;
    let forged = f
        .get("/portal/dmp", None, &[("Cookie", "dmpflow-session=forged")])
        .await;
    assert_eq!(forged.status, 303);
    assert_eq!(forged.header("location").as_deref(), Some("/portal/login"));
    let page = f.get("/portal/dmp", None, &[("Cookie", &patient)]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("CR de biologie"));
    let token = csrf(&f, &patient).await;

    // Forms without the session's CSRF token do nothing.
    let traces = f.traces().await;
    for form in ["", "csrf=", "csrf=AAAA"] {
        let a = f
            .post_form(
                "/portal/doc/1.2.250.77.1/mask",
                &[("Cookie", patient.clone())],
                form,
            )
            .await;
        assert_eq!(a.status, 403, "{form}");
    }
    assert_eq!(
        f.traces().await,
        traces,
        "a refused form traces nothing and changes nothing"
    );

    // The patient masks the first document: the professional's FHIR search loses it at once.
    let pro = f.token(&professional(OTHER_PRO));
    let search =
        format!("/fhir/DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.10|{INS_1}");
    assert_eq!(f.bundle(&search, &pro).await["total"], 2);
    let a = f
        .post_form(
            "/portal/doc/1.2.250.77.1/mask",
            &[("Cookie", patient.clone())],
            &format!("csrf={token}"),
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.text());
    let b = f.bundle(&search, &pro).await;
    assert_eq!(b["total"], 1);
    assert_eq!(
        b["entry"][0]["resource"]["masterIdentifier"]["value"],
        "urn:oid:1.2.250.77.2"
    );
    let direct = f
        .get("/fhir/DocumentReference/1.2.250.77.1", Some(&pro), &[])
        .await;
    assert_eq!(direct.status, 404);
    // The patient still sees it, labelled masked, in the API too.
    let own = f.token(&support::patient(INS_1));
    let mine = f.bundle(&search, &own).await;
    assert_eq!(mine["total"], 2);
    assert!(mine.to_string().contains("MASQUE_PS"));
    // Traced as the patient's act.
    let rows = f.store.traces_for_patient(INS_1).await.unwrap();
    let mask = rows
        .iter()
        .find(|r| r.action == "mask")
        .expect("mask traced");
    assert_eq!(mask.actor_role, "patient");
    assert_eq!(mask.document_ids, vec!["1.2.250.77.1".to_owned()]);

    // Unmasked: back for the professional.
    let a = f
        .post_form(
            "/portal/doc/1.2.250.77.1/unmask",
            &[("Cookie", patient.clone())],
            &format!("csrf={token}"),
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(f.bundle(&search, &pro).await["total"], 2);

    // Someone else's document: as missing, and nothing recorded.
    f.put(&[Doc::new("1.2.250.77.9", INS_2, "20260103100000", 9)])
        .await;
    let a = f
        .post_form(
            "/portal/doc/1.2.250.77.9/mask",
            &[("Cookie", patient.clone())],
            &format!("csrf={token}"),
        )
        .await;
    assert_eq!(a.status, 404);
    let other_pro = login(&f, &format!("role=professional&rpps={OTHER_PRO}")).await;
    let pro_token = hidden(
        &f.get(
            &format!("/portal/pro?ins={INS_1}"),
            None,
            &[("Cookie", &other_pro)],
        )
        .await
        .text(),
        "csrf",
    );
    let a = f
        .post_form(
            "/portal/doc/1.2.250.77.2/mask",
            &[("Cookie", other_pro.clone())],
            &format!("csrf={pro_token}"),
        )
        .await;
    assert_eq!(a.status, 403, "only the patient's side masks");
    assert_eq!(f.bundle(&search, &pro).await["total"], 2);

    // The masking log is append-only.
    for sql in [
        "UPDATE document_masking SET change = 'unmask'",
        "DELETE FROM document_masking",
    ] {
        let refused = dmpflow_store::testing::execute(&f.store, sql).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }

    // Logout ends the session (CSRF-checked like any form).
    let a = f
        .post_form("/portal/logout", &[("Cookie", patient.clone())], "csrf=x")
        .await;
    assert_eq!(a.status, 403);
    let a = f
        .post_form(
            "/portal/logout",
            &[("Cookie", patient.clone())],
            &format!("csrf={token}"),
        )
        .await;
    assert_eq!(a.status, 303);
    let after = f.get("/portal/dmp", None, &[("Cookie", &patient)]).await;
    assert_eq!(after.status, 303);
    f.finish().await;
}

#[tokio::test]
async fn portal_contract_sqlite() {
    contract(Backend::Sqlite).await;
}

#[tokio::test]
async fn portal_contract_postgres() {
    contract(Backend::Postgres("portal_contract")).await;
}
