//! The professional's pages: find a patient by INS, confirm the identity on the strict
//! traits of the registry (birth name, first names, birth date, sex, birth place), see the
//! documents the rules allow, and break the glass with a reason that the patient will see
//! in their access history.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use maud::html;

use super::dmp::{document_list, fr, open, purpose_for, visible_docs};
use super::page::{PageError, User, as_user, field, form, html_page, layout, see_other};
use super::{AppState, portal};
use crate::authz::{Principal, Purpose, Scope};
use crate::server::http::{query_pairs, write_trace};

/// Longest break-the-glass reason accepted.
const MAX_REASON_CHARS: usize = 500;

fn professional(u: &User) -> Result<(), PageError> {
    match u.principal() {
        Principal::Professional { .. } => Ok(()),
        _ => Err(PageError::status(
            StatusCode::FORBIDDEN,
            "Page réservée aux professionnels",
            "La recherche de patients est réservée aux professionnels de santé.",
        )),
    }
}

/// An INS as typed: 13 digits (NIR without key) or 15 (with key); spaces are ignored.
fn ins_param(raw: &str) -> Result<String, PageError> {
    let ins: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if (ins.len() == 13 || ins.len() == 15) && ins.bytes().all(|b| b.is_ascii_digit()) {
        Ok(ins)
    } else {
        Err(PageError::status(
            StatusCode::BAD_REQUEST,
            "INS invalide",
            "Un INS s'écrit avec 13 ou 15 chiffres.",
        ))
    }
}

/// GET `/portal/pro[?ins=]`: the search form, and the patient when an INS is given.
pub(super) async fn find(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    as_user!(state, headers, |u| find_page(&state, u, uri.query()))
}

fn search_form(value: &str) -> maud::Markup {
    html! {
        form.search method="get" action="/portal/pro" role="search" {
            div.field {
                label for="ins" { "INS du patient" }
                input #ins name="ins" value=(value) inputmode="numeric" autocomplete="off" maxlength="20" required;
            }
            button type="submit" { "Rechercher" }
        }
    }
}

async fn find_page(state: &AppState, u: &User, query: Option<&str>) -> Result<Response, PageError> {
    professional(u)?;
    let pairs = query_pairs(query);
    let Some(raw) = field(&pairs, "ins").filter(|s| !s.trim().is_empty()) else {
        let body = html! {
            h1 { "Rechercher un patient" }
            p.lead { "Saisissez l'INS du patient. Son identité vous sera présentée pour confirmation." }
            (search_form(""))
        };
        return Ok(html_page(
            StatusCode::OK,
            layout(state, "Rechercher un patient", Some(u), body),
        ));
    };
    let ins = ins_param(raw)?;
    let (dmp, t) = open(state, u, &ins, "portal:patient").await?;
    let docs = visible_docs(&dmp);
    let ids = docs.iter().map(|d| d.row.unique_id.clone()).collect();
    write_trace(state, t, true, dmp.grant.reason().as_str(), ids).await?;
    let purpose = purpose_for(u, &ins);
    let authored_only = dmp.grant.scope() == Scope::AuthoredOnly;
    let body = html! {
        h1 { "Dossier du patient" }
        (search_form(&ins))
        @if let Some(r) = &dmp.record {
            section.card.traits aria-labelledby="traits" {
                h2 #traits { "Identité (traits stricts)" }
                p.lead { "Vérifiez qu'il s'agit bien de votre patient avant de consulter ses documents." }
                dl {
                    dt { "Nom de naissance" } dd { (r.birth_name) }
                    dt { "Prénom(s) de naissance" } dd { (r.first_names.join(" ")) }
                    dt { "Date de naissance" } dd { (fr(&r.birth_date.replace('-', ""))) }
                    dt { "Sexe" } dd { (match r.sex.as_str() { "F" => "Féminin", "M" => "Masculin", _ => "Inconnu" }) }
                    dt { "Lieu de naissance (code INSEE)" } dd { (r.birth_place.as_deref().unwrap_or("—")) }
                    dt { "INS" } dd { code { (r.ins) } }
                    dt { "Statut de l'identité" } dd { (identity_status(&r.identity_status)) }
                }
            }
        }
        @if let Purpose::BreakTheGlass { reason } = &purpose {
            p.alert role="status" {
                strong { "Accès en urgence (bris de glace) en cours" }
                " — motif : « " (reason) " ». Chaque consultation est signalée au patient."
            }
        }
        @if authored_only {
            p.alert { "Le patient a refusé la consultation de son dossier : seuls les documents "
                "dont vous êtes l'auteur vous sont visibles. En cas d'urgence, vous pouvez "
                "accéder au dossier par le bris de glace." }
        }
        h2 { "Documents" }
        (document_list(&docs, &u.session.csrf, false))
        @if !matches!(purpose, Purpose::BreakTheGlass { .. }) {
            section.card.breakglass aria-labelledby="btg" {
                h2 #btg { "Accès en urgence (bris de glace)" }
                p { "En cas d'urgence, vous pouvez accéder au dossier sans le consentement du patient. "
                    strong { "Le motif que vous donnez et cet accès seront montrés au patient dans l'historique de ses accès." } }
                form method="post" action="/portal/pro/break-glass" {
                    input type="hidden" name="csrf" value=(u.session.csrf);
                    input type="hidden" name="ins" value=(ins);
                    div.field {
                        label for="reason" { "Motif de l'urgence (obligatoire)" }
                        textarea #reason name="reason" required maxlength=(MAX_REASON_CHARS) rows="3" {}
                    }
                    button.danger type="submit" { "Accéder en urgence" }
                }
            }
        }
    };
    Ok(html_page(
        StatusCode::OK,
        layout(state, "Dossier du patient", Some(u), body),
    ))
}

/// The RNIV status of the identity, in words (the code itself when unknown).
fn identity_status(code: &str) -> &str {
    match code {
        "PROV" => "Identité provisoire",
        "RECUP" => "Identité récupérée (INS non vérifié)",
        "VALI" => "Identité validée",
        "QUAL" => "Identité qualifiée (INS vérifié)",
        other => other,
    }
}

/// POST `/portal/pro/break-glass`: the reason is kept in the session for this DMP; every
/// page of it is then read (and traced) as break-the-glass.
pub(super) async fn break_glass(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    as_user!(state, headers, |u| async { declare(&state, u, &body) })
}

fn declare(state: &AppState, u: &User, body: &Bytes) -> Result<Response, PageError> {
    let fields = form(u, body)?;
    professional(u)?;
    let ins = ins_param(field(&fields, "ins").unwrap_or(""))?;
    let reason = field(&fields, "reason").unwrap_or("").trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(PageError::status(
            StatusCode::BAD_REQUEST,
            "Motif requis",
            "Le bris de glace demande un motif (500 caractères au plus).",
        ));
    }
    portal(state).sessions.set_break_glass(&u.id, &ins, reason);
    Ok(see_other(&format!("/portal/pro?ins={ins}")))
}
