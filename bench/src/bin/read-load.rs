//! bench-read-load: the load client of the read benchmark (issue #13). Drives a running
//! `dmpflow serve` with N keep-alive connections for fixed seconds, in phases: ITI-67
//! searches on random patients, ITI-68 retrieves of random readable documents, and
//! (issue #14) portal document pages (`/portal/doc/{id}`, the CDA rendered to HTML) through
//! sessions opened with the server's dev login. Prints
//! `read.*` key=value lines for scripts/bench's results.txt and exits non-zero when fewer
//! than `--min-ok` of the calls answered 200 (a benchmark of 403/404s measures nothing).
//!
//! HTTP: a minimal HTTP/1.1 client over tokio and `httparse` (already in the tree through
//! hyper). hyper's own client needs its `client` feature, which brings a crate not in
//! Cargo.lock (`want`), and this client only ever sends GETs to a server that always
//! answers with a Content-Length; anything else (chunked, close) is an error, loudly.
//!
//! Principals: one professional token (searches any patient, retrieves documents not
//! MASQUE_PS) and patient tokens (their own DMP: every version, masked ones included). A
//! quarter of the calls go as a patient, the rest as the professional.
//!
//! Inputs (written by scripts/bench):
//! - `--tokens FILE`: first line the professional token, then `INS TOKEN` per patient;
//! - `--pro-docs FILE`: one uniqueId per line the professional may read;
//! - `--patient-docs FILE`: `INS uniqueId` per line, the token patients' own documents;
//! - `--patients P`: searches pick INS `100000000000000 + k`, k < P (as bench-read-gen).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// host:port of `dmpflow serve`.
    #[arg(long)]
    addr: String,
    #[arg(long)]
    tokens: String,
    #[arg(long)]
    pro_docs: String,
    #[arg(long)]
    patient_docs: String,
    #[arg(long)]
    patients: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Unmeasured seconds before each phase (connections, caches).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Least share of 200 answers for the run to count.
    #[arg(long, default_value_t = 0.99)]
    min_ok: f64,
    /// Which phases: search, retrieve, portal (document pages through dev-login sessions).
    #[arg(long, default_value = "search,retrieve")]
    phases: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// What the connections share: who may ask for what.
struct Targets {
    /// The credential header of each call: `Authorization: Bearer …` for the API phases,
    /// `Cookie: dmpflow-session=…` for the portal.
    pro_token: String,
    /// (INS, credential header, that patient's document ids).
    patients: Vec<(String, String, Vec<String>)>,
    pro_docs: Vec<String>,
    patient_count: u64,
}

/// splitmix64, one per connection.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Search,
    Retrieve,
    Portal,
}

/// The next call: path and token.
fn pick<'a>(t: &'a Targets, phase: Phase, rng: &mut Rng) -> (String, &'a str) {
    let as_patient = rng.below(4) == 0 && !t.patients.is_empty();
    match (phase, as_patient) {
        (Phase::Search, false) => {
            let k = rng.next() % t.patient_count;
            (
                search_path(&format!("{}", 100_000_000_000_000u64 + k)),
                &t.pro_token,
            )
        }
        (Phase::Search, true) => {
            let (ins, token, _) = &t.patients[rng.below(t.patients.len())];
            (search_path(ins), token)
        }
        (Phase::Retrieve | Phase::Portal, false) => {
            let id = &t.pro_docs[rng.below(t.pro_docs.len())];
            (doc_path(phase, id), &t.pro_token)
        }
        (Phase::Retrieve | Phase::Portal, true) => {
            let (_, token, docs) = &t.patients[rng.below(t.patients.len())];
            let id = &docs[rng.below(docs.len())];
            (doc_path(phase, id), token)
        }
    }
}

fn doc_path(phase: Phase, id: &str) -> String {
    match phase {
        Phase::Portal => format!("/portal/doc/{id}"),
        _ => format!("/fhir/Binary/{id}"),
    }
}

