//! Parse throughput of our reader against hl7-parser 0.3 on the same realistic ORU^R01
//! (the crates.md §2.3 shape: 14 segments, 7 OBX, 2 NTE with accents and escapes), many
//! distinct copies. Ignored by default; run in release:
//! `cargo test --release -p dmpflow-normalize --test hl7_throughput -- --ignored --nocapture`

use std::hint::black_box;
use std::time::Instant;

use dmpflow_normalize::hl7::{Message, ReadOptions};

fn message(i: usize) -> String {
    let segs = [
        format!(
            "MSH|^~\\&|SIL-LAB|LABO-BIO^1.2.250.1.999.1^ISO|PFI-DMP|DMPFLOW|20240315143025+0100||ORU^R01^ORU_R01|MSG{i:010}|P|2.5|||||FRA|UNICODE UTF-8|||2.0^CISIS_CDA_HL7_V2"
        ),
        "PID|1||248059912345678^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS^^20200101~IPP0012345^^^LABO&1.2.250.1.999.2&ISO^PI||MARTIN^Hélène^Hélène Marie^^^^L~DURAND^Hélène^^^^^D||19480512|F|||12 rue de la République^^LYON^^69002^FRA^H~^^^^^^BDL^^69123|||||||||||||||||||||VALI".to_string(),
        "PV1|1|O|LABO^^^LABO-BIO||||801234567897^MEDECIN^Paul^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS".to_string(),
        "ORC|NW|CMD123456^SIL-LAB|RES123456^SIL-LAB||CM||||20240315080000|||801234567897^MEDECIN^Paul^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS".to_string(),
        "OBR|1|CMD123456^SIL-LAB|RES123456^SIL-LAB|24323-8^Bilan métabolique de base^LN|||20240315080000|||||||||801234567897^MEDECIN^Paul||||||20240315140000|||F|||||||801234567866&BIOLOGISTE&Anne".to_string(),
        "OBX|1|NM|2345-7^Glucose [Moles/Vol] Sang^LN||5.6|mmol/L|3.5-5.1|H|||F|||20240315090000".to_string(),
        "OBX|2|NM|2160-0^Créatinine [Masse/Vol] Sérum^LN||9.5|mg/L|5-10|N|||F|||20240315090000".to_string(),
        "OBX|3|NM|2951-2^Sodium [Moles/Vol] Sérum^LN||140|mmol/L|135-145|N|||F|||20240315090000".to_string(),
        "OBX|4|NM|2823-3^Potassium [Moles/Vol] Sérum^LN||4.1|mmol/L|3.5-5.1|N|||F|||20240315090000".to_string(),
        "OBX|5|NM|718-7^Hémoglobine [Masse/Vol] Sang^LN||13.2|g/dL|12-16|N|||F|||20240315090000".to_string(),
        "OBX|6|NM|6690-2^Leucocytes [Nombre/Vol] Sang^LN||7.8|10*9/L|4-10|N|||F|||20240315090000".to_string(),
        "OBX|7|CWE|11156-7^Aspect du sérum^LN||CLAIR^Clair^L||||||F|||20240315090000".to_string(),
        "NTE|1||Prélèvement hémolysé\\.br\\Résultat du potassium \\T\\ contrôle à prévoir".to_string(),
        "NTE|2||Résultats validés par le biologiste responsable \\T\\ transmis au prescripteur".to_string(),
    ];
    let mut s = segs.join("\r");
    s.push('\r');
    s
}

fn rate(label: &str, bytes: usize, n: usize, secs: f64) {
    println!(
        "{label:<34} {:>8.0} msg/s {:>8.1} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

#[test]
#[ignore = "throughput measurement; run in release with --ignored --nocapture"]
fn throughput_vs_hl7_parser() {
    const N: usize = 50_000;
    let msgs: Vec<String> = (0..N).map(message).collect();
    let bytes: usize = msgs.iter().map(String::len).sum();
    println!("message size: {} bytes, {} copies", msgs[0].len(), N);
    let opts = ReadOptions::default();

    for round in 0..2 {
        println!("round {round}");
        let t = Instant::now();
        for m in &msgs {
            black_box(Message::parse(black_box(m.as_bytes()), &opts).unwrap());
        }
        rate(
            "dmpflow parse (bytes, UTF-8 check)",
            bytes,
            N,
            t.elapsed().as_secs_f64(),
        );

        let t = Instant::now();
        let mut acc = 0usize;
        for m in &msgs {
            let msg = Message::parse(m.as_bytes(), &opts).unwrap();
            let pid = msg.segment("PID").unwrap();
            for rep in pid.field(3).repetitions() {
                acc += rep.component(5).raw().len() + rep.component(4).sub(2).raw().len();
                acc += rep.component(1).raw().len();
            }
            for obx in msg.segments("OBX") {
                acc += obx.field(3).component(1).raw().len();
                acc += obx.field(5).raw().len();
                acc += obx.field(6).component(1).raw().len();
            }
        }
        black_box(acc);
        rate(
            "dmpflow parse + extract",
            bytes,
            N,
            t.elapsed().as_secs_f64(),
        );

        let t = Instant::now();
        for m in &msgs {
            black_box(hl7_parser::Message::parse(black_box(m.as_str())).unwrap());
        }
        rate("hl7-parser 0.3 parse", bytes, N, t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut acc = 0usize;
        for m in &msgs {
            let msg = hl7_parser::Message::parse(m.as_str()).unwrap();
            let pid = msg.segment("PID").unwrap();
            for rep in pid.field(3).unwrap().repeats() {
                acc += rep.component(5).map_or(0, |c| c.raw_value().len());
                acc += rep
                    .component(4)
                    .and_then(|c| c.subcomponent(2))
                    .map_or(0, |s| s.raw_value().len());
                acc += rep.component(1).map_or(0, |c| c.raw_value().len());
            }
            for obx in msg.segments().filter(|s| s.name == "OBX") {
                acc += obx
                    .field(3)
                    .and_then(|f| f.component(1))
                    .map_or(0, |c| c.raw_value().len());
                acc += obx.field(5).map_or(0, |f| f.raw_value().len());
                acc += obx
                    .field(6)
                    .and_then(|f| f.component(1))
                    .map_or(0, |c| c.raw_value().len());
            }
        }
        black_box(acc);
        rate(
            "hl7-parser 0.3 parse + extract",
            bytes,
            N,
            t.elapsed().as_secs_f64(),
        );
    }
}
