//! A minimal W3C WebDriver client for the portal's browser tests, driving Debian's headless
//! Chromium through its chromedriver (both from the `chromium`, `chromium-driver` packages,
//! installed by `.ci/run`). Blocking, over the ureq client the crate already has.
//!
//! Written here rather than taken from fantoccini or thirtyfour: the tests need a dozen
//! commands (navigate, find, click, type, run a script, screenshot, resize), each one HTTP
//! request with a JSON body; a client crate would bring its own HTTP stack and async runtime
//! glue for that.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, stopped when dropped.
pub struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

/// One browser session.
pub struct Browser<'a> {
    driver: &'a Driver,
    session: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Driver {
    /// Starts `/usr/bin/chromedriver` on a free port. Panics (the test fails, never skips)
    /// when it is not installed.
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; .ci/run installs it)");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: agent(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .agent
                .get(&format!("{}/status", driver.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.unwrap_or(json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let v: Value = resp
            .body_mut()
            .read_to_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        assert!(
            status < 400,
            "webdriver {method} {path}: HTTP {status}: {}",
            v["value"]["message"]
        );
        v["value"].clone()
    }

    /// A new headless Chromium session, `width`×`height`, with an empty profile.
    pub fn browser(&self, profile: &Path) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // Headless as root on a closed network: no sandbox (root), no GPU, and no
                // background connections to Google's services (refused here, slowly).
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--no-first-run",
                    "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = self.call("POST", "/session", Some(caps));
        let session = v["sessionId"].as_str().expect("a session id").to_owned();
        Browser {
            driver: self,
            session,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Every element matching the CSS `selector`.
    pub fn all(&self, selector: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one element matching `selector` (panics when there is none).
    pub fn find(&self, selector: &str) -> String {
        self.all(selector)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {selector} on {}", self.url()))
    }

    pub fn click(&self, selector: &str) {
        let e = self.find(selector);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Clicks `selector` (a submit button) and waits until the page that follows is loaded
    /// at a URL whose path and query end with `expected`: a form's navigation may still be
    /// pending when the click returns, on a loaded machine.
    pub fn submit(&self, selector: &str, expected: &str) {
        let before = self.script("return window.performance.timeOrigin;");
        self.click(selector);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.script(
                "return [window.performance.timeOrigin, document.readyState, location.pathname + location.search];",
            );
            if now[0] != before
                && now[1] == "complete"
                && now[2].as_str().is_some_and(|u| u.ends_with(expected))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after clicking {selector}: at {} (wanted …{expected})",
                now[2]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn type_into(&self, selector: &str, text: &str) {
        let e = self.find(selector);
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The visible text of the page's `<main>`.
    pub fn main_text(&self) -> String {
        self.script("return document.querySelector('main').innerText;")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `body` (a function body) in the page and answers its return value.
    pub fn script(&self, body: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": body, "args": [] })),
        )
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// A PNG of the whole page (the window is made as tall as the page first).
    pub fn full_screenshot(&self, path: &Path, width: u32) {
        let height = self
            .script("return document.documentElement.scrollHeight;")
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 4000) as u32;
        self.resize(width, height + 120);
        self.screenshot(path);
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .agent
            .delete(&format!("{}/session/{}", self.driver.base, self.session))
            .call();
    }
}
