//! The DMP's pages: the documents list (grouped by domain, newest first), one document as a
//! readable page (rendered from its CDA by `dmpflow_render`), its embedded PDFs, the lab
//! results (a table and a chart per analyte), the access history, and the patient's
//! mask/unmask of a document. Each page traces before it shows, through the same functions
//! as the FHIR API (`open_dmp`, `readable_by`, `write_trace`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use dmpflow_normalize::mapping::{domain_of, xds_types};
use dmpflow_render::{Limits, PdfProblem, ResultPoint, render_document, results_chart};
use dmpflow_schemas::Feed;
use dmpflow_store::{DocumentDetail, MaskingChange, ResultRow, TraceRow};
use maud::{Markup, PreEscaped, html};

use super::AppState;
use super::page::{PageError, User, as_user, field, form, html_page, layout, see_other};
use crate::authz::{Principal, Purpose, Statuses, Visibility, filter};
use crate::fhir::datetime;
use crate::server::documents::{Dmp, instant, open_dmp, readable_by};
use crate::server::http::{ApiError, write_trace};

/// Most access-history rows a page shows (the newest).
const HISTORY_ROWS: usize = 500;

/// The DMP a patient or representative sees: their own, or the one they represent.
fn own_ins(u: &User) -> Result<&str, PageError> {
    match u.principal() {
        Principal::Patient { ins } => Ok(ins),
        Principal::Representative {
            represented_ins, ..
        } => Ok(represented_ins),
        Principal::Professional { .. } => Err(PageError::status(
            StatusCode::FORBIDDEN,
            "Page réservée au patient",
            "Cette page est celle du patient. Recherchez un patient par son INS.",
        )),
    }
}

/// The purpose of a professional's access to the DMP of `ins`: break-the-glass when they
/// declared it for this DMP in this session.
pub(super) fn purpose_for(u: &User, ins: &str) -> Purpose {
    match &u.session.break_glass {
        Some((bg_ins, reason)) if bg_ins == ins => Purpose::BreakTheGlass {
            reason: reason.clone(),
        },
        _ => Purpose::Normal,
    }
}

/// A portal trace row: as the API's, with the page named as the query.
fn trace(u: &User, purpose: &Purpose, ins: &str, action: &str, page: &str) -> TraceRow {
    crate::server::http::trace_for(u.principal(), purpose, ins, action, Some(page))
}

/// Opens the DMP of `ins` for the page `page` (a denial is traced and answered 403).
pub(super) async fn open(
    state: &AppState,
    u: &User,
    ins: &str,
    page: &str,
) -> Result<(Dmp, TraceRow), PageError> {
    let purpose = purpose_for(u, ins);
    let t = trace(u, &purpose, ins, "search", page);
    let dmp = open_dmp(state, u.principal(), &purpose, ins, &t, ApiError::forbidden).await?;
    Ok((dmp, t))
}

/// The current documents of `dmp` the grant shows, newest first.
pub(super) fn visible_docs(dmp: &Dmp) -> Vec<&DocumentDetail> {
    let visible = filter(&dmp.grant, &dmp.views, Statuses::CURRENT, &dmp.views);
    let ids: std::collections::HashSet<&str> = visible.ids().collect();
    let mut docs: Vec<&DocumentDetail> = dmp
        .docs
        .iter()
        .filter(|d| ids.contains(d.row.unique_id.as_str()))
        .collect();
    docs.sort_by(|a, b| {
        instant(&b.row.creation_time)
            .cmp(&instant(&a.row.creation_time))
            .then_with(|| b.row.unique_id.cmp(&a.row.unique_id))
    });
    docs
}

/// The portal's groups, in the order shown.
const GROUPS: [(Feed, &str); 5] = [
    (Feed::Lab, "Biologie"),
    (Feed::Imaging, "Imagerie"),
    (Feed::Pharmacy, "Médicaments délivrés et pharmacie"),
    (Feed::Cancer, "Cancérologie"),
    (Feed::Documents, "Courriers et autres documents"),
];

fn masked(d: &DocumentDetail) -> bool {
    Visibility::from_codes(d.effective_visibility().iter().map(String::as_str)).masked_ps
}

