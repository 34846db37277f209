//! The portal in a real browser (issue #14): headless Chromium from Debian, driven through
//! chromedriver. A patient, a legal representative and a professional log in through the
//! dev login form and each sees exactly what the rules allow; a document the patient masks
//! disappears for the professional; break-the-glass works and shows in the patient's
//! history; a hostile CDA (script, on* attributes, external image and links, CSS
//! expression) renders inert: nothing runs and nothing is fetched.
//!
//! Screenshots of the main pages at desktop and phone widths are written to
//! `screenshots/portal/` (git-ignored); with `DMPFLOW_DOC_IMAGES=1` the README's set under
//! `docs/img/` is refreshed too.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmpflow_schemas::{Cda, Entry};
use support::webdriver::{Browser, Driver};
use support::{AUTHOR, Backend, Doc, Fixture, INS_1, OTHER_PRO};

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// Counts every connection made to it: the hostile document points here.
struct Canary {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Canary {
    fn start() -> Canary {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                h.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = s {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                }
            }
        });
        Canary { port, hits }
    }
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../fuzz/seeds/render_cda/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A CDA with one section whose narrative is `text`.
fn cda_with(title: &str, text: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <?xml-stylesheet type=\"text/xsl\" href=\"http://127.0.0.1:1/cda.xsl\"?>\n\
         <ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
         <title>{title}</title><effectiveTime value=\"20260310101500+0100\"/>\
         <author><assignedAuthor><id root=\"1.2.250.1.71.4.2.1\" extension=\"810000000001\"/>\
         <assignedPerson><name><given>Marie</given><family>CURIE</family></name></assignedPerson>\
         <representedOrganization><name>Laboratoire des Tests</name></representedOrganization>\
         </assignedAuthor></author>\
         <component><structuredBody><component><section><title>{title}</title>\
         <text>{text}</text></section></component></structuredBody></component>\
         </ClinicalDocument>\n"
    )
}

fn hostile(port: u16) -> String {
    let text = format!(
        "<paragraph>Bonjour, voici votre courrier.<script>window.__pwned = 1;</script></paragraph>\
         <paragraph onmouseover=\"window.__pwned = 2\" onclick=\"window.__pwned = 2\">Texte survolé</paragraph>\
         <paragraph><content style=\"width: expression(window.__pwned = 5); background: url(http://127.0.0.1:{port}/css)\">Style hostile</content></paragraph>\
         <paragraph><linkHtml href=\"javascript:window.__pwned = 3\">lien javascript</linkHtml> \
         <linkHtml href=\"http://127.0.0.1:{port}/link\">lien externe</linkHtml></paragraph>\
         <renderMultiMedia referencedObject=\"img1\"/>\
         <table><tbody><tr><td><img xmlns=\"http://www.w3.org/1999/xhtml\" src=\"http://127.0.0.1:{port}/img\" onerror=\"window.__pwned = 4\"/>cellule</td></tr></tbody></table>\
         <iframe xmlns=\"http://www.w3.org/1999/xhtml\" src=\"http://127.0.0.1:{port}/frame\"></iframe>\
         <paragraph>&lt;img src=\"http://127.0.0.1:{port}/escaped\" onerror=\"window.__pwned = 6\"&gt;</paragraph>"
    );
    cda_with("Courrier de sortie", &text)
}

fn glucose(value: &str, flag: &str, at: &str) -> Entry {
    Entry::LabObservation {
        loinc: "2345-7".into(),
        label: "Glucose".into(),
        value: value.into(),
        value_type: "NM".into(),
        unit: Some("mmol/L".into()),
        interpretation: Some(flag.into()),
        reference_low: Some("3.9".into()),
        reference_high: Some("5.5".into()),
        reference_text: None,
        status: "F".into(),
        time: Some(at.into()),
    }
}

