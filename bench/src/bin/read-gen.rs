//! bench-read-gen: the documents of the read benchmark (issue #13), as CSV for
//! `COPY documents (...) FROM STDIN CSV`. Rows look like what the store files: one row per
//! version, a CI-SIS-like CDA of a few KB packed exactly as normalize packs it
//! (`PackedCda::pack`: zstd level 1, SHA-256 and size of the XML), so ITI-68 inflates and
//! checks real bytes. PostgreSQL has no zstd, hence a generator instead of pure SQL.
//!
//! Shape (deterministic for a seed): patients drawn uniformly among `--patients` (INS
//! `100000000000000 + k`, the registry rows the script inserts), several type codes, ~10%
//! MASQUE_PS, ~5% of sets with a replaced (superseded) first version.
//!
//! Usage: bench-read-gen --docs 1000000 --patients 200000 | psql -c "COPY documents (...) ..."
//! The column list to COPY into is printed by `--columns`.

use std::io::{BufWriter, Write};

use anyhow::Result;
use clap::Parser;
use dmpflow_schemas::PackedCda;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    docs: u64,
    #[arg(long, default_value_t = 200_000)]
    patients: u64,
    #[arg(long, default_value_t = 13)]
    seed: u64,
    /// Print the COPY column list and exit.
    #[arg(long)]
    columns: bool,
}

/// The columns written, in order.
const COLUMNS: &str = "unique_id, set_id, version, seq, lifecycle, status, target_unique_id, \
    type_code, class_code, format_code, title, patient_ins, patient_ins_oid, author_person_id, \
    author_organisation_id, creation_time, service_start, service_stop, confidentiality, \
    visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, \
    source_control_id, source_position, source_topic, source_partition, source_offset, \
    stored_at, source_content_hash, practice_setting";

/// The test INS OID the stack accepts (DMPFLOW_ACCEPT_TEST_OIDS) and the search names.
const INS_OID: &str = "1.2.250.1.213.1.4.10";

/// (type code, class code, title, feed): the flows dmpflow files.
type Kind = (&'static str, &'static str, &'static str, &'static str);
const TYPES: &[Kind] = &[
    ("11502-2", "10", "Compte rendu d'examens biologiques", "lab"),
    ("11502-2", "10", "Compte rendu d'examens biologiques", "lab"),
    ("11502-2", "10", "Compte rendu d'examens biologiques", "lab"),
    (
        "18748-4",
        "20",
        "Compte rendu d'imagerie medicale",
        "imaging",
    ),
    ("60593-1", "30", "Dispensation medicamenteuse", "pharmacy"),
    ("60593-1", "30", "Dispensation medicamenteuse", "pharmacy"),
    ("75496-0", "40", "Fiche RCP cancerologie", "cancer"),
];

/// splitmix64: a few lines, deterministic, plenty for picking shapes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The INS of patient `k`, as the script inserts it into `patients`.
fn ins(k: u64) -> String {
    format!("{}", 100_000_000_000_000u64 + k)
}

/// A CR-BIO-shaped CDA of ~3-4 KB: header, patient, author, a few result lines whose values
/// vary so that every body packs differently.
fn cda(
    id: &str,
    set: &str,
    version: u32,
    ins: &str,
    (ty, _, title, _): Kind,
    t: &str,
    rng: &mut Rng,
) -> String {
    let mut x = String::with_capacity(4096);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n");
    x.push_str("  <realmCode code=\"FR\"/>\n  <typeId root=\"2.16.840.1.113883.1.3\" extension=\"POCD_HD000040\"/>\n");
    x.push_str("  <templateId root=\"2.16.840.1.113883.2.8.2.1\"/>\n  <templateId root=\"1.2.250.1.213.1.1.1.1\"/>\n  <templateId root=\"1.3.6.1.4.1.19376.1.3.3\"/>\n");
    x.push_str(&format!("  <id root=\"{id}\"/>\n  <code code=\"{ty}\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"{title}\"/>\n  <title>{title}</title>\n"));
    x.push_str(&format!("  <effectiveTime value=\"{t}\"/>\n  <confidentialityCode code=\"N\" codeSystem=\"2.16.840.1.113883.5.25\"/>\n  <languageCode code=\"fr-FR\"/>\n  <setId root=\"{set}\"/>\n  <versionNumber value=\"{version}\"/>\n"));
    x.push_str(&format!("  <recordTarget><patientRole><id root=\"{INS_OID}\" extension=\"{ins}\"/><patient><name><family qualifier=\"BR\">PATIENT{ins}</family><given>JEANNE</given></name><administrativeGenderCode code=\"F\"/><birthTime value=\"19{:02}0{}1{}\"/></patient></patientRole></recordTarget>\n", rng.below(99), 1 + rng.below(9), rng.below(10)));
    x.push_str("  <author><time value=\"20240101120000+0100\"/><assignedAuthor><id root=\"1.2.250.1.71.4.2.1\" extension=\"801234567897\"/><assignedPerson><name><family>MEDECIN</family><given>PAUL</given></name></assignedPerson><representedOrganization><id root=\"1.2.250.1.71.4.2.2\" extension=\"1120459876\"/><name>LABORATOIRE DE BIOLOGIE</name></representedOrganization></assignedAuthor></author>\n");
    x.push_str("  <custodian><assignedCustodian><representedCustodianOrganization><id root=\"1.2.250.1.213.4.1\"/><name>DMP</name></representedCustodianOrganization></assignedCustodian></custodian>\n");
    x.push_str("  <component><structuredBody><component><section><code code=\"18719-5\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Chimie\"/><title>Chimie</title><text><table><tbody>\n");
    let lines = [
        ("2345-7", "Glucose", "g/L"),
        ("2160-0", "Creatinine", "umol/L"),
        ("2951-2", "Sodium", "mmol/L"),
        ("2823-3", "Potassium", "mmol/L"),
        ("1742-6", "ALAT", "UI/L"),
        ("718-7", "Hemoglobine", "g/dL"),
        ("6690-2", "Leucocytes", "G/L"),
        ("777-3", "Plaquettes", "G/L"),
    ];
    for (code, label, unit) in lines {
        let v = rng.below(10_000);
        x.push_str(&format!(
            "    <tr><td>{label}</td><td>{}.{:02}</td><td>{unit}</td><td ID=\"r{code}\">LOINC {code}</td></tr>\n",
            v / 100,
            v % 100
        ));
    }
    x.push_str("  </tbody></table></text>\n");
    for (code, label, unit) in lines {
        let v = rng.below(10_000);
        x.push_str(&format!(
            "    <entry><observation classCode=\"OBS\" moodCode=\"EVN\"><code code=\"{code}\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"{label}\"/><statusCode code=\"completed\"/><effectiveTime value=\"{t}\"/><value xsi:type=\"PQ\" value=\"{}.{:02}\" unit=\"{unit}\"/><interpretationCode code=\"N\"/></observation></entry>\n",
            v / 100,
            v % 100
        ));
    }
    x.push_str("  </section></component></structuredBody></component>\n</ClinicalDocument>\n");
    x
}

