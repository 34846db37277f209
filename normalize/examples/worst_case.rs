//! Builds the worst lab messages of issue #16 item 7 (4 MB of NTE lines, 400k OBX) and
//! normalizes them once, so peak RSS and CPU time can be read with `/usr/bin/time -v`:
//! `cargo run --release -p dmpflow-normalize --example worst_case -- nte|obx`.

use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized};

fn head() -> String {
    let mut s = String::new();
    s.push_str("MSH|^~\\&|SIL-Z|LABO-TEST^1.2.250.1.999.1^ISO|PFI|DMPFLOW|20240315143025+0100||ORU^R01^ORU_R01|LAB-W|P|2.5|||||FRA|UNICODE UTF-8\r");
    s.push_str("PID|1||288059205012397^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||LEGER^Zoe^Zoe^^^^L||19880514|F|||||||||||||||||||||||VALI\r");
    s.push_str("ORC|NW|CMD-1^SIL-Z\r");
    s.push_str("OBR|1|CMD-1^SIL-Z|RES-1|24323-8^Bilan^LN|||20240315080000\r");
    s.push_str("PRT||UC||SB^^HL70912|801234567866^BIOLOGISTE^Anne|||LABO^^^^^ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^1120459876\r");
    s
}

fn main() {
    let kind = std::env::args().nth(1).unwrap_or_else(|| "nte".into());
    let mut msg = head();
    match kind.as_str() {
        // One result, then ~4 MB of NTE comment lines attached to it.
        "nte" => {
            msg.push_str("OBX|1|NM|2345-7^Glucose^LN||5.6|mmol/L|3.5-5.1|H|||F\r");
            let line = if std::env::args().nth(2).is_some() {
                "NTE|1||x\r".to_string()
            } else {
                format!("NTE|1||{}\r", "x".repeat(70))
            };
            while msg.len() < 4 << 20 {
                msg.push_str(&line);
            }
        }
        // 400,000 numeric results.
        _ => {
            for i in 0..400_000 {
                msg.push_str(&format!("OBX|{i}|NM|2345-7^G^LN||5.6|||||F\r"));
            }
        }
    }
    let cfg = Config {
        max_message_bytes: 64 << 20,
        max_segment_bytes: 9 << 20,
        ..Config::default()
    };
    let t = std::time::Instant::now();
    match normalize(Feed::Lab, msg.as_bytes(), &cfg) {
        Ok(out) => {
            for n in out {
                if let Normalized::Document(d) = n {
                    println!(
                        "{kind}: input {} bytes -> CDA {} bytes, {} entries, {:?}",
                        msg.len(),
                        d.cda.xml_len(),
                        d.entries.len(),
                        t.elapsed()
                    );
                }
            }
        }
        Err(e) => println!(
            "{kind}: input {} bytes -> refused {} ({}) in {:?}",
            msg.len(),
            e.reason,
            e.detail,
            t.elapsed()
        ),
    }
}