fn search_path(ins: &str) -> String {
    // `|` percent-encoded as a client library would send it.
    format!("/fhir/DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.10%7C{ins}")
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: addr.to_owned(),
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// GET `path` with the credential header `cred`; answers the status and body length.
    async fn get(&mut self, path: &str, cred: &str) -> Result<(u16, usize)> {
        let (status, _, body) = self
            .request("GET", path, &[cred, "Accept: application/fhir+json"], "")
            .await?;
        Ok((status, body.len()))
    }

    /// One request; answers the status, the Set-Cookie values and the body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> Result<(u16, Vec<String>, Vec<u8>)> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(&self.buf)? {
                let status = resp.code.ok_or_else(|| anyhow!("no status"))?;
                let mut len = None;
                let mut cookies = Vec::new();
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("set-cookie") {
                        cookies.push(String::from_utf8_lossy(h.value).into_owned());
                    } else if h.name.eq_ignore_ascii_case("content-length") {
                        len = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("chunked answer: this client reads Content-Length bodies only");
                    }
                }
                let len = len.ok_or_else(|| anyhow!("answer without Content-Length"))?;
                while self.buf.len() < head + len {
                    self.fill().await?;
                }
                let body = self.buf[head..head + len].to_vec();
                self.buf.drain(..head + len);
                return Ok((status, cookies, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    by_status: HashMap<u16, u64>,
    bytes: u64,
    max_bytes: usize,
    errors: u64,
}

async fn drive(
    addr: String,
    t: Arc<Targets>,
    phase: Phase,
    seed: u64,
    measure_from: Instant,
    until: Instant,
) -> Result<Tally> {
    let mut rng = Rng(seed);
    let mut conn = Conn::open(&addr).await?;
    let mut tally = Tally::default();
    loop {
        let (path, token) = pick(&t, phase, &mut rng);
        let start = Instant::now();
        if start >= until {
            break;
        }
        let answer = conn.get(&path, token).await;
        let took = start.elapsed();
        let measured = start >= measure_from;
        match answer {
            Ok((status, len)) if measured => {
                tally
                    .micros
                    .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                *tally.by_status.entry(status).or_default() += 1;
                tally.bytes += len as u64;
                tally.max_bytes = tally.max_bytes.max(len);
            }
            Ok(_) => {}
            Err(e) => {
                if measured {
                    tally.errors += 1;
                }
                eprintln!("bench-read-load: {e:#}; reconnecting");
                conn = Conn::open(&addr).await?;
            }
        }
    }
    Ok(tally)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds (user + system) of this process, to show what the client itself cost.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if r != 0 {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { u.assume_init() };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

async fn phase(args: &Args, t: &Arc<Targets>, phase: Phase, name: &str) -> Result<bool> {
    let now = Instant::now();
    let measure_from = now + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.seconds);
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let seed = args.seed ^ ((c as u64 + 1) << 32) ^ (phase as u64);
        tasks.push(tokio::spawn(drive(
            args.addr.clone(),
            Arc::clone(t),
            phase,
            seed,
            measure_from,
            until,
        )));
    }
    let mut all = Tally::default();
    for task in tasks {
        let one = task.await??;
        all.micros.extend(one.micros);
        for (k, v) in one.by_status {
            *all.by_status.entry(k).or_default() += v;
        }
        all.bytes += one.bytes;
        all.max_bytes = all.max_bytes.max(one.max_bytes);
        all.errors += one.errors;
    }
    // The last calls end a little after `until`; their time counts in the rate's window.
    let window = (Instant::now() - measure_from).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    all.micros.sort_unstable();
    let n = all.micros.len() as u64;
    let ok = all.by_status.get(&200).copied().unwrap_or(0);
    let mut statuses: Vec<_> = all.by_status.iter().collect();
    statuses.sort();
    let statuses: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let s = &all.micros;
    // calls rate/s p50 p90 p99 p999 max (ms) ok non2xx errors window_s concurrency
    println!(
        "read.{name}={n} {:.0} {:.2} {:.2} {:.2} {:.2} {:.2} {ok} {} {} {window:.1} {}",
        n as f64 / window,
        pct(s, 0.50),
        pct(s, 0.90),
        pct(s, 0.99),
        pct(s, 0.999),
        s.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        n - ok,
        all.errors,
        args.concurrency,
    );
    println!("read.{name}_status={}", statuses.join(" "));
    println!(
        "read.{name}_bytes_per_call={:.0}",
        all.bytes as f64 / n.max(1) as f64
    );
    println!("read.{name}_max_bytes={}", all.max_bytes);
    println!("read.{name}_client_cpu={cpu:.2}");
    let share = ok as f64 / n.max(1) as f64;
    if n == 0 || share < args.min_ok {
        eprintln!(
            "bench-read-load: {name}: only {ok} of {n} calls answered 200 ({}), errors {}",
            statuses.join(" "),
            all.errors
        );
        return Ok(false);
    }
    Ok(true)
}

/// A portal session through the dev login (`serve --auth-dev-key` with the private key
/// beside it): the login page's double-submit token, then the form; answers the
/// `Cookie:` header of the session.
async fn portal_login(addr: &str, form: &str) -> Result<String> {
    let mut c = Conn::open(addr).await?;
    let (status, cookies, page) = c.request("GET", "/portal/login", &[], "").await?;
    anyhow::ensure!(status == 200, "GET /portal/login answered {status}");
    let login = cookies
        .iter()
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|kv| kv.starts_with("dmpflow-login="))
        })
        .context("no login cookie: is the dev login on (dev.pem beside dev.pub.pem)?")?
        .to_owned();
    let page = String::from_utf8_lossy(&page);
    let marker = "name=\"login\" value=\"";
    let at = page.find(marker).context("no login token in the page")? + marker.len();
    let token = &page[at..at + page[at..].find('"').context("unterminated token")?];
    let cookie = format!("Cookie: {login}");
    let (status, cookies, _) = c
        .request(
            "POST",
            "/portal/login/dev",
            &[&cookie],
            &format!("login={token}&{form}"),
        )
        .await?;
    anyhow::ensure!(status == 303, "dev login answered {status}");
    let session = cookies
        .iter()
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|kv| kv.starts_with("dmpflow-session="))
        })
        .context("no session cookie")?;
    Ok(format!("Cookie: {session}"))
}