/// One CSV field: quoted when it must be (the only specials we write are `"` and `,`).
fn field(out: &mut Vec<u8>, v: Option<&str>) {
    if let Some(v) = v {
        if v.contains([',', '"', '\n']) {
            out.push(b'"');
            out.extend_from_slice(v.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else if v.is_empty() {
            out.extend_from_slice(b"\"\"");
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
    // None: nothing between the commas is NULL in COPY CSV.
}

#[allow(clippy::too_many_arguments)]
fn row(
    out: &mut Vec<u8>,
    n: u64,
    id: &str,
    set: &str,
    version: u32,
    status: &str,
    target: Option<&str>,
    patient: &str,
    ty: Kind,
    masked: bool,
    rng: &mut Rng,
) {
    let day = rng.below(3650);
    let (y, m, d) = (
        2015 + day / 365,
        1 + (day % 365) / 31,
        1 + (day % 31).min(27),
    );
    let t = format!(
        "{y}{m:02}{d:02}{:02}{:02}00+0100",
        7 + rng.below(12),
        rng.below(60)
    );
    let xml = cda(id, set, version, patient, ty, &t, rng);
    let packed = PackedCda::pack(&xml);
    let hex: String = {
        let mut s = String::with_capacity(2 + packed.bytes.len() * 2);
        s.push_str("\\x");
        // A table, not format!: a billion bytes go through here at 1 M documents.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in &packed.bytes {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    };
    let control = format!("RB{n}");
    let author = format!("80{:010}", rng.below(50_000));
    let version_s = version.to_string();
    let seq = version_s.clone();
    let lifecycle = if version == 1 { "initial" } else { "replace" };
    let vis = if masked { "[\"MASQUE_PS\"]" } else { "[]" };
    let size = packed.size.to_string();
    let pos = n.to_string();
    let fields: [Option<&str>; 34] = [
        Some(id),
        Some(set),
        Some(&version_s),
        Some(&seq),
        Some(lifecycle),
        Some(status),
        target,
        Some(ty.0),
        Some(ty.1),
        Some("urn:ihe:lab:xd-lab:2008"),
        Some(ty.2),
        Some(patient),
        Some(INS_OID),
        Some(&author),
        Some("1120459876"),
        Some(&t),
        Some(&t),
        None,
        Some("N"),
        Some(vis),
        Some("received"),
        Some(&hex),
        Some(&packed.sha256),
        Some(&size),
        Some(ty.3),
        Some("BENCH^read"),
        Some(&control),
        Some("0"),
        Some("dmp.feed.bench"),
        Some("0"),
        Some(&pos),
        Some("2026-01-01T00:00:00.000000Z"),
        Some(&packed.sha256),
        Some("AMBULATOIRE"),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        field(out, *f);
    }
    out.push(b'\n');
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.columns {
        println!("{COLUMNS}");
        return Ok(());
    }
    let mut rng = Rng(args.seed);
    let stdout = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut buf = Vec::with_capacity(8192);
    let (mut n, mut sets) = (0u64, 0u64);
    while n < args.docs {
        let patient = ins(rng.below(args.patients));
        let ty = TYPES[rng.below(TYPES.len() as u64) as usize];
        let masked = rng.below(10) == 0;
        let set = format!("1.2.250.1.999.13.2.{sets}");
        sets += 1;
        // ~5% of sets were replaced once: v1 superseded, v2 current pointing at it.
        let replaced = rng.below(20) == 0 && n + 2 <= args.docs;
        let first = format!("1.2.250.1.999.13.1.{n}");
        let status = if replaced { "superseded" } else { "current" };
        buf.clear();
        row(
            &mut buf, n, &first, &set, 1, status, None, &patient, ty, masked, &mut rng,
        );
        n += 1;
        if replaced {
            let second = format!("1.2.250.1.999.13.1.{n}");
            row(
                &mut buf,
                n,
                &second,
                &set,
                2,
                "current",
                Some(&first),
                &patient,
                ty,
                masked,
                &mut rng,
            );
            n += 1;
        }
        w.write_all(&buf)?;
    }
    w.flush()?;
    eprintln!(
        "bench-read-gen: documents={n} sets={sets} patients={}",
        args.patients
    );
    Ok(())
}