/// The patient's DMP: three lab reports over time, an imaging report (CDA N1 with its
/// PDF), a dispensation hidden from representatives, a cancer-care form and the hostile
/// letter, all by `AUTHOR`.
async fn fill(f: &Fixture, canary: u16) {
    let labs = [
        ("1.2.250.99.1", "20250110083000", "5.1", "N"),
        ("1.2.250.99.2", "20250612083000", "6.4", "H"),
        ("1.2.250.99.3", "20260105083000", "5.3", "N"),
    ];
    for (n, (uid, at, v, flag)) in labs.iter().enumerate() {
        let mut d = Doc::new(uid, INS_1, at, 100 + n as u32).build();
        d.meta.title = "Compte rendu de biologie".into();
        d.cda = Cda::Xml(cda_with(
            "Compte rendu de biologie",
            &format!(
                "<table><thead><tr><th>Analyse</th><th>Résultat</th><th>Référence</th></tr></thead>\
                 <tbody><tr><td>Glucose</td><td>{v} mmol/L</td><td>3,9 – 5,5</td></tr></tbody></table>"
            ),
        ));
        d.entries = vec![glucose(v, flag, at)];
        put(f, d).await;
    }
    let mut img = Doc::new("1.2.250.99.10", INS_1, "20260201140000", 110).build();
    img.meta.type_code = "18748-4".into();
    img.meta.title = "Compte rendu d'imagerie".into();
    img.cda = Cda::Xml(seed("cisis-IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"));
    img.entries.clear();
    put(f, img).await;
    let mut disp = Doc::new("1.2.250.99.11", INS_1, "20260215100000", 111)
        .masked(&["INVISIBLE_REP_LEGAUX"])
        .build();
    disp.meta.type_code = "60593-1".into();
    disp.meta.title = "Dispensation pharmaceutique".into();
    disp.cda = Cda::Xml(seed("cisis-eDISP-MED_2024.01.xml"));
    disp.entries.clear();
    put(f, disp).await;
    let mut rcp = Doc::new("1.2.250.99.12", INS_1, "20260220100000", 112).build();
    rcp.meta.type_code = "34794-8".into();
    rcp.meta.title = "Fiche de RCP".into();
    rcp.cda = Cda::Xml(seed("demo-cancer-00.xml"));
    rcp.entries.clear();
    put(f, rcp).await;
    let mut letter = Doc::new("1.2.250.99.13", INS_1, "20260310101500", 113).build();
    letter.meta.type_code = "11490-0".into();
    letter.meta.title = "Courrier de sortie".into();
    letter.cda = Cda::Xml(hostile(canary));
    letter.entries.clear();
    put(f, letter).await;
}

async fn put(f: &Fixture, d: dmpflow_schemas::Document) {
    f.store
        .write_batch(&[dmpflow_store::StoreItem::Document(d)], &[])
        .await
        .unwrap();
}

struct Shots {
    dir: PathBuf,
    docs: Option<PathBuf>,
}

impl Shots {
    fn new() -> Shots {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Shots {
            dir: root.join("screenshots/portal"),
            docs: std::env::var_os("DMPFLOW_DOC_IMAGES").map(|_| root.join("docs/img")),
        }
    }

    /// `name`-desktop.png and `name`-phone.png of the current page (whole page).
    fn take(&self, b: &Browser, name: &str, readme: bool) {
        for (label, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            b.resize(w, h);
            let path = self.dir.join(format!("{name}-{label}.png"));
            b.full_screenshot(&path, w);
            if readme
                && label == "desktop"
                && let Some(d) = &self.docs
            {
                std::fs::create_dir_all(d).unwrap();
                std::fs::copy(&path, d.join(format!("portal-{name}.png"))).unwrap();
            }
        }
        b.resize(DESKTOP.0, DESKTOP.1);
    }
}

/// Logs in through the dev form; the page that follows is the role's home.
fn login(b: &Browser, base: &str, role: &str, id: &str) {
    b.goto(&format!("{base}/portal/login"));
    b.click(&format!("input[name=role][value={role}]"));
    if role == "professional" {
        b.type_into("#rpps", id);
    } else {
        b.type_into("#ins", id);
    }
    let home = if role == "professional" {
        "/portal/pro"
    } else {
        "/portal/dmp"
    };
    b.submit("form[action='/portal/login/dev'] button[type=submit]", home);
}

fn logout(b: &Browser) {
    b.submit("form[action='/portal/logout'] button", "/portal/login");
}