/// The targets with portal sessions instead of tokens.
async fn portal_targets(addr: &str, t: &Targets) -> Result<Targets> {
    let pro = portal_login(addr, "role=professional&rpps=10003000001").await?;
    let mut patients = Vec::new();
    for (ins, _, docs) in &t.patients {
        let cookie = portal_login(addr, &format!("role=patient&ins={ins}")).await?;
        patients.push((ins.clone(), cookie, docs.clone()));
    }
    Ok(Targets {
        pro_token: pro,
        patients,
        pro_docs: t.pro_docs.clone(),
        patient_count: t.patient_count,
    })
}

fn read_lines(path: &str) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tokens = read_lines(&args.tokens)?;
    let pro_token = tokens.first().context("no professional token")?.clone();
    let mut own: HashMap<String, Vec<String>> = HashMap::new();
    for l in read_lines(&args.patient_docs)? {
        if let Some((ins, id)) = l.split_once(' ') {
            own.entry(ins.to_owned()).or_default().push(id.to_owned());
        }
    }
    let patients = tokens[1..]
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(ins, tok)| {
            let docs = own.remove(ins)?;
            Some((ins.to_owned(), format!("Authorization: Bearer {tok}"), docs))
        })
        .collect();
    let t = Arc::new(Targets {
        pro_token: format!("Authorization: Bearer {pro_token}"),
        patients,
        pro_docs: read_lines(&args.pro_docs)?,
        patient_count: args.patients.max(1),
    });
    if t.pro_docs.is_empty() {
        bail!("no document ids for the professional");
    }
    eprintln!(
        "bench-read-load: {} patient principals, {} professional document ids",
        t.patients.len(),
        t.pro_docs.len()
    );
    // One thread: the client shares two cores with the server and PostgreSQL, and one
    // event loop is enough to keep a few dozen connections busy.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut good = true;
    for p in args.phases.split(',') {
        let ph = match p.trim() {
            "search" => Phase::Search,
            "retrieve" => Phase::Retrieve,
            "portal" => Phase::Portal,
            other => bail!("unknown phase {other}"),
        };
        if ph == Phase::Portal {
            let sessions = Arc::new(rt.block_on(portal_targets(&args.addr, &t))?);
            good &= rt.block_on(phase(&args, &sessions, ph, p.trim()))?;
        } else {
            good &= rt.block_on(phase(&args, &t, ph, p.trim()))?;
        }
    }
    if !good {
        std::process::exit(2);
    }
    Ok(())
}
