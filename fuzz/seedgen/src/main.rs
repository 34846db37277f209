//! Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ from the demo
//! files (demo/*.hl7, demo/patients.csv) and a few small ANS examples (../shared, read here
//! only, never by the product). Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml -p dmpflow-fuzz-seeds`. The seeds are
//! committed; re-running rewrites them (the wire payloads from the current normalize).

use std::fs;
use std::path::{Path, PathBuf};

use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized, Quarantined, wire};

/// Messages kept per demo file: enough to cover every message kind, small enough to keep
/// the seeds (committed) well under 1 MB.
const PER_FILE: usize = 12;

/// Feed of each demo file; the byte that selects it in the `normalize` target's input.
const DEMO: [(&str, Feed, u8); 5] = [
    ("lab", Feed::Lab, 0),
    ("imaging", Feed::Imaging, 1),
    ("pharmacy", Feed::Pharmacy, 2),
    ("cancer", Feed::Cancer, 3),
    ("identity", Feed::Identity, 4),
];

/// Small ANS HL7 v2 examples (the base64 ones are hundreds of KB: left out), with the feed
/// byte used for them in the `normalize` target.
const ANS: [(&str, u8); 7] = [
    (
        "ORU/Transmission initiale ORU/message_ORU_CR_Bio_INIT_N1_N3.hl7",
        0,
    ),
    ("ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_N3.er7", 0),
    ("ORU/Suppression ORU/message_ORU_CR_Bio_DEL_N1_N3.er7", 0),
    (
        "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1.er7",
        1,
    ),
    ("MDM/Remplacement MDM/message_MDM_CR_Radio_RPLC_N1.er7", 1),
    ("MDM/Suppression MDM/message_MDM_CR_Radio_DEL_N1.er7", 1),
    ("ORU/Transmission initiale ORU/ack.hl7", 0),
];

/// CI-SIS example CDAs given to `embedded_cda` (the two smallest).
const CISIS: [&str; 2] = [
    "eDISP-MED_2024.01.xml",
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml",
];

/// A `render_cda` seed whose narrative holds every StrucDocText element the renderer maps,
/// nested sections, an observationMedia PDF and hostile markup (script, XHTML, handlers).
const NARRATIVE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xhtml="http://www.w3.org/1999/xhtml">
<title>Narratif</title><effectiveTime value="20250302083000+0100"/>
<recordTarget><patientRole><patient><name><family qualifier="BR">MARTIN</family><given>Jeanne</given></name><administrativeGenderCode code="F"/><birthTime value="19800215"/></patient></patientRole></recordTarget>
<author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567899"/><assignedPerson><name><given>Paul</given><family>LEROY</family></name></assignedPerson><representedOrganization><name>Labo</name></representedOrganization></assignedAuthor></author>
<component><structuredBody><component><section><title>Résultats</title><text>
<paragraph styleCode="Bold Italics" onclick="alert(1)">Glycémie <content styleCode="Underline" revised="delete">à jeun</content><br/>H<sub>2</sub>O m<sup>2</sup><linkHtml href="javascript:alert(1)">lien</linkHtml></paragraph>
<list listType="ordered"><caption>Liste</caption><item>un<footnote>note</footnote><footnoteRef IDREF="f"/></item></list>
<table><caption>Bilan</caption><colgroup><col/></colgroup><thead><tr><th colspan="2">Analyse</th></tr></thead><tbody><tr><td rowspan="1">Na</td><td>140</td></tr></tbody></table>
<renderMultiMedia referencedObject="m1"><caption>image</caption></renderMultiMedia>
<script>alert(1)</script><xhtml:img src="http://evil.example/x.png" onerror="alert(1)"/><![CDATA[<script>]]>&lt;b&gt;
</text>
<entry><observationMedia ID="m1"><value mediaType="application/pdf" representation="B64">JVBERi0xLjQKJSB0ZXN0Cg==</value></observationMedia></entry>
<component><section><title>Sous-partie</title><text><paragraph>B</paragraph></text></section></component>
</section></component></structuredBody></component>
</ClinicalDocument>
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

/// The `<recordTarget>...</recordTarget>` block of a CDA.
fn record_target(xml: &str) -> Option<(usize, usize)> {
    let start = xml.find("<recordTarget")?;
    let end = xml[start..].find("</recordTarget>")? + start + "</recordTarget>".len();
    Some((start, end))
}

