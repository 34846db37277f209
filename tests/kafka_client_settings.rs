//! Every command that talks to Kafka builds its clients with the operator's
//! `[kafka.client]` settings (the pass-through that makes TLS and SASL work), and refuses a
//! key dmpflow must control, naming it but never its value. Before the clients had one
//! factory, `dmpflow topics list` built a client of its own without them, so it could not
//! reach a SASL/TLS broker.
//!
//! How it is observed, fast and the same on every machine: the settings carry a key that
//! librdkafka does not know. A command that passes `[kafka.client]` to its client fails at
//! once, when the client is created, with an error naming that key; a command that dropped
//! the settings would instead succeed, or fail for another reason, or keep running (`run`,
//! `mllp`) until the deadline, and the test fails. The control, the same `topics list`
//! without the key, succeeds against the stack of `scripts/stack up` (required: the test
//! fails, never skips, without it).

mod common;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The key librdkafka does not know, in its environment spelling and as librdkafka names it.
const PROBE_VAR: &str = "DMPFLOW_KAFKA__DMPFLOW_SETTING_PROBE";
const PROBE_KEY: &str = "dmpflow.setting.probe";

/// Long enough for a command to fail at startup on a loaded machine; a command that failed
/// to pass the settings and runs on is stopped here.
const DEADLINE: Duration = Duration::from_secs(30);

struct Outcome {
    /// None: still running at the deadline (then killed).
    status: Option<ExitStatus>,
    stderr: String,
}

/// Runs `dmpflow args` with `env`, its output in files (no pipe to fill), killed at
/// [`DEADLINE`].
fn run_until_deadline(env: &[(String, String)], args: &[&str], tag: &str) -> Outcome {
    let dir = std::env::temp_dir();
    let out_path = dir.join(format!("dmpflow-kcs-{tag}-{}.out", unique()));
    let err_path = dir.join(format!("dmpflow-kcs-{tag}-{}.err", unique()));
    let mut child = dmpflow()
        .envs(env.iter().cloned())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting dmpflow");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for dmpflow") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    Outcome { status, stderr }
}

/// An environment on topics and groups of its own, with a SQLite database (no command here
/// gets as far as using it).
fn env(tag: &str) -> (Vec<(String, String)>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("dmpflow-kcs-{tag}-{}", unique()));
    std::fs::create_dir_all(&dir).expect("test directory");
    let db = format!("sqlite://{}", dir.join("dmp.db").display());
    (isolated_env(&format!("kcs{tag}{}", unique()), &db), dir)
}

/// Every command that creates a Kafka client, with the arguments that make it start.
fn kafka_commands(dir: &std::path::Path) -> Vec<(&'static str, Vec<String>)> {
    let input = dir.join("one.hl7");
    std::fs::write(
        &input,
        "MSH|^~\\&|LAB|HOSP|DMP|DMP|20240101120000||ORU^R01|1|P|2.5\r",
    )
    .expect("input file");
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut load = words("load --feed lab");
    load.push(input.display().to_string());
    vec![
        ("topics list", words("topics list")),
        ("topics create", words("topics create")),
        ("load", load),
        ("dlq list", words("dlq list")),
        ("dlq show", words("dlq show 0:0")),
        ("dlq replay", words("dlq replay --dry-run")),
        (
            "mllp",
            words("mllp --feed lab --listen 127.0.0.1:0 --metrics-addr 127.0.0.1:0"),
        ),
        (
            "run",
            words("run --stage normalize --metrics-addr 127.0.0.1:0"),
        ),
        ("replay", words("replay --stage normalize --from 0")),
    ]
}

/// Fails unless `outcome` is a failure at startup whose error names `key`.
fn assert_refused_naming(what: &str, outcome: &Outcome, key: &str) {
    let Some(status) = outcome.status else {
        panic!(
            "{what}: still running after {DEADLINE:?}, so its Kafka client did not get the \
             [kafka.client] settings\n{}",
            outcome.stderr
        );
    };
    assert!(
        !status.success() && outcome.stderr.contains(key),
        "{what}: expected a failure naming {key} (proof the [kafka.client] settings reached \
         its Kafka client), got {status}\n{}",
        outcome.stderr
    );
}

#[test]
fn every_kafka_command_passes_the_kafka_client_settings_to_its_clients() {
    require_kafka();
    let (mut env, dir) = env("all");
    // The control: the stack answers, and `topics list` succeeds without the probe key.
    let control = run_until_deadline(&env, &["topics", "list"], "control");
    assert!(
        control.status.is_some_and(|s| s.success()),
        "topics list without the probe key: {:?}\n{}",
        control.status,
        control.stderr
    );
    env.push((PROBE_VAR.into(), "1".into()));
    for (what, args) in kafka_commands(&dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = run_until_deadline(&env, &args, &what.replace(' ', "-"));
        assert_refused_naming(what, &outcome, PROBE_KEY);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_config_files_kafka_client_section_reaches_topics_list() {
    require_kafka();
    let (env, dir) = env("toml");
    let toml = dir.join("dmpflow.toml");
    std::fs::write(
        &toml,
        format!(
            "[kafka]\nbootstrap = \"{}\"\n[kafka.client]\n\"{PROBE_KEY}\" = \"1\"\n",
            bootstrap()
        ),
    )
    .expect("config file");
    let config = toml.display().to_string();
    let outcome = run_until_deadline(&env, &["--config", &config, "topics", "list"], "toml");
    assert_refused_naming("topics list --config", &outcome, PROBE_KEY);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_key_dmpflow_controls_is_refused_by_every_command_naming_it_not_its_value() {
    require_kafka();
    let (mut env, dir) = env("refused");
    // `replay` still builds its consumer from the transitional, unchecked
    // `runtime::client_config` and overrides the key itself: it meets the refusal at its
    // next client, the admin one that reads its topics' limits, once it has read its window,
    // so its topics must exist.
    run_ok(&env, &["topics", "create"]);
    let value = format!("not-shown-{}", unique());
    env.push(("DMPFLOW_KAFKA__ENABLE_AUTO_COMMIT".into(), value.clone()));
    for (what, args) in kafka_commands(&dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = run_until_deadline(&env, &args, &what.replace(' ', "-"));
        assert_refused_naming(what, &outcome, "\"enable.auto.commit\"");
        assert!(
            outcome
                .stderr
                .contains("only once a batch's outputs are durable"),
            "{what}: the reason is given\n{}",
            outcome.stderr
        );
        assert!(
            !outcome.stderr.contains(&value),
            "{what}: the value is never printed\n{}",
            outcome.stderr
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
