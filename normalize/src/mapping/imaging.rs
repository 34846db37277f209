//! Imaging report as text (ORU^R01: OBR exam, OBX TX/FT report lines, optional DICOM
//! Study Instance UID) → `ImagingReport` → CR-IMG via `cda::imaging::write`.

use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{Cda, Document, Normalized};

use super::common::{
    Ctx, HeaderParts, IMAGING_KIND, author_and_org, coded, document_header, dtm, generated_meta,
    interpreter, is_meta_obx, missing, professional, segment_missing, some_professional,
    visibility,
};
use super::pid::patient;
use crate::hl7::{Message, Segment};
use crate::model::ImagingReport;

/// DICOM modalities accepted from OBR-24 (diagnostic service section).
const MODALITIES: &[&str] = &[
    "CR", "CT", "DX", "MG", "MR", "NM", "OT", "PT", "RF", "US", "XA", "IO", "PX", "BMD",
];

/// An OBX holding the Study Instance UID: OBX-3 = `113014^DICOM Study^DCM`, OBX-2 RP or ST.
fn is_study_uid(obx: &Segment<'_>) -> bool {
    let id = obx.field(3);
    id.component(1).raw() == "113014"
        && matches!(id.component(3).raw(), "DCM" | "")
        && matches!(obx.field(2).raw(), "RP" | "ST")
}

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
    super::limits::check_generated(msg, ctx.cfg)?;
    let report = report(ctx, msg)?;
    let meta = generated_meta(ctx, &report.header, &IMAGING_KIND, visibility(msg), 0);
    let cda = crate::cda::imaging::write(&report);
    super::limits::check_size(cda.len(), ctx.cfg)?;
    Ok(vec![Normalized::Document(Box::new(Document {
        meta,
        cda: Cda::Xml(cda),
        entries: Vec::new(),
    }))])
}

/// The typed report of the message.
pub fn report(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<ImagingReport, Reject> {
    let patient = patient(msg)?;
    let orc = msg.segment("ORC");
    let obr = msg.segment("OBR").ok_or_else(|| segment_missing("OBR"))?;
    let mut study_instance_uid = msg
        .segment("ZDS")
        .map(|z| z.field(1).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty());
    let mut paragraphs = Vec::new();
    let mut statuses = Vec::new();
    for obx in msg.segments("OBX") {
        if is_meta_obx(&obx) || super::common::is_ed(&obx) {
            continue;
        }
        if is_study_uid(&obx) {
            let uid = obx.field(5).component(1).decoded().trim().to_string();
            if !uid.is_empty() {
                study_instance_uid = Some(uid);
            }
            continue;
        }
        statuses.push(obx.field(11).raw().trim());
        if matches!(obx.field(2).raw(), "TX" | "FT" | "ST") {
            let text = obx
                .field(5)
                .repetitions()
                .map(|r| r.decoded().into_owned())
                .collect::<Vec<_>>()
                .join("\n");
            if !text.trim().is_empty() {
                paragraphs.push(text);
            }
        }
    }
    let orc1 = orc.map(|o| o.field(1).raw().trim()).unwrap_or("");
    let statuses: Vec<&str> = statuses.into_iter().filter(|s| !s.is_empty()).collect();
    let lifecycle = super::common::generated_lifecycle(orc1, &statuses)?;
    if paragraphs.is_empty() && lifecycle != dmpflow_schemas::Lifecycle::Delete {
        return Err(segment_missing("OBX with report text (TX/FT)"));
    }
    let order_id = orc
        .map(|o| o.field(2).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| obr.field(2).component(1).decoded().trim().to_string());
    if order_id.is_empty() {
        return Err(missing("ORC-2/OBR-2 (placer order number)"));
    }
    let accession_number = [obr.field(18), obr.field(3)]
        .into_iter()
        .map(|f| f.component(1).decoded().trim().to_string())
        .find(|s| !s.is_empty());
    let modality = Some(obr.field(24).component(1).raw().trim().to_string())
        .filter(|m| MODALITIES.contains(&m.as_str()));
    let prescriber = orc
        .and_then(|o| some_professional(professional(o.field(12))))
        .or_else(|| some_professional(professional(obr.field(16))));
    let (author, organisation) = author_and_org(
        msg,
        some_professional(interpreter(obr.field(32))),
        "author (PRT SB or OBR-32)",
    )?;
    let exam_time = dtm(obr.field(7), "OBR-7")?;
    let effective_time = dtm(obr.field(22), "OBR-22")?.unwrap_or_else(|| ctx.time.clone());
    let header = document_header(
        ctx,
        HeaderParts {
            order_id: order_id.clone(),
            kind: &IMAGING_KIND,
            lifecycle,
            patient,
            author,
            organisation,
            sector: "SA29",
            effective_time,
            service_start: exam_time.clone(),
            service_stop: exam_time,
        },
        0,
    );
    let exam = coded(obr.field(4));
    let exam_label = if exam.display.is_empty() {
        &exam.code
    } else {
        &exam.display
    };
    if crate::cda::imaging::body_site(exam_label).is_none() {
        return Err(Reject::new(
            Reason::ImagingSiteUnknown,
            "OBR-4: the exam label names no anatomical site CR-IMG can code",
        ));
    }
    Ok(ImagingReport {
        header,
        order_id,
        study_instance_uid,
        accession_number,
        exam,
        modality,
        paragraphs,
        prescriber,
    })
}