fn main() {
    let root = PathBuf::from(".");
    let shared = root.join("../shared");
    let seeds = root.join("fuzz/seeds");
    assert!(root.join("demo").is_dir(), "run from the repository root");
    if seeds.exists() {
        fs::remove_dir_all(&seeds).expect("clear fuzz/seeds");
    }
    let cfg = Config::default();
    let mut cancer_cdas: Vec<String> = Vec::new();
    let mut wire_n = 0;
    let mut mllp_stream = Vec::new();

    for (name, feed, byte) in DEMO {
        let file = fs::read(root.join(format!("demo/{name}.hl7"))).expect("demo file");
        let messages: Vec<&[u8]> = dmpflow_ingest::split_messages(&file)
            .filter_map(Result::ok)
            .map(|m| m.bytes)
            .take(PER_FILE)
            .collect();
        for (i, msg) in messages.iter().enumerate() {
            let canonical = dmpflow_ingest::canonical_segments(msg);
            write(
                &seeds.join("hl7_reader"),
                &format!("demo-{name}-{i:02}.hl7"),
                &canonical,
            );
            let mut sel = vec![byte];
            sel.extend_from_slice(&canonical);
            write(
                &seeds.join("normalize"),
                &format!("demo-{name}-{i:02}.bin"),
                &sel,
            );
            if i < 2 {
                mllp_stream.extend(dmpflow_ingest::encode_frame(&canonical));
                mllp_stream.extend_from_slice(b"\r\n");
            }
            let Ok(items) = normalize(feed, &canonical, &cfg) else {
                continue;
            };
            for item in items {
                if let Normalized::Document(d) = &item
                    && feed == Feed::Cancer
                {
                    cancer_cdas.push(d.cda.as_xml().expect("normalize writes XML").to_owned());
                }
                if i >= 1 {
                    continue;
                }
                // Every layout `wire::decode` reads: XML tail, packed tail, plain JSON, and
                // the quarantine cases.
                write(
                    &seeds.join("wire_decoder"),
                    &format!("{wire_n:02}-xml"),
                    &wire::encode(&item),
                );
                // The plain-JSON layout older builds wrote (a document with its CDA inline).
                let plain = serde_json::to_vec(&item).expect("Normalized serialises");
                write(
                    &seeds.join("wire_decoder"),
                    &format!("{wire_n:02}-plain"),
                    &plain,
                );
                if let Normalized::Document(d) = &item {
                    let mut packed = d.clone();
                    packed.cda.pack();
                    let packed = Normalized::Document(packed);
                    let payload = wire::encode(&packed);
                    write(
                        &seeds.join("wire_decoder"),
                        &format!("{wire_n:02}-packed"),
                        &payload,
                    );
                    let (head, tail) = wire::split(&payload).expect("own payload splits");
                    let case = Quarantined {
                        reason: "ins.unknown".into(),
                        detail: "no registry entry".into(),
                        item: head,
                    };
                    let q = wire::encode_quarantined(&case, tail);
                    write(
                        &seeds.join("wire_decoder"),
                        &format!("{wire_n:02}-quarantine"),
                        &q,
                    );
                }
                wire_n += 1;
            }
        }
    }
    // A bare file (no MLLP) for the splitter, and the framed stream.
    write(
        &seeds.join("mllp_decoder"),
        "framed",
        &[&[40u8, 1][..], &mllp_stream].concat(),
    );
    let identity = fs::read(root.join("demo/identity.hl7")).expect("demo file");
    write(
        &seeds.join("mllp_decoder"),
        "bare",
        &[&[200u8, 2][..], &identity].concat(),
    );

    for (path, byte) in ANS {
        let bytes = fs::read(shared.join("hl7v2-examples").join(path)).expect("ANS example");
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(' ', "_");
        write(&seeds.join("hl7_reader"), &format!("ans-{name}"), &bytes);
        write(
            &seeds.join("normalize"),
            &format!("ans-{name}"),
            &[&[byte][..], &bytes].concat(),
        );
        if byte == 1 {
            write(
                &seeds.join("normalize"),
                &format!("ans-cancer-{name}"),
                &[&[3u8][..], &bytes].concat(),
            );
        }
    }

    // embedded_cda: the demo cancer CDAs and two CI-SIS examples, each given the
    // recordTarget of the first (the patient of the target's fixed MDM), so that the
    // fuzzer starts from documents that are accepted end to end.
    let template = cancer_cdas
        .first()
        .expect("demo cancer CDAs normalise")
        .clone();
    let (ts, te) = record_target(&template).expect("recordTarget");
    let patient = &template[ts..te];
    let mut cdas: Vec<(String, String)> = cancer_cdas
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("demo-cancer-{i:02}.xml"), c.clone()))
        .collect();
    for name in CISIS {
        let xml =
            fs::read_to_string(shared.join("cisis/examples").join(name)).expect("CI-SIS example");
        cdas.push((format!("cisis-{name}"), xml));
    }
    for (name, xml) in cdas {
        let xml = match record_target(&xml) {
            Some((s, e)) => format!("{}{}{}", &xml[..s], patient, &xml[e..]),
            None => xml,
        };
        write(&seeds.join("embedded_cda"), &name, xml.as_bytes());
        // render_cda: the same documents (header, narrative, an N1's PDF).
        write(&seeds.join("render_cda"), &name, xml.as_bytes());
    }
    write(
        &seeds.join("render_cda"),
        "narrative.xml",
        NARRATIVE.as_bytes(),
    );

    let csv = fs::read_to_string(root.join("demo/patients.csv")).expect("demo CSV");
    for (i, line) in csv.lines().enumerate() {
        write(
            &seeds.join("patients_csv"),
            &format!("demo-{i:02}.csv"),
            line.as_bytes(),
        );
    }
    // Quoted fields and a Corsican INS (2A), which the demo lines do not show.
    write(
        &seeds.join("patients_csv"),
        "quoted.csv",
        b"\"1 23 45 2A 012 345 \",1.2.250.1.213.1.4.10,\"DE LA \"\"TOUR\"\"\",\"MARIE ANNE\",1980-02-29,F,2A004,VALI,false",
    );
}