/// The titles of the documents listed on the page.
fn listed(b: &Browser) -> Vec<String> {
    let v = b.script(
        "return Array.from(document.querySelectorAll('ul.docs li .title')).map(e => e.textContent);",
    );
    let mut t: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

fn sorted(t: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = t.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn patients_representatives_and_professionals_see_what_the_rules_allow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let canary = Canary::start();
    let f = rt.block_on(async {
        let f = Fixture::start(Backend::Sqlite).await;
        fill(&f, canary.port).await;
        f
    });
    let base = format!("http://{}", f.addr);
    let profile =
        std::env::temp_dir().join(format!("dmpflow-portal-chromium-{}", std::process::id()));
    let driver = Driver::start();
    let b = driver.browser(&profile);
    b.resize(DESKTOP.0, DESKTOP.1);
    let shots = Shots::new();
    let everything = [
        "Compte rendu de biologie",
        "Compte rendu de biologie",
        "Compte rendu de biologie",
        "Compte rendu d'imagerie",
        "Courrier de sortie",
        "Dispensation pharmaceutique",
        "Fiche de RCP",
    ];

    // Not logged in: every page leads to the login page.
    b.goto(&format!("{base}/portal/dmp"));
    assert!(b.url().ends_with("/portal/login"), "{}", b.url());
    shots.take(&b, "login", false);

    // The patient sees every document, grouped, and the cookie is out of the page's reach.
    login(&b, &base, "patient", INS_1);
    assert!(b.url().ends_with("/portal/dmp"), "{}", b.url());
    assert_eq!(listed(&b), sorted(&everything));
    let groups = b.script(
        "return Array.from(document.querySelectorAll('section.group h2')).map(e => e.textContent);",
    );
    let groups: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert!(groups[0].starts_with("Biologie"), "{groups:?}");
    assert_eq!(
        b.script("return document.cookie;"),
        "",
        "the session cookie is HttpOnly"
    );
    shots.take(&b, "documents", true);

    // The hostile letter renders inert: its text is there, nothing of its markup runs or loads.
    b.goto(&format!("{base}/portal/doc/1.2.250.99.13"));
    let text = b.main_text();
    assert!(text.contains("Bonjour, voici votre courrier."), "{text}");
    assert!(text.contains("Texte survolé"));
    let inert = b.script(
        "const a = document.querySelector('article');\
         return {\
           pwned: typeof window.__pwned,\
           scripts: document.querySelectorAll('script').length,\
           active: a.querySelectorAll('img, iframe, object, embed, svg, style, link, [style], [onclick], [onmouseover], [onerror], [href^=javascript], [src]').length,\
           links: Array.from(a.querySelectorAll('a')).map(x => x.getAttribute('href'))\
         };",
    );
    assert_eq!(inert["pwned"], "undefined", "{inert}");
    assert_eq!(inert["scripts"], 0, "{inert}");
    assert_eq!(inert["active"], 0, "{inert}");
    assert!(
        inert["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| { h.as_str().is_none_or(|h| !h.starts_with("javascript:")) }),
        "{inert}"
    );
    // Hovering and clicking the hostile paragraph runs nothing either.
    b.script("document.querySelectorAll('article p').forEach(p => { p.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); p.click(); }); return 0;");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.script("return typeof window.__pwned;"), "undefined");
    assert_eq!(
        canary.hits.load(Ordering::SeqCst),
        0,
        "the hostile document fetched something"
    );
    // Every document page of this DMP (real CI-SIS examples among them) stays under 200 KB.
    for id in [
        "1.2.250.99.2",
        "1.2.250.99.10",
        "1.2.250.99.11",
        "1.2.250.99.12",
        "1.2.250.99.13",
    ] {
        b.goto(&format!("{base}/portal/doc/{id}"));
        let size = b
            .script("return new TextEncoder().encode(document.documentElement.outerHTML).length;")
            .as_u64()
            .unwrap();
        assert!(size < 200_000, "document page {id} of {size} bytes");
    }

    // A lab report and the imaging report (CDA N1: its PDF is offered for download).
    b.goto(&format!("{base}/portal/doc/1.2.250.99.2"));
    assert!(b.main_text().contains("6.4 mmol/L"));
    shots.take(&b, "document", true);
    b.goto(&format!("{base}/portal/doc/1.2.250.99.10"));
    assert!(
        !b.all("a[href='/portal/doc/1.2.250.99.10/pdf/0'][download]")
            .is_empty(),
        "the N1 PDF is offered"
    );

    // Results: a table and a chart per analyte, the high value flagged.
    b.goto(&format!("{base}/portal/dmp/results"));
    assert_eq!(b.all("section.analyte").len(), 1);
    assert_eq!(b.all("section.analyte figure.chart svg").len(), 1);
    assert_eq!(b.all("tr.abnormal").len(), 1, "one result above the range");
    shots.take(&b, "results", true);

    // The patient masks the imaging report from professionals.
    b.goto(&format!("{base}/portal/doc/1.2.250.99.10"));
    b.submit(
        "form[action='/portal/doc/1.2.250.99.10/mask'] button",
        "/portal/doc/1.2.250.99.10",
    );
    assert!(b.main_text().contains("Masqué aux professionnels"));
    logout(&b);
    assert!(b.url().ends_with("/portal/login"));
    b.goto(&format!("{base}/portal/dmp"));
    assert!(b.url().ends_with("/portal/login"), "logged out for good");

    // The representative: everything but the dispensation hidden from representatives.
    login(&b, &base, "representative", INS_1);
    assert_eq!(
        listed(&b),
        sorted(
            &everything
                .iter()
                .copied()
                .filter(|t| *t != "Dispensation pharmaceutique")
                .collect::<Vec<_>>()
        )
    );
    b.goto(&format!("{base}/portal/doc/1.2.250.99.11"));
    assert!(b.main_text().contains("Introuvable"), "{}", b.main_text());
    logout(&b);

    // A professional who did not author the documents: the masked report is gone, even by
    // its address.
    login(&b, &base, "professional", OTHER_PRO);
    assert!(b.url().ends_with("/portal/pro"), "{}", b.url());
    b.type_into("#ins", INS_1);
    b.submit("form.search button", &format!("/portal/pro?ins={INS_1}"));
    let text = b.main_text();
    assert!(
        text.contains("FAURE") && text.contains("HUGO") && text.contains("09/12/1938"),
        "strict traits shown: {text}"
    );
    let without_masked: Vec<String> = sorted(
        &everything
            .iter()
            .copied()
            .filter(|t| *t != "Compte rendu d'imagerie")
            .collect::<Vec<_>>(),
    );
    assert_eq!(listed(&b), without_masked);
    shots.take(&b, "professional", true);
    b.goto(&format!("{base}/portal/doc/1.2.250.99.10"));
    assert!(b.main_text().contains("Introuvable"));

    // Break the glass: the reason is required, the patient is told it will be shown.
    b.goto(&format!("{base}/portal/pro?ins={INS_1}"));
    assert!(b.main_text().contains("seront montrés au patient"));
    b.type_into("#reason", "Patient inconscient aux urgences");
    b.submit(
        "form[action='/portal/pro/break-glass'] button",
        &format!("/portal/pro?ins={INS_1}"),
    );
    let text = b.main_text();
    assert!(
        text.contains("bris de glace") && text.contains("Patient inconscient aux urgences"),
        "{text}"
    );
    // Break-the-glass does not lift the patient's own masking.
    assert_eq!(listed(&b), without_masked);
    b.goto(&format!("{base}/portal/doc/1.2.250.99.3"));
    assert!(b.main_text().contains("5.3 mmol/L"));
    logout(&b);

    // The patient's history shows the break-the-glass, marked, with its reason; the author
    // still sees the masked report.
    login(&b, &base, "patient", INS_1);
    b.goto(&format!("{base}/portal/dmp/history"));
    assert!(
        !b.all("tr.breakglass").is_empty(),
        "break-the-glass rows are marked"
    );
    let text = b.main_text();
    assert!(text.contains("Patient inconscient aux urgences"), "{text}");
    assert!(text.contains("Document masqué aux professionnels"));
    assert!(text.contains(&format!("Professionnel de santé {OTHER_PRO}")));
    shots.take(&b, "history", true);
    logout(&b);
    login(&b, &base, "professional", AUTHOR);
    b.goto(&format!("{base}/portal/pro?ins={INS_1}"));
    assert_eq!(
        listed(&b),
        sorted(&everything),
        "the author sees what they wrote, masked or not"
    );

    drop(b);
    drop(driver);
    assert_eq!(
        canary.hits.load(Ordering::SeqCst),
        0,
        "nothing was fetched from the canary"
    );
    rt.block_on(f.finish());
    let _ = std::fs::remove_dir_all(&profile);
}