/// A date as the pages show it.
pub(super) fn fr(ts: &str) -> String {
    dmpflow_render::french_date(ts).unwrap_or_else(|| ts.to_owned())
}

/// The documents list, grouped; `patient_controls`: the mask/unmask buttons.
pub(super) fn document_list(
    docs: &[&DocumentDetail],
    csrf: &str,
    patient_controls: bool,
) -> Markup {
    html! {
        @if docs.is_empty() {
            p { "Aucun document à afficher." }
        }
        @for (feed, label) in GROUPS {
            @let group: Vec<&&DocumentDetail> = docs.iter().filter(|d| domain_of(&d.row.type_code) == feed).collect();
            @if !group.is_empty() {
                section.group aria-label=(label) {
                    h2 { (label) " " span.count { "(" (group.len()) ")" } }
                    ul.docs {
                        @for d in group {
                            li {
                                a href={ "/portal/doc/" (d.row.unique_id) } {
                                    span.title { (if d.row.title.is_empty() { "Document sans titre" } else { d.row.title.as_str() }) }
                                }
                                span.meta {
                                    (fr(&d.row.creation_time))
                                    @if let Some(t) = xds_types::lookup(&d.row.type_code) { " · " (t.display) }
                                }
                                @if masked(d) {
                                    span.badge { "Masqué aux professionnels" }
                                }
                                @if patient_controls {
                                    (mask_form(d, csrf))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn mask_form(d: &DocumentDetail, csrf: &str) -> Markup {
    let (action, label) = if masked(d) {
        ("unmask", "Rendre visible aux professionnels")
    } else {
        ("mask", "Masquer aux professionnels")
    };
    html! {
        form.inline method="post" action={ "/portal/doc/" (d.row.unique_id) "/" (action) } {
            input type="hidden" name="csrf" value=(csrf);
            button.secondary type="submit" { (label) }
        }
    }
}

/// GET `/portal/dmp`: the patient's documents.
pub(super) async fn documents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    as_user!(state, headers, |u| documents_page(&state, u))
}

async fn documents_page(state: &AppState, u: &User) -> Result<Response, PageError> {
    let ins = own_ins(u)?.to_owned();
    let (dmp, t) = open(state, u, &ins, "portal:documents").await?;
    let docs = visible_docs(&dmp);
    let ids = docs.iter().map(|d| d.row.unique_id.clone()).collect();
    write_trace(state, t, true, dmp.grant.reason().as_str(), ids).await?;
    let body = html! {
        h1 { "Mes documents" }
        p.lead { "Les plus récents en premier. Un document masqué reste visible pour vous, "
            "pour votre médecin traitant et pour son auteur." }
        (document_list(&docs, &u.session.csrf, true))
    };
    Ok(html_page(
        StatusCode::OK,
        layout(state, "Mes documents", Some(u), body),
    ))
}

/// The document's DMP INS for the purpose of a professional: the declared break-the-glass
/// applies only to the DMP it was declared for (a document filed under an INS merged into
/// it belongs to it too).
async fn purpose_for_doc(state: &AppState, u: &User, id: &str) -> Result<Purpose, PageError> {
    let Some((bg_ins, _)) = &u.session.break_glass else {
        return Ok(Purpose::Normal);
    };
    let store = state.store();
    let Some(doc) = store
        .document_meta(id)
        .await
        .map_err(|_| ApiError::internal("document_meta"))?
    else {
        return Ok(Purpose::Normal);
    };
    let mut ins = doc.row.patient_ins;
    if &ins != bg_ins
        && let Some(survivor) = store
            .get_patient(&ins)
            .await
            .map_err(|_| ApiError::internal("get_patient"))?
            .and_then(|r| r.merged_into)
    {
        ins = survivor;
    }
    Ok(purpose_for(u, &ins))
}

/// GET `/portal/doc/{id}`: one document as a page.
pub(super) async fn document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    as_user!(state, headers, |u| document_page(&state, u, &id))
}

/// A document the user may read, the INS of the DMP holding it (after a merge, the
/// survivor's, as the rules resolved it) and its CDA, the read traced before anything is
/// shown.
async fn read_cda(
    state: &AppState,
    u: &User,
    id: &str,
) -> Result<(DocumentDetail, String, String), PageError> {
    let purpose = purpose_for_doc(state, u, id).await?;
    let (doc, patient, t, reason) = readable_by(state, u.principal(), &purpose, id).await?;
    let (cda, _sha) = state
        .store()
        .get_document_cda_checked(id)
        .await
        .map_err(|_| ApiError::internal("get_document_cda"))?
        .ok_or_else(PageError::not_found)?;
    write_trace(state, t, true, reason.as_str(), vec![id.to_owned()]).await?;
    Ok((doc, patient.ins, cda))
}

async fn document_page(state: &AppState, u: &User, id: &str) -> Result<Response, PageError> {
    let (doc, dmp_ins, cda) = read_cda(state, u, id).await?;
    let rendered = render_document(cda.as_bytes(), &Limits::default());
    let is_patient = !matches!(u.principal(), Principal::Professional { .. });
    let title = if doc.row.title.is_empty() {
        "Document".to_owned()
    } else {
        doc.row.title.clone()
    };
    let body = html! {
        p.back { a href=(back_link(u, &dmp_ins)) { "← Retour à la liste" } }
        @match &rendered {
            Err(e) => {
                h1 { (title) }
                p.error { "Ce document n'a pas pu être affiché (" code { (render_code(e)) } "). " }
            }
            Ok(r) => {
                article.document {
                    h1 { (if r.title.is_empty() { title.as_str() } else { r.title.as_str() }) }
                    dl.header {
                        @if let Some(d) = &r.date { dt { "Date" } dd { (d) } }
                        @if !r.patient.name.is_empty() {
                            dt { "Patient" }
                            dd {
                                (r.patient.name)
                                @if let Some(b) = &r.patient.birth_name { " (né(e) " (b) ")" }
                                @if let Some(b) = &r.patient.birth_date { ", né(e) le " (b) }
                                @if let Some(s) = r.patient.sex { ", " (s) }
                            }
                        }
                        @for a in &r.authors {
                            dt { "Auteur" }
                            dd {
                                (a.name.as_deref().unwrap_or("Auteur non nommé"))
                                @if let Some(o) = &a.organisation { " — " (o) }
                            }
                        }
                        @if let Some(t) = xds_types::lookup(&doc.row.type_code) { dt { "Type" } dd { (t.display) } }
                    }
                    @if masked(&doc) { p.badge { "Masqué aux professionnels" } }
                    @if is_patient { (mask_form(&doc, &u.session.csrf)) }
                    @if !r.pdfs.is_empty() {
                        section.pdfs aria-label="Documents PDF" {
                            h2 { "Document PDF" }
                            ul {
                                @for (n, pdf) in r.pdfs.iter().enumerate() {
                                    li {
                                        @match &pdf.content {
                                            Ok(bytes) => {
                                                a href={ "/portal/doc/" (id) "/pdf/" (n) } download { "Télécharger le PDF " (n + 1) }
                                                " (" (bytes.len() / 1024 + 1) " Ko)"
                                            }
                                            Err(p) => { "PDF " (n + 1) " non disponible : " (pdf_problem(*p)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @for s in &r.sections {
                        section class={ "s" (s.level.min(4)) } {
                            @if !s.title.is_empty() {
                                @if s.level <= 1 { h2 { (s.title) } } @else { h3 { (s.title) } }
                            }
                            // Safe HTML by construction (dmpflow_render's allow-list).
                            (PreEscaped(&s.html))
                        }
                    }
                    @if r.truncated { p.note { "Document long : la fin n'est pas affichée ici." } }
                }
            }
        }
    };
    Ok(html_page(
        StatusCode::OK,
        layout(state, &title, Some(u), body),
    ))
}

/// The list the page came from: for a professional, the DMP's page (the survivor's INS
/// after a merge: the INS the document was filed under would open a merged record).
fn back_link(u: &User, dmp_ins: &str) -> String {
    match u.principal() {
        Principal::Professional { .. } => format!("/portal/pro?ins={dmp_ins}"),
        _ => "/portal/dmp".to_owned(),
    }
}

fn render_code(e: &dmpflow_render::RenderError) -> &'static str {
    match e {
        dmpflow_render::RenderError::TooLarge { .. } => "render.too_large",
        dmpflow_render::RenderError::NotUtf8 => "render.not_utf8",
        dmpflow_render::RenderError::Refused { code, .. } => code,
    }
}

fn pdf_problem(p: PdfProblem) -> &'static str {
    match p {
        PdfProblem::TooLarge => "trop volumineux",
        PdfProblem::Missing => "absent du document",
        PdfProblem::NotBase64 | PdfProblem::NotPdf => "illisible",
    }
}

/// GET `/portal/doc/{id}/pdf/{n}`: an embedded PDF, as a download (traced as a read).
pub(super) async fn pdf(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, usize)>,
) -> Response {
    as_user!(state, headers, |u| pdf_answer(&state, u, &id, n))
}

async fn pdf_answer(state: &AppState, u: &User, id: &str, n: usize) -> Result<Response, PageError> {
    let (_, _, cda) = read_cda(state, u, id).await?;
    let rendered =
        render_document(cda.as_bytes(), &Limits::default()).map_err(|_| PageError::not_found())?;
    let Some(Ok(bytes)) = rendered.pdfs.into_iter().nth(n).map(|p| p.content) else {
        return Err(PageError::not_found());
    };
    let mut r = Response::new(bytes.into());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"document-{}.pdf\"", n + 1))
            .expect("ascii"),
    );
    Ok(r)
}

/// POST `/portal/doc/{id}/mask`.
pub(super) async fn mask(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_masking(state, headers, id, body, true).await
}

/// POST `/portal/doc/{id}/unmask`.
pub(super) async fn unmask(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_masking(state, headers, id, body, false).await
}

async fn set_masking(
    state: AppState,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    masked: bool,
) -> Response {
    as_user!(state, headers, |u| masking(&state, u, &id, &body, masked))
}

/// The patient (or representative) masks or unmasks a document they can see: the change
/// and its trace in one transaction, honoured by the next read.
async fn masking(
    state: &AppState,
    u: &User,
    id: &str,
    body: &Bytes,
    masked: bool,
) -> Result<Response, PageError> {
    let fields = form(u, body)?;
    own_ins(u)?;
    let (doc, patient, mut t, _) = readable_by(state, u.principal(), &Purpose::Normal, id).await?;
    t.action = if masked { "mask" } else { "unmask" }.to_owned();
    t.outcome = "permit".to_owned();
    t.reason = "consult.patient.masking".to_owned();
    t.document_ids = vec![id.to_owned()];
    let change = MaskingChange {
        set_id: doc.row.set_id.clone(),
        patient_ins: patient.ins,
        masked,
    };
    state
        .store()
        .record_masking(&change, &t)
        .await
        .map_err(|_| ApiError::internal("record_masking"))?;
    let back = match field(&fields, "back") {
        Some("list") => "/portal/dmp".to_owned(),
        _ => format!("/portal/doc/{id}"),
    };
    Ok(see_other(&back))
}

/// GET `/portal/dmp/results`: lab results per analyte, a table and a chart each.
pub(super) async fn results(State(state): State<AppState>, headers: HeaderMap) -> Response {
    as_user!(state, headers, |u| results_page(&state, u))
}

/// One analyte: its label, unit, reference range and results, newest first.
struct Analyte<'a> {
    label: &'a str,
    unit: &'a str,
    range: Option<(f64, f64)>,
    rows: Vec<&'a ResultRow>,
}

fn number(s: Option<&str>) -> Option<f64> {
    s?.trim()
        .replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn abnormal(r: &ResultRow) -> bool {
    matches!(
        r.interpretation.as_deref().map(str::trim),
        Some("H" | "L" | "HH" | "LL" | "A" | "AA")
    )
}

async fn results_page(state: &AppState, u: &User) -> Result<Response, PageError> {
    let ins = own_ins(u)?.to_owned();
    let (dmp, t) = open(state, u, &ins, "portal:results").await?;
    let docs = visible_docs(&dmp);
    let visible: std::collections::HashSet<&str> =
        docs.iter().map(|d| d.row.unique_id.as_str()).collect();
    let rows: Vec<ResultRow> = state
        .store()
        .results_for_patient(&ins)
        .await
        .map_err(|_| ApiError::internal("results_for_patient"))?
        .into_iter()
        .filter(|r| visible.contains(r.document_unique_id.as_str()))
        .collect();
    let mut ids: Vec<String> = rows.iter().map(|r| r.document_unique_id.clone()).collect();
    ids.sort();
    ids.dedup();
    write_trace(state, t, true, dmp.grant.reason().as_str(), ids).await?;

    let mut analytes: BTreeMap<&str, Analyte> = BTreeMap::new();
    for r in &rows {
        let a = analytes.entry(r.loinc.as_str()).or_insert_with(|| Analyte {
            label: &r.label,
            unit: r.unit.as_deref().unwrap_or(""),
            range: None,
            rows: Vec::new(),
        });
        // The latest stated range is the one drawn (rows come oldest first).
        if let (Some(lo), Some(hi)) = (
            number(r.reference_low.as_deref()),
            number(r.reference_high.as_deref()),
        ) {
            a.range = Some((lo, hi));
        }
        a.rows.push(r);
    }
    let mut analytes: Vec<Analyte> = analytes.into_values().collect();
    analytes.sort_by(|a, b| a.label.cmp(b.label));
    let body = html! {
        h1 { "Mes résultats de biologie" }
        @if analytes.is_empty() { p { "Aucun résultat de biologie à afficher." } }
        @else {
            nav.toc aria-label="Analyses" {
                ul { @for (i, a) in analytes.iter().enumerate() { li { a href={ "#a" (i) } { (a.label) } } } }
            }
        }
        @for (i, a) in analytes.iter().enumerate() {
            section.analyte id={ "a" (i) } aria-labelledby={ "h" (i) } {
                h2 id={ "h" (i) } { (a.label) @if !a.unit.is_empty() { " (" (a.unit) ")" } }
                (chart(a))
                table {
                    caption { "Résultats, du plus récent au plus ancien" }
                    thead { tr { th scope="col" { "Date" } th scope="col" { "Valeur" } th scope="col" { "Valeurs de référence" } th scope="col" { "Interprétation" } } }
                    tbody {
                        @for r in a.rows.iter().rev() {
                            tr class=[abnormal(r).then_some("abnormal")] {
                                td { (fr(&r.time)) }
                                td { (r.value.as_deref().unwrap_or("—")) " " (r.unit.as_deref().unwrap_or("")) }
                                td { (reference(r)) }
                                td { (interpretation(r.interpretation.as_deref())) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_page(
        StatusCode::OK,
        layout(state, "Mes résultats", Some(u), body),
    ))
}

fn chart(a: &Analyte) -> Markup {
    let points: Vec<ResultPoint> = a
        .rows
        .iter()
        .filter_map(|r| {
            Some(ResultPoint {
                at: datetime::parse(&r.time).ok()?.local,
                value: number(r.value.as_deref())?,
                interpretation: r.interpretation.clone(),
            })
        })
        .collect();
    if points.len() < 2 {
        return html! {};
    }
    html! {
        figure.chart {
            // A self-contained SVG: fixed elements, escaped text, nothing fetched.
            (PreEscaped(results_chart(&points, a.range, a.unit)))
            figcaption { "Évolution de " (a.label) @if a.range.is_some() { " ; la bande verte est l'intervalle de référence" } "." }
        }
    }
}

fn reference(r: &ResultRow) -> String {
    match (&r.reference_low, &r.reference_high, &r.reference_text) {
        (Some(lo), Some(hi), _) => format!("{lo} – {hi}"),
        (Some(lo), None, _) => format!("≥ {lo}"),
        (None, Some(hi), _) => format!("≤ {hi}"),
        (None, None, Some(t)) => t.clone(),
        _ => "—".to_owned(),
    }
}

fn interpretation(code: Option<&str>) -> &'static str {
    match code.map(str::trim) {
        Some("H") => "Élevé",
        Some("HH") => "Très élevé",
        Some("L") => "Bas",
        Some("LL") => "Très bas",
        Some("A" | "AA") => "Anormal",
        Some("N") => "Normal",
        _ => "",
    }
}

/// GET `/portal/dmp/history`: who accessed the DMP, newest first (traced itself).
pub(super) async fn history(State(state): State<AppState>, headers: HeaderMap) -> Response {
    as_user!(state, headers, |u| history_page(&state, u))
}

async fn history_page(state: &AppState, u: &User) -> Result<Response, PageError> {
    let ins = own_ins(u)?.to_owned();
    let (dmp, t) = open(state, u, &ins, "portal:history").await?;
    write_trace(state, t, true, dmp.grant.reason().as_str(), Vec::new()).await?;
    let mut rows = state
        .store()
        .traces_for_patient(&ins)
        .await
        .map_err(|_| ApiError::internal("traces_for_patient"))?;
    rows.reverse();
    let total = rows.len();
    rows.truncate(HISTORY_ROWS);
    let body = html! {
        h1 { "Qui a consulté mon dossier" }
        p.lead { "Chaque accès à votre dossier est enregistré. Un accès en urgence "
            "(« bris de glace ») est signalé avec le motif donné par le professionnel." }
        @if total > HISTORY_ROWS { p.note { "Les " (HISTORY_ROWS) " accès les plus récents sur " (total) "." } }
        table.history {
            caption.visually-hidden { "Accès au dossier, du plus récent au plus ancien" }
            thead { tr { th scope="col" { "Date" } th scope="col" { "Qui" } th scope="col" { "Action" } th scope="col" { "Résultat" } } }
            tbody {
                @for r in &rows {
                    tr class=[(r.purpose == "break_glass").then_some("breakglass")] {
                        td { (fr_recorded(&r.recorded_at)) }
                        td { (actor(r)) }
                        td {
                            (action(&r.action))
                            @if r.purpose == "break_glass" {
                                br;
                                strong.badge { "Accès en urgence (bris de glace)" }
                                @if let Some(reason) = &r.purpose_reason { " — motif : « " (reason) " »" }
                            }
                        }
                        td { @if r.outcome == "permit" { "Autorisé" } @else { "Refusé" } }
                    }
                }
            }
        }
    };
    Ok(html_page(
        StatusCode::OK,
        layout(state, "Historique des accès", Some(u), body),
    ))
}

/// A record time (RFC 3339, UTC as the store stamps it) in French, in Paris time: the
/// patient reads when it happened on their clock.
fn fr_recorded(ts: &str) -> String {
    let Ok(stamp) = datetime::parse(ts) else {
        return fr(ts);
    };
    let utc = stamp.range().0.to_offset(time::UtcOffset::UTC);
    // The Paris offset of the local time about one hour later than UTC (exact but in the
    // hour of the October change, where either reading is the same instant).
    let guess = time::PrimitiveDateTime::new(utc.date(), utc.time()) + time::Duration::hours(1);
    let local = utc.to_offset(datetime::paris_offset(guess));
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}",
        local.day(),
        u8::from(local.month()),
        local.year(),
        local.hour(),
        local.minute()
    )
}

fn actor(r: &TraceRow) -> String {
    match r.actor_role.as_str() {
        "patient" => "Vous".to_owned(),
        "representative" => "Votre représentant légal".to_owned(),
        "professional" => {
            let org = r
                .actor_org
                .as_deref()
                .map(|o| format!(", structure {o}"))
                .unwrap_or_default();
            format!("Professionnel de santé {}{org}", r.actor_id)
        }
        _ => "Appel non authentifié".to_owned(),
    }
}

fn action(a: &str) -> &'static str {
    match a {
        "read" => "Lecture d'un document",
        "search" => "Consultation de la liste des documents",
        "create" => "Ajout d'un document",
        "mask" => "Document masqué aux professionnels",
        "unmask" => "Document rendu visible aux professionnels",
        _ => "Accès",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_times_are_shown_in_paris_time() {
        assert_eq!(
            super::fr_recorded("2026-11-29T21:25:03Z"),
            "29/11/2026 22:25"
        );
        assert_eq!(
            super::fr_recorded("2026-07-14T10:00:00.123Z"),
            "14/07/2026 12:00"
        );
        assert_eq!(super::fr_recorded("garbage"), "garbage");
    }
}
